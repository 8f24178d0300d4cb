"""`autocall audio info` and `autocall audio convert` through the real typer app."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
from typer.testing import CliRunner

from autocall.audio import g711
from autocall.audio.convert import TARGET_LEVEL_DBFS
from autocall.cli import app

runner = CliRunner()


def speech_file(path: Path, rate: int = 22050) -> Path:
    t = np.arange(rate * 2) / rate
    x = 0.2 * np.sin(2 * np.pi * 300 * t) * np.clip(np.sin(2 * np.pi * 2 * t), 0, None)
    sf.write(path, np.stack([x, 0.5 * x], axis=1), rate, subtype="PCM_24", format="WAV")
    return path


def test_info_json_describes_the_file(tmp_path: Path) -> None:
    src = speech_file(tmp_path / "hello.wav")
    result = runner.invoke(app, ["audio", "info", str(src), "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert found["ok"] is True
    assert (found["container"], found["subtype"], found["rate"], found["channels"]) == (
        "WAV",
        "PCM_24",
        22050,
        2,
    )
    assert abs(found["duration_s"] - 2.0) < 1e-3


def test_info_exit_codes(tmp_path: Path) -> None:
    wrong = speech_file(tmp_path / "hello.mp3")  # WAV data behind an .mp3 name
    result = runner.invoke(app, ["audio", "info", str(wrong), "--json"])
    assert result.exit_code == 1
    assert "hello.wav" in json.loads(result.output)["upload_problem"]
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio at all")
    result = runner.invoke(app, ["audio", "info", str(junk), "--json"])
    assert result.exit_code == 2
    assert json.loads(result.output)["reason"] == "not-audio"


def test_info_table(tmp_path: Path) -> None:
    result = runner.invoke(app, ["audio", "info", str(speech_file(tmp_path / "a.wav"))])
    assert result.exit_code == 0 and "speech level" in result.output


def test_convert_to_raw_ulaw_by_suffix(tmp_path: Path) -> None:
    src = speech_file(tmp_path / "hello.wav")
    dst = tmp_path / "hello.ul"
    result = runner.invoke(app, ["audio", "convert", str(src), str(dst), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["format"], report["bytes"]) == ("ulaw-8k-raw", 16000)
    y = g711.ulaw_decode(dst.read_bytes()) / 32768.0
    assert 0.05 < float(np.max(np.abs(y))) < 0.9


def test_convert_explicit_format(tmp_path: Path) -> None:
    src = speech_file(tmp_path / "hello.wav")
    dst = tmp_path / "out.wav"
    args = ["audio", "convert", str(src), str(dst), "--rate", "16000", "--format", "pcm8"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert abs(json.loads(result.output)["speech_level_dbfs"] - TARGET_LEVEL_DBFS) < 0.5
    info = sf.info(dst)
    assert (info.samplerate, info.subtype) == (16000, "PCM_U8")


def test_convert_usage_errors(tmp_path: Path) -> None:
    src = speech_file(tmp_path / "hello.wav")
    bad = (
        ["--rate", "11025"],
        ["--format", "gsm"],
        ["--format", "mp3", "--raw"],
        ["--format", "mp3", "--rate", "8000"],
    )
    for extra in bad:
        result = runner.invoke(app, ["audio", "convert", str(src), str(tmp_path / "o.wav"), *extra])
        assert result.exit_code == 2, extra
    assert not (tmp_path / "o.wav").exists()


def test_convert_bad_upload(tmp_path: Path) -> None:
    src = tmp_path / "empty.wav"
    src.write_bytes(b"")
    result = runner.invoke(app, ["audio", "convert", str(src), str(tmp_path / "o.wav")])
    assert result.exit_code == 2
    assert "empty" in result.output
