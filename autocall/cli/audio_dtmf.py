"""`autocall audio …` commands (audio_dtmf)."""

from __future__ import annotations

import typer


def register(audio_app: typer.Typer) -> None:
    """Add this module's commands to the `audio` group."""
