"""`autocall audio tone` and `autocall audio dtmf` on real WAV files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from typer.testing import CliRunner

from autocall.audio import tones
from autocall.cli import app

runner = CliRunner()


def test_tone_then_dtmf_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "keys.wav"
    r = runner.invoke(app, ["audio", "tone", "0049#*", str(out), "--on", "60", "--off", "50"])
    assert r.exit_code == 0, r.output
    data, rate = sf.read(out, dtype="int16")
    assert rate == 8000 and data.size == 6 * 880
    assert [p.name for p in tmp_path.iterdir()] == ["keys.wav"]  # no temp file left behind
    r = runner.invoke(app, ["audio", "dtmf", str(out), "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    assert got["ok"] and got["digits"] == "0049#*" and got["rate"] == 8000
    assert got["events"][1] == {"digit": "0", "start": 0.11, "end": 0.17}


def test_other_rates_and_stereo_are_resampled(tmp_path: Path) -> None:
    pcm = tones.dtmf("7D", on_ms=80.0, off_ms=80.0, level_dbm0=-20.0)
    hi = soxr.resample(pcm.astype(np.float64) / 32768.0, 8000, 44100)
    path = tmp_path / "cd.wav"
    sf.write(path, np.stack([hi, np.zeros_like(hi)], axis=1), 44100)
    r = runner.invoke(app, ["audio", "dtmf", str(path), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["digits"] == "7D"


def test_16k_tone_and_table_output(tmp_path: Path) -> None:
    out = tmp_path / "wide.wav"
    r = runner.invoke(app, ["audio", "tone", "A5", str(out), "--rate", "16000", "--level", "-25"])
    assert r.exit_code == 0, r.output
    assert sf.info(out).samplerate == 16000
    r = runner.invoke(app, ["audio", "dtmf", str(out)])
    assert r.exit_code == 0
    assert "A5" in r.output


def test_no_keys_is_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "quiet.wav"
    sf.write(path, tones.comfort_noise(500.0, -40.0), 8000, subtype="PCM_16")
    r = runner.invoke(app, ["audio", "dtmf", str(path), "--json"])
    assert r.exit_code == 0
    assert json.loads(r.output)["digits"] == ""


def test_bad_input_exits_2_with_the_reason(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    r = runner.invoke(app, ["audio", "dtmf", str(junk), "--json"])
    assert r.exit_code == 2
    assert "junk.wav" in json.loads(r.output)["error"]
    r = runner.invoke(app, ["audio", "tone", "12E", str(tmp_path / "x.wav")])
    assert r.exit_code == 2 and "'E' is not a DTMF key" in r.output
    r = runner.invoke(app, ["audio", "tone", "12", str(tmp_path / "x.wav"), "--rate", "44100"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["audio", "tone", "12", str(tmp_path / "missing" / "x.wav")])
    assert r.exit_code == 2 and "does not exist" in r.output
    assert not (tmp_path / "x.wav").exists()


def test_help_has_examples() -> None:
    for cmd in ("dtmf", "tone"):
        r = runner.invoke(app, ["audio", cmd, "--help"])
        assert r.exit_code == 0 and "Example" in r.output
