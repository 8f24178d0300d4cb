"""`autocall audio amd`: who answered in a recording of a call's first seconds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import soxr
import typer
from rich.console import Console

from autocall.audio.amd import AMD_RATE, AmdResult, classify
from autocall.cli.audio_dtmf import _fail, _read_mono, _to_pcm


def amd_file(path: Path) -> AmdResult:
    """Classify an audio file (first channel, resampled to 8 kHz), answer at its start."""
    x, rate = _read_mono(path)
    if rate != AMD_RATE:
        x = np.asarray(soxr.resample(x, rate, AMD_RATE), dtype=np.float64)
    return classify(_to_pcm(x), AMD_RATE)


def amd(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="Audio from the answer on (WAV, FLAC, MP3).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Tell whether a human, an answering machine, a fax or dead air answered a call.

    The file must start at the moment of answer. Prints who answered (human, machine, fax,
    unknown), when that was decided, the machine's beep and when a message may start
    (seconds from the start of the file). Exit status 0 whatever the answer; 2 if the
    file is unreadable.

    Example: autocall audio amd answered.wav --json
    """
    try:
        result = amd_file(file)
    except ValueError as exc:
        raise _fail(str(exc), as_json) from None
    if as_json:
        typer.echo(json.dumps({"ok": True, "file": str(file), **result.to_json()}))
        return
    console = Console()
    who = f"[b]{result.answered_by}[/b]"
    line = f"{file}: {who} (decided at {result.decided_at:.2f} s, {result.cause})"
    if result.beep_at is not None:
        line += f"; beep at {result.beep_at:.2f} s"
    if result.message_at is not None:
        line += f"; message may start at {result.message_at:.2f} s"
    console.print(line, highlight=False)


def register(audio_app: typer.Typer) -> None:
    """Add `amd` to the `audio` group."""
    audio_app.command("amd")(amd)
