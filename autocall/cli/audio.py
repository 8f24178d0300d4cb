"""`autocall audio …`: inspect, convert and generate telephone audio."""

from __future__ import annotations

import typer

from autocall.cli import audio_amd, audio_dtmf, audio_files, audio_say

audio_app = typer.Typer(
    help=(
        "Inspect, convert and generate telephone audio.\n\n"
        "Example: autocall audio info greeting.mp3"
    ),
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    audio_files.register(audio_app)
    audio_dtmf.register(audio_app)
    audio_amd.register(audio_app)
    audio_say.register(audio_app)
    app.add_typer(audio_app, name="audio")
