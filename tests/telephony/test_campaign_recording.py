"""Issue 12 item 12: ``recording: true`` in a campaign records the call.

A real SIPp callee answers and streams a 1 kHz tone (``rtp_stream``) while our tree plays
a 440 Hz notice. The attempt's record names a stereo 8 kHz WAV: the callee on the left,
us on the right, created 0600 in a 0700 folder. Ports: 44140-44149.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
from typer.testing import CliRunner

from autocall.audio import g711
from autocall.audio.tones import beep
from autocall.cli import app
from tests.peers import SCENARIOS, Sipp
from tests.telephony.campaigns import write_campaign

pytestmark = pytest.mark.peers

TREE = """\
name: recorded-notice
start: notice
nodes:
  notice:
    play: notice.wav
    next: null
"""


def _streaming_callee(tmp_path: Path) -> Path:
    """uas_answer.xml plus a 1.5 s 1 kHz tone streamed to us once the call is up."""
    tone = tmp_path / "tone.ul"
    tone.write_bytes(g711.ulaw_encode(beep(1000, 1500, -10)))
    text = (SCENARIOS / "uas_answer.xml").read_text()
    marker = '<recv request="ACK" crlf="true"/>'
    assert marker in text
    text = text.replace(
        marker, f'{marker}\n  <nop><action><exec rtp_stream="{tone},1,0"/></action></nop>', 1
    )
    path = tmp_path / "uas_answer_tone.xml"
    path.write_text(text)
    return path


def _peak_hz(channel: npt.NDArray[np.int16]) -> float:
    spectrum = np.abs(np.fft.rfft(channel.astype(np.float64)))
    return float(np.fft.rfftfreq(len(channel), 1 / 8000)[int(spectrum.argmax())])


def test_recording_true_records_both_sides_in_stereo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_umask = os.umask(0o022)  # the usual default: without care the WAV would be 0644
    t = np.arange(int(8000 * 2.0)) / 8000
    sf.write(tmp_path / "notice.wav", np.sin(2 * np.pi * 440 * t) * 0.3, 8000, subtype="PCM_16")
    campaign = write_campaign(tmp_path, "recorded", TREE, {}, recording=True)
    recordings = tmp_path / "private" / "recordings"
    monkeypatch.setenv("AUTOCALL_SIP_HOST", "127.0.0.1")
    monkeypatch.setenv("AUTOCALL_SIP_PORT", "44140")
    monkeypatch.setenv("AUTOCALL_BIND_PORT", "44141")
    monkeypatch.setenv("AUTOCALL_TTS_CACHE", str(tmp_path / "tts"))
    monkeypatch.setenv("AUTOCALL_RECORDINGS", str(recordings))
    db = f"sqlite:///{tmp_path / 'run.db'}"
    try:
        with Sipp(
            _streaming_callee(tmp_path), port=44140, media_port=44142, timeout=30, cwd=tmp_path
        ) as callee:
            result = CliRunner().invoke(
                app, ["campaign", "run", str(campaign), "--db", db, "--json"]
            )
            assert callee.wait(15) == 0, callee.errors()
    finally:
        os.umask(old_umask)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["answered"] == 1
    with sqlite3.connect(tmp_path / "run.db") as conn:
        ((status, path),) = conn.execute(
            "SELECT status, recording FROM autocall_attempts WHERE campaign = 'recorded'"
        )
    assert status == "completed" and path, "the attempt's record names no recording"
    wav = Path(path)
    assert wav.is_relative_to(recordings)
    samples, rate = sf.read(wav, dtype="int16", always_2d=True)
    assert rate == 8000 and samples.shape[1] == 2
    assert 1.8 <= len(samples) / 8000 <= 6.0  # the 2 s notice, answer to BYE
    left, right = samples[:, 0], samples[:, 1]
    assert np.abs(left).max() > 1000 and np.abs(right).max() > 1000
    assert _peak_hz(left) == pytest.approx(1000, abs=10)  # the callee's stream
    assert _peak_hz(right) == pytest.approx(440, abs=10)  # our notice
    assert stat.S_IMODE(wav.stat().st_mode) == 0o600
    assert stat.S_IMODE(recordings.stat().st_mode) == 0o700
