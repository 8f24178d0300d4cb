"""`autocall audio dtmf` and `autocall audio tone`: find touch tones in a file, or make some."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from autocall.audio import tones
from autocall.audio.dtmf import DtmfDetector, DtmfEvent

_CHUNK_S = 10  # seconds of audio per detector call: bounded memory, a moving progress bar


def _fail(message: str, as_json: bool, code: int = 2) -> typer.Exit:
    if as_json:
        typer.echo(json.dumps({"ok": False, "error": message}))
    else:
        Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _read_mono(path: Path) -> tuple[npt.NDArray[np.float64], int]:
    """The file's first channel as float in [-1, 1], at its own rate."""
    try:
        data, rate = sf.read(path, dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise ValueError(
            f"{path}: not readable as audio ({exc}); give a WAV, FLAC or MP3"
        ) from None
    if data.shape[0] == 0:
        raise ValueError(f"{path}: the file holds no audio")
    return data[:, 0], int(rate)


def _to_pcm(x: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def find_digits(path: Path, show_progress: bool = False) -> tuple[list[DtmfEvent], int]:
    """Key presses in an audio file (first channel), and the rate it was analysed at."""
    x, rate = _read_mono(path)
    if rate not in (8000, 16000):
        x = soxr.resample(x, rate, 8000)
        rate = 8000
    pcm = _to_pcm(x)
    det = DtmfDetector(rate)
    step = rate * _CHUNK_S
    events: list[DtmfEvent] = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeRemainingColumn(),
        disable=not show_progress,
        transient=True,
    ) as progress:
        task = progress.add_task(f"listening to {path.name}", total=pcm.size)
        for i in range(0, pcm.size, step):
            events += det.feed(pcm[i : i + step])
            progress.update(task, advance=min(step, pcm.size - i))
        events += det.flush()
    return events, rate


def dtmf(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Audio file (WAV, FLAC, MP3).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """List the touch-tone keys (in-band DTMF) heard in an audio file, with their times.

    Other rates than 8 and 16 kHz are resampled to 8 kHz; only the first channel is
    read. Exit status 0 whether or not keys were found; 2 if the file is unreadable.

    Example: autocall audio dtmf call-recording.wav --json
    """
    try:
        events, rate = find_digits(file, show_progress=not as_json)
    except ValueError as exc:
        raise _fail(str(exc), as_json) from None
    if as_json:
        payload = {
            "ok": True,
            "file": str(file),
            "rate": rate,
            "digits": "".join(e.digit for e in events),
            "events": [
                {"digit": e.digit, "start": round(e.start, 4), "end": round(e.end, 4)}
                for e in events
            ],
        }
        typer.echo(json.dumps(payload))
        return
    console = Console()
    if not events:
        console.print(f"{file}: no DTMF keys found")
        return
    table = Table(title=f"{file}: {''.join(e.digit for e in events)}")
    for col in ("key", "start (s)", "end (s)", "length (ms)"):
        table.add_column(col, justify="right")
    for e in events:
        table.add_row(e.digit, f"{e.start:.3f}", f"{e.end:.3f}", f"{(e.end - e.start) * 1000:.0f}")
    console.print(table)


def _write_atomic(out: Path, pcm: npt.NDArray[np.int16], rate: int) -> None:
    """Write the WAV beside its destination and rename it there: never a half-written file."""
    directory = out.parent if str(out.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".wav", dir=directory)
    os.close(fd)
    try:
        sf.write(tmp, pcm, rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def tone(
    digits: Annotated[str, typer.Argument(metavar="DIGITS", help="Keys: 0-9 * # A-D.")],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="WAV file to write.")],
    level: Annotated[
        float, typer.Option("--level", help="Level of each tone in dBm0 (0 … -40).")
    ] = -10.0,
    on: Annotated[float, typer.Option("--on", help="Tone length per key, ms.")] = 100.0,
    off: Annotated[float, typer.Option("--off", help="Pause after each key, ms.")] = 100.0,
    twist: Annotated[float, typer.Option("--twist", help="Level(high) − level(low) in dB.")] = 0.0,
    rate: Annotated[int, typer.Option("--rate", help="Sample rate: 8000 or 16000.")] = 8000,
) -> None:
    """Write in-band DTMF key presses to a 16-bit WAV file.

    Example: autocall audio tone "0049301234#" keys.wav --level -10 --on 100 --off 100
    """
    if rate not in (8000, 16000):
        raise _fail(f"--rate {rate}: use 8000 or 16000", False)
    if not digits:
        raise _fail("DIGITS is empty: give keys such as 123#", False)
    if on <= 0 or off < 0:
        raise _fail("--on must be > 0 ms and --off >= 0 ms", False)
    if level > 3.0:
        raise _fail(f"--level {level}: a tone above +3 dBm0 cannot be represented", False)
    try:
        pcm = tones.dtmf(digits, on_ms=on, off_ms=off, level_dbm0=level, twist_db=twist, rate=rate)
    except ValueError as exc:
        raise _fail(f"DIGITS {digits!r}: {exc}", False) from None
    if not out.parent.is_dir():
        raise _fail(f"{out}: the folder {out.parent} does not exist", False)
    _write_atomic(out, pcm, rate)
    Console().print(f"wrote {out}: {len(digits)} keys, {pcm.size / rate:.2f} s at {rate} Hz")


def register(audio_app: typer.Typer) -> None:
    """Add this module's commands to the `audio` group."""
    audio_app.command("dtmf")(dtmf)
    audio_app.command("tone")(tone)
