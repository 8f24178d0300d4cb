"""`autocall audio say`: render one prompt to a WAV file, to hear a voice before a call does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from autocall.audio import convert
from autocall.audio.convert import NetworkFormat
from autocall.cli.safe_text import safe
from autocall.speech import tts

_RATES = (8000, 16000)


def say(
    text: Annotated[str, typer.Argument(help="What to say.")],
    out: Annotated[Path, typer.Argument(help="The WAV file to write (16-bit mono).")],
    engine: Annotated[
        list[str] | None,
        typer.Option(
            "--engine", "-e",
            help="Engine to use (gtts, piper, espeak); repeat for a fallback order. "
            "Default: AUTOCALL_TTS, else gtts, piper, espeak.",
        ),
    ] = None,
    voice: Annotated[
        str | None,
        typer.Option(help="Voice: piper en_US-joe-medium or joe, espeak en-us, gTTS co.uk."),
    ] = None,
    language: Annotated[str, typer.Option("--language", "-l", help="BCP 47 tag.")] = "en",
    rate: Annotated[int, typer.Option(help="Sample rate: 8000 (G.711 calls) or 16000.")] = 8000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Render TEXT with a TTS engine into OUT, at the call's rate.

    Example: autocall audio say "Press one to confirm." confirm.wav --engine piper
    """
    if rate not in _RATES:
        raise typer.BadParameter(f"{rate} Hz: use 8000 or 16000", param_hint="--rate")
    if out.suffix.lower() != ".wav":
        raise typer.BadParameter(
            f"{out.suffix or '(no extension)'!r}: audio say writes .wav files "
            "(convert afterwards with `autocall audio convert`)", param_hint="OUT")
    try:
        engines = tts.default_engines(engine)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--engine") from exc
    prompt = tts.PromptText(text, language, voice)
    err = Console(stderr=True)
    notes = tts.missing_engines(engines)  # e.g. piper without autocall[piper]: say how
    try:
        spoke, samples = tts.synthesize_at(prompt, rate, engines)
    except tts.TtsError as exc:
        if as_json:
            typer.echo(json.dumps({"ok": False, "error": str(exc), "notes": notes}))
        else:
            err.print(f"[red]error:[/red] {safe(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    convert.write_atomic(out, convert.encode(samples, NetworkFormat(rate, "pcm16")))
    seconds = samples.size / rate
    if as_json:
        typer.echo(json.dumps(
            {"ok": True, "file": str(out), "engine": spoke, "rate": rate, "seconds": seconds,
             "notes": notes}))
    else:
        for note in notes:
            err.print(f"[yellow]note:[/yellow] {safe(note)}", highlight=False, soft_wrap=True)
        err.print(f"{safe(str(out))}: {seconds:.2f} s at {rate} Hz, spoken by {spoke}",
                  highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("say")(say)
