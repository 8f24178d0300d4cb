"""Attended transfer: the robot dials the agent (baresip), announces, then bridges.

The customer's tone must reach the agent's recording through the bridge; an agent who
does not answer within the timeout sends the customer back to the tree.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from autocall.audio.tones import beep
from autocall.dialogue.schema import Tree
from autocall.telephony.call import CallStatus, UserAgent
from autocall.telephony.inbound import InboundServer
from autocall.telephony.runner import AudioCache
from autocall.telephony.virtual import Behaviour, PhoneScript, VirtualPhones
from tests.peers import Baresip

pytestmark = [pytest.mark.peers, pytest.mark.timeout(60)]

AGENT, ROBOT, PHONES = 30700, 30710, 30720


def _tree(target: str) -> Tree:
    return Tree.model_validate({
        "name": "attended",
        "start": "hold",
        "transfer_targets": [target],
        "nodes": {
            "hold": {"say": "Connecting you.", "next": "agent"},
            "agent": {"transfer": {"target": target, "mode": "attended", "timeout": 1.5,
                                   "announce": "A caller for sales."},
                      "on_failure": "sorry"},
            "sorry": {"say": "Nobody answers.", "next": None},
        },
    })


async def _customer_call(tree: Tree, tmp: Path, tone_ms: int) -> dict:
    server = InboundServer(tree, tmp / "calls.jsonl", audio=AudioCache(tmp / "tts"))
    robot = await UserAgent.start(bind_port=ROBOT, on_call=server.on_call)
    customer = await UserAgent.start()
    try:
        call = await customer.call(f"sip:robot@127.0.0.1:{ROBOT}", ring_timeout=5)
        assert await call.wait_answer(5) is CallStatus.IN_PROGRESS
        await call.play(beep(1000.0, tone_ms, level_dbm0=-6))
        await call.wait_ended(20)
        await server.drain(10)
    finally:
        await customer.close()
        await robot.close()
    (record,) = [json.loads(line) for line in (tmp / "calls.jsonl").read_text().splitlines()]
    return record


async def test_agent_hears_the_announcement_then_the_customer(tmp_path: Path) -> None:
    silence = tmp_path / "agent.wav"
    sf.write(silence, np.zeros(8000 * 6, np.int16), 8000, subtype="PCM_16")
    target = f"sip:agent@127.0.0.1:{AGENT}"
    with Baresip(port=AGENT, ctrl_port=AGENT + 3, user="agent", source_wav=silence) as agent:
        record = await asyncio.wait_for(_customer_call(_tree(target), tmp_path, 9000), 40)
        await asyncio.sleep(0.5)
    assert record["path"] == ["hold", "agent"] and record["outcome"] == "transferred"
    heard = sorted(agent.recordings.glob("*-dec.wav"))
    assert heard, agent.output()[-1500:]
    pcm, rate = sf.read(str(heard[-1]), dtype="float64")
    loud = np.abs(pcm) > 0.05
    assert loud.sum() > rate  # announcement and at least a second of the customer
    spectrum = np.abs(np.fft.rfft(pcm))
    assert abs(np.fft.rfftfreq(len(pcm), 1 / rate)[spectrum.argmax()] - 1000) < 10


async def test_no_answer_brings_the_customer_back(tmp_path: Path) -> None:
    book = {"agent": PhoneScript(Behaviour.NO_ANSWER)}
    async with VirtualPhones(book, port=PHONES) as phones:
        target = f"sip:agent@127.0.0.1:{PHONES}"
        record = await asyncio.wait_for(_customer_call(_tree(target), tmp_path, 200), 30)
        assert phones.calls[0].hung_up_by == "cancel"  # the ring was cancelled at 1.5 s
    assert record["path"] == ["hold", "agent", "sorry"] and record["outcome"] == "completed"
