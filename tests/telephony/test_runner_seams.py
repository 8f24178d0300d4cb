"""The runner's seam with a call: the RunnerCall verbs, typed events, audio subscribers.

A fake call (no SIP, no RTP) is enough: the runner only uses what RunnerCall declares.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest

from autocall.dialogue import engine as eng
from autocall.dialogue.schema import Tree
from autocall.telephony.call import (
    CallEvent,
    CallStatus,
    DigitEvent,
    HangupEvent,
    TransferredEvent,
)
from autocall.telephony.runner import AudioCache, CallRunner, Pcm, RunnerCall

pytestmark = pytest.mark.timeout(20)

MENU = {
    "start": "m",
    "nodes": {
        "m": {"menu": {"prompt": "Press 1.", "items": {1: "one"}}},
        "one": {"hangup": "chose-one"},
    },
}


class _SilentAudio(AudioCache):
    """Every prompt is 20 ms of silence: no TTS needed."""

    async def say(self, action: eng.Say, rate: int = 8000) -> Pcm:
        return np.zeros(160, dtype=np.int16)


class _Media:
    def __init__(self) -> None:
        self.on_audio: list[Callable[[Pcm], None]] = []
        self.inband_detection = True
        self.rate = 8000
        self.closed = False

    async def play(self, pcm: Pcm) -> bool:
        return True


class _Call:
    def __init__(self) -> None:
        self.media = _Media()
        self.queue: asyncio.Queue[CallEvent] = asyncio.Queue()
        self.transfer_code: int | None = None
        self.ua = None

    async def play(self, pcm: Pcm) -> bool:
        await asyncio.sleep(0.02)
        return True

    def flush(self) -> None:
        pass

    async def events(self) -> AsyncIterator[CallEvent]:
        while True:
            event = await self.queue.get()
            yield event
            if isinstance(event, HangupEvent):
                return

    async def hangup(self) -> None:
        self.queue.put_nowait(HangupEvent("local", CallStatus.COMPLETED, 200, "OK"))

    async def wait_answer(self, timeout: float | None = None) -> str:
        return CallStatus.IN_PROGRESS

    async def wait_ended(self, timeout: float | None = None) -> object:
        return CallStatus.COMPLETED

    async def transfer(self, target: str) -> int:
        return 503


def _runner(call: RunnerCall, tmp_path: Path) -> CallRunner:
    return CallRunner(call, Tree.model_validate(MENU), {}, audio=_SilentAudio(tmp_path))


async def test_keys_come_as_typed_events_and_other_events_pass_by(tmp_path: Path) -> None:
    call = _Call()
    other: list[Pcm] = []
    call.media.on_audio.append(other.append)
    runner = _runner(call, tmp_path)
    running = asyncio.ensure_future(runner.run())
    await asyncio.sleep(0.05)
    assert call.media.on_audio == [other.append, runner._on_audio]  # subscribed, not chained
    call.queue.put_nowait(TransferredEvent("sip:b@example.com", None, 200))  # no hang-up
    call.queue.put_nowait(DigitEvent("1", "rfc4733", 0.0))
    result = await asyncio.wait_for(running, 5)
    assert result.outcome == "chose-one" and result.digits == "1"
    assert not result.caller_hung_up
    assert call.media.on_audio == [other.append]  # the runner left, the other stays
    assert call.media.inband_detection  # left as it was found


async def test_a_hangup_event_ends_the_dialogue(tmp_path: Path) -> None:
    call = _Call()
    running = asyncio.ensure_future(_runner(call, tmp_path).run())
    await asyncio.sleep(0.05)
    call.queue.put_nowait(HangupEvent("remote", CallStatus.COMPLETED, 200, "OK"))
    result = await asyncio.wait_for(running, 5)
    assert result.outcome == "caller-hangup" and result.caller_hung_up
