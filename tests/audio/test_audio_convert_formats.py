"""`audio convert` writes the format its OUT extension names, refuses extensions it would
write wrongly, and converts big recordings (issue 13): converting is the job."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from autocall.cli import app

runner = CliRunner()


def speech_file(path: Path, rate: int = 22050, seconds: float = 2.0) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    x = 0.2 * np.sin(2 * np.pi * 300 * t) * np.clip(np.sin(2 * np.pi * 2 * t), 0, None)
    sf.write(path, np.stack([x, 0.5 * x], axis=1), rate, subtype="PCM_16", format="WAV")
    return path


@pytest.mark.parametrize(
    ("suffix", "container", "subtype"),
    [
        (".ogg", "OGG", "VORBIS"),
        (".opus", "OGG", "OPUS"),
        (".flac", "FLAC", "PCM_16"),
        (".wav", "WAV", "PCM_16"),
    ],
)
def test_output_format_follows_the_extension(
    tmp_path: Path, suffix: str, container: str, subtype: str
) -> None:
    src = speech_file(tmp_path / "in.wav")
    dst = tmp_path / f"out{suffix}"
    result = runner.invoke(app, ["audio", "convert", str(src), str(dst)])
    assert result.exit_code == 0, result.output
    info = sf.info(dst)
    assert (info.format, info.subtype, info.samplerate, info.channels) == (
        container,
        subtype,
        8000,
        1,
    )


@pytest.mark.parametrize(
    ("out", "extra", "words"),
    [
        ("out.xyz", [], "unknown extension '.xyz'"),
        ("out", [], "unknown extension '(none)'"),
        ("out.ogg", ["--format", "ulaw"], ".ogg is a vorbis file"),
        ("out.wav", ["--format", "flac"], "--format flac writes .flac files"),
    ],
)
def test_unknown_or_mismatched_extension_is_refused(
    tmp_path: Path, out: str, extra: list[str], words: str
) -> None:
    src = speech_file(tmp_path / "in.wav")
    result = runner.invoke(app, ["audio", "convert", str(src), str(tmp_path / out), *extra])
    assert result.exit_code == 2, result.output
    assert words in " ".join(result.output.split()).replace("│ ", ""), result.output
    assert not (tmp_path / out).exists()


def test_a_5_5_mib_wav_is_converted_and_sizes_say_mib(tmp_path: Path) -> None:
    src = speech_file(tmp_path / "long.wav", rate=44100, seconds=32.7)
    assert 5.4 * 2**20 < src.stat().st_size < 5.6 * 2**20
    dst = tmp_path / "long.ul"
    result = runner.invoke(app, ["audio", "convert", str(src), str(dst), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["bytes"] == round(32.7 * 8000)
    result = runner.invoke(app, ["audio", "info", str(src), "--json"])
    assert "5.5 MiB; the limit is 5 MiB" in json.loads(result.output)["upload_problem"]


def test_text_is_refused_as_not_audio(tmp_path: Path) -> None:
    src = tmp_path / "notes.wav"
    src.write_text("this is not audio\n" * 50)
    result = runner.invoke(app, ["audio", "convert", str(src), str(tmp_path / "o.wav")])
    assert result.exit_code == 2 and "cannot be decoded" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
