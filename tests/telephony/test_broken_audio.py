"""Issue 12 item 10: broken prompt audio is never a "completed" call.

An empty, text, corrupt (truncated) or over-limit file is reported by ``prompts validate``
at the node that names it, refused by ``call --play`` before anything is dialed (a raw
UDP socket as the trunk sees no INVITE), and, met at call time in a campaign against a
real SIPp callee, ends the call as failed with the reason in ``error``; the campaign
retries it. Ports: 44120-44139.
"""

from __future__ import annotations

import json
import re
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from autocall.cli import app
from tests.peers import SCENARIOS, Sipp
from tests.telephony.campaigns import write_campaign

pytestmark = pytest.mark.peers


def _good(path: Path, seconds: float = 0.6) -> Path:
    t = np.arange(int(8000 * seconds)) / 8000
    sf.write(path, (np.sin(2 * np.pi * 440 * t) * 0.3).astype(np.float64), 8000, subtype="PCM_16")
    return path


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _text(path: Path) -> Path:
    path.write_text("Hello, this is the script of the prompt, not its audio.\n")
    return path


def _corrupt(path: Path) -> Path:
    data = _good(path, 2.0).read_bytes()
    path.write_bytes(data[: len(data) // 3])  # a download cut short: the header claims more
    return path


def _over_limit(path: Path) -> Path:
    return _good(path, 5.3 * 1024 * 1024 / 2 / 8000)  # 16-bit 8 kHz: just over 5 MiB


BROKEN: dict[str, Callable[[Path], Path]] = {
    "empty": _empty,
    "text": _text,
    "corrupt": _corrupt,
    "over-limit": _over_limit,
}


def test_prompts_validate_reports_each_broken_file_at_its_node(tmp_path: Path) -> None:
    (tmp_path / "audio").mkdir()
    for name, make in BROKEN.items():
        make(tmp_path / "audio" / f"{name}.wav")
    _good(tmp_path / "audio" / "fine.wav")
    tree = tmp_path / "tree.yaml"
    tree.write_text("""\
name: broken-audio
start: a
nodes:
  a:
    play: [audio/fine.wav, audio/empty.wav]
    next: b
  b:
    play: audio/text.wav
    next: m
  m:
    menu:
      prompt: [{play: audio/corrupt.wav}, "Press 1"]
      items: {1: c}
  c:
    play: audio/over-limit.wav
""")
    result = CliRunner().invoke(app, ["prompts", "validate", str(tree)])
    assert result.exit_code == 1, result.output
    found = {
        (int(m[1]), int(m[2])): m[3]
        for m in re.finditer(
            r"tree\.yaml:(\d+):(\d+): error: (audio file .*? cannot be played: .*)", result.output
        )
    }
    assert sorted(found) == [(5, 28), (8, 11), (12, 23), (15, 11)], result.output
    assert "empty" in found[(5, 28)]
    assert "not audio" in found[(8, 11)]
    assert "truncated" in found[(12, 23)] or "corrupt" in found[(12, 23)]
    assert "limit is 5 MiB" in found[(15, 11)]
    assert "fine.wav" not in result.output


@pytest.mark.parametrize("kind", list(BROKEN))
def test_call_play_refuses_a_broken_file_before_dialing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setenv("AUTOCALL_DATABASE_URL", f"sqlite:///{tmp_path / 'calls.db'}")
    wav = BROKEN[kind](tmp_path / "notice.wav")
    trunk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    trunk.bind(("127.0.0.1", 44120))
    trunk.setblocking(False)
    try:
        result = CliRunner().invoke(
            app,
            [
                "call",
                "sip:sipp@127.0.0.1:44120",
                "--play",
                str(wav),
                "--ring-timeout",
                "2",
                "--bind",
                "127.0.0.1:44121",
                "--json",
            ],
        )
        with pytest.raises(BlockingIOError):
            trunk.recvfrom(65535)  # nothing was sent: no INVITE, no call
    finally:
        trunk.close()
    assert result.exit_code == 2, result.output
    assert f"--play {wav}" in result.output.replace("\n", "")


# The file is named through a contact field, so no check before the run can see it: the
# call itself must notice that the prompt cannot play.
BROKEN_AT_CALL_TIME = """\
name: notice
start: hello
nodes:
  hello:
    play: "audio/{clip}"
    next: null
"""


def test_a_prompt_that_cannot_play_fails_the_call_and_the_campaign_retries_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "audio").mkdir()
    _corrupt(tmp_path / "audio" / "notice.wav")
    campaign = write_campaign(
        tmp_path, "broken-notice", BROKEN_AT_CALL_TIME, {"clip": "notice.wav"}, attempts=2
    )
    monkeypatch.setenv("AUTOCALL_SIP_HOST", "127.0.0.1")
    monkeypatch.setenv("AUTOCALL_SIP_PORT", "44130")
    monkeypatch.setenv("AUTOCALL_BIND_PORT", "44131")
    monkeypatch.setenv("AUTOCALL_TTS_CACHE", str(tmp_path / "tts"))
    monkeypatch.setenv("AUTOCALL_RECORDINGS", str(tmp_path / "recordings"))
    db = f"sqlite:///{tmp_path / 'run.db'}"
    with Sipp(
        SCENARIOS / "uas_answer.xml", port=44130, media_port=44132, calls=2, timeout=40
    ) as callee:
        result = CliRunner().invoke(app, ["campaign", "run", str(campaign), "--db", db, "--json"])
        assert callee.wait(20) == 0, callee.errors()  # two calls, each answered and BYEd
    assert result.exit_code == 0, result.output
    final = json.loads(result.stdout.strip().splitlines()[-1])
    assert final["dialed"] == 2 and final["done"] == 1
    with sqlite3.connect(tmp_path / "run.db") as conn:
        rows = conn.execute(
            "SELECT attempt_no, status, outcome, sip_code, error FROM autocall_attempts "
            "WHERE campaign = 'broken-notice' ORDER BY id"
        ).fetchall()
    assert [r[0] for r in rows] == [1, 2]  # retried after the first failure
    for _, status, outcome, sip_code, error in rows:
        assert (status, outcome, sip_code) == ("failed", "failed", 200)  # answered, not heard
        assert error is not None and "prompt cannot play" in error and "notice.wav" in error
