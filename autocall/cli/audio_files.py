"""`autocall audio info` and `autocall audio convert`: prompt files for the phone network."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.console import Console
from rich.table import Table

from autocall.audio import convert as conv
from autocall.audio.convert import AudioFileError, Encoding, NetworkFormat
from autocall.cli.safe_text import safe

_ENCODINGS: tuple[Encoding, ...] = (
    "pcm16", "pcm8", "ulaw", "alaw", "mp3", "vorbis", "opus", "flac")
_BY_SUFFIX: dict[str, tuple[Encoding, bool]] = {
    ".wav": ("pcm16", False),
    ".mp3": ("mp3", False),
    ".ogg": ("vorbis", False),
    ".oga": ("vorbis", False),
    ".opus": ("opus", False),
    ".flac": ("flac", False),
    ".ul": ("ulaw", True),
    ".ulaw": ("ulaw", True),
    ".mulaw": ("ulaw", True),
    ".al": ("alaw", True),
    ".alaw": ("alaw", True),
    ".sln": ("pcm16", True),
    ".raw": ("pcm16", True),
}


# Encodings that are their own container: the file's extension must name it.
_OWN_CONTAINER: dict[str, frozenset[str]] = {
    "mp3": frozenset({".mp3"}),
    "vorbis": frozenset({".ogg", ".oga"}),
    "opus": frozenset({".opus", ".ogg"}),
    "flac": frozenset({".flac"}),
}


def _output_encoding(dst: Path, fmt: str) -> tuple[str, bool]:
    """(encoding, raw-by-suffix) for OUT; refuses an extension we would write wrongly."""
    suffix = dst.suffix.lower()
    known = _BY_SUFFIX.get(suffix)
    if not fmt:
        if known is None:
            names = ", ".join(sorted(_BY_SUFFIX))
            raise typer.BadParameter(
                f"unknown extension {suffix or '(none)'!r}: use one of {names} "
                "(or give --format)", param_hint="OUT")
        return known
    own = _OWN_CONTAINER.get(fmt)
    if own is not None and suffix not in own:
        raise typer.BadParameter(
            f"--format {fmt} writes {'/'.join(sorted(own))} files, not {suffix or '(none)'!r}",
            param_hint="OUT")
    if own is None and known is not None and known[0] in _OWN_CONTAINER:
        raise typer.BadParameter(
            f"{suffix} is a {known[0]} file; --format {fmt} would write other bytes into it",
            param_hint="--format")
    return fmt, bool(known and known[1])


def _fail(exc: AudioFileError, as_json: bool) -> typer.Exit:
    if as_json:
        typer.echo(
            json.dumps(
                {"ok": False, "file": str(exc.path), "reason": exc.reason, "error": str(exc)}
            )
        )
    else:
        # One finding format everywhere (file:line:col: error: …); audio has no lines.
        Console(stderr=True).print(
            f"{safe(exc.path)}:1:1: [red]error:[/red] {safe(exc.detail)}. {safe(exc.hint)}",
            highlight=False, soft_wrap=True)
    return typer.Exit(2)


def info(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="WAV or MP3 file to inspect.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show format, rate, length and levels of an audio file, and whether a PBX takes it.

    Exit status 0: a valid prompt upload; 1: readable but a PBX would refuse it
    (too big, wrong extension, silent…); 2: not readable as audio.

    Example: autocall audio info greeting.mp3 --json
    """
    try:
        found = conv.probe(file)
    except AudioFileError as exc:
        raise _fail(exc, as_json) from None
    if as_json:
        typer.echo(json.dumps({"ok": found.upload_ok, **asdict(found)}))
    else:
        table = Table(show_header=False, box=None)
        level = found.speech_level_dbfs
        rows = [
            ("file", found.path),
            ("format", f"{found.container} {found.subtype}"),
            ("rate", f"{found.rate} Hz"),
            ("channels", str(found.channels)),
            ("duration", f"{found.duration_s:.3f} s ({found.frames} frames)"),
            ("size", f"{found.size_bytes} bytes"),
            ("peak", f"{found.peak_dbfs:.1f} dBFS"),
            ("speech level", "silent" if level is None else f"{level:.1f} dBFS"),
        ]
        if found.bitrate_kbps is not None:
            rows.append(("bitrate", f"{found.bitrate_kbps} kbit/s"))
        rows.append(("upload", "ok" if found.upload_ok else f"refused: {found.upload_problem}"))
        for key, value in rows:
            table.add_row(f"[bold]{key}[/bold]", value)
        Console().print(table)
    if not found.upload_ok:
        raise typer.Exit(1)


def convert(
    src: Annotated[Path, typer.Argument(
        metavar="IN", help="Any audio file (WAV, MP3, FLAC, OGG…; at most 256 MiB).")],
    dst: Annotated[Path, typer.Argument(metavar="OUT", help="Output file; written atomically.")],
    rate: Annotated[
        int,
        typer.Option(
            "--rate", show_default=False, help="8000 or 16000 Hz (default 8000; 16000 for mp3)."
        ),
    ] = 0,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            show_default=False,
            help="pcm16, pcm8, ulaw, alaw, mp3, vorbis, opus or flac (default from OUT's "
            "suffix: .wav pcm16, .ul ulaw raw, .al alaw raw, .mp3, .ogg, .opus, .flac).",
        ),
    ] = "",
    raw: Annotated[bool, typer.Option("--raw", help="Headerless samples instead of WAV.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Convert an upload to a telephone format: mono, loudness-normalised, resampled.

    Every output has an active speech level of -15 dBm0 (-21.15 dBFS, ITU-T G.223).

    Example: autocall audio convert greeting.mp3 greeting.wav --rate 8000 --format ulaw
    """
    if fmt and fmt not in _ENCODINGS:
        raise typer.BadParameter(f"choose one of {', '.join(_ENCODINGS)}", param_hint="--format")
    encoding, suffix_raw = _output_encoding(dst, fmt)
    raw = raw or (not fmt and suffix_raw)
    rate = rate or (16000 if encoding == "mp3" else 8000)
    try:
        target = NetworkFormat(rate, cast(Encoding, encoding), raw=raw)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        conv.convert(src, dst, target, upload_rules=False)
        result = conv.probe(dst) if target.encoding in ("pcm16", "pcm8", "ulaw", "alaw",
                                                         "mp3") and not target.raw else None
    except AudioFileError as exc:
        raise _fail(exc, as_json) from None
    level = result.speech_level_dbfs if result else None
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": True,
                    "input": str(src),
                    "output": str(dst),
                    "format": target.name,
                    "rate": target.rate,
                    "encoding": target.encoding,
                    "raw": target.raw,
                    "bytes": dst.stat().st_size,
                    "speech_level_dbfs": level,
                }
            )
        )
    else:
        typer.echo(f"{src} → {dst} ({target.name}, {dst.stat().st_size} bytes)")


def register(audio_app: typer.Typer) -> None:
    """Add `info` and `convert` to the `audio` group."""
    audio_app.command("info")(info)
    audio_app.command("convert")(convert)
