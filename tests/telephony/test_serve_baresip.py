"""baresip softphones call `autocall serve` (registered to Kamailio) and press keys.

alice presses 1 as an RFC 4733 event (baresip's ``sndcode``) and the tree transfers
her with REFER to a second baresip, bob; carol's audio is a WAV with the in-band tones
of 2, which takes her down the other branch.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from autocall.audio import tones
from tests.peers import Baresip, Kamailio
from tests.telephony.serving import records, serve

pytestmark = [pytest.mark.peers, pytest.mark.timeout(90)]

KAM, ROBOT, BOB, ALICE, CAROL = 30600, 30630, 30610, 30620, 30640

TREE = f"""\
name: switchboard
outcomes: [informed]
start: welcome
transfer_targets: ["sip:bob@127.0.0.1:{BOB}"]
nodes:
  welcome:
    menu:
      prompt: "For sales press 1. For opening hours press 2."
      items: {{1: sales, 2: hours}}
      timeout: 8
  sales:
    transfer: "sip:bob@127.0.0.1:{BOB}"
    on_failure: sorry
  hours: {{say: "We are open from nine to five.", next: bye}}
  sorry: {{say: "Nobody is free.", next: bye}}
  bye: {{hangup: informed}}
"""


class Ctrl:
    """baresip's ctrl_tcp: netstring-framed JSON commands and events."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, port: int) -> Ctrl:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def command(self, command: str, params: str = "") -> None:
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self.writer.write(f"{len(body)}:".encode() + body + b",")
        await self.writer.drain()

    async def wait_event(self, kind: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events:
                if ev.get("type") == kind:
                    return ev
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {kind} event; got {[e.get('type') for e in self.events]}")
            length = await asyncio.wait_for(self.reader.readuntil(b":"), remaining)
            data = await self.reader.readexactly(int(length[:-1]) + 1)
            msg = json.loads(data[:-1])
            if msg.get("event"):
                self.events.append(msg)

    def close(self) -> None:
        self.writer.close()


async def test_rfc4733_key_transfers_alice_to_bob(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("AUTOCALL_SIP_PASSWORD", "robot-Pa55")
    (tmp_path / "tree.yaml").write_text(TREE)
    with Kamailio(port=KAM, users={"robot": "robot-Pa55"}), \
            Baresip(port=BOB, ctrl_port=BOB + 3, user="bob"), \
            Baresip(port=ALICE, ctrl_port=ALICE + 3, user="alice"), \
            serve(tmp_path, ROBOT, "--register", "--host", "127.0.0.1", "--port", str(KAM),
                  "--user", "robot", tree=TREE):
        await _wait_for_log(tmp_path / "serve.log", "registered as robot")
        alice = await Ctrl.connect(ALICE + 3)
        bob_ctrl = await Ctrl.connect(BOB + 3)
        try:
            await alice.command("dial", f"sip:robot@127.0.0.1:{KAM}")
            await alice.wait_event("CALL_ESTABLISHED", 10)
            await asyncio.sleep(1.0)
            await alice.command("sndcode", "1")
            established = await bob_ctrl.wait_event("CALL_ESTABLISHED", 15)
            assert "alice" in json.dumps(established)
        finally:
            alice.close()
            bob_ctrl.close()
        await _wait_for_records(tmp_path, 1)
    (record,) = records(tmp_path)
    assert record["path"] == ["welcome", "sales"] and record["outcome"] == "transferred"
    assert record["digits"] == "1"


async def test_inband_key_from_a_softphones_audio(tmp_path: Path) -> None:
    pcm = np.concatenate([np.zeros(8000 * 2, np.int16), tones.dtmf("2", 150, 150),
                          np.zeros(8000 * 12, np.int16)])
    wav = tmp_path / "carol.wav"
    sf.write(wav, pcm, 8000, subtype="PCM_16")
    with Baresip(port=CAROL, ctrl_port=CAROL + 3, user="carol", source_wav=wav), \
            serve(tmp_path, ROBOT + 1, tree=TREE):
        carol = await Ctrl.connect(CAROL + 3)
        try:
            await carol.command("dial", f"sip:robot@127.0.0.1:{ROBOT + 1}")
            await carol.wait_event("CALL_ESTABLISHED", 10)
            await carol.wait_event("CALL_CLOSED", 20)
        finally:
            carol.close()
        await _wait_for_records(tmp_path, 1)
    (record,) = records(tmp_path)
    assert record["digits"] == "2"
    assert record["path"] == ["welcome", "hours", "bye"] and record["outcome"] == "informed"


async def _wait_for_log(path: Path, text: str, timeout: float = 12.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        assert time.monotonic() < deadline, path.read_text(errors="replace")
        await asyncio.sleep(0.1)


async def _wait_for_records(tmp: Path, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while len(records(tmp)) < n:
        assert time.monotonic() < deadline, (tmp / "serve.log").read_text(errors="replace")
        await asyncio.sleep(0.1)
