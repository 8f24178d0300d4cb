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
    # A menu needs no received audio: the runner does not subscribe (the session then
    # runs no jitter buffer), and leaves other subscribers as they are.
    assert call.media.on_audio == [other.append]
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


VOICEMAIL = {
    "start": "vm",
    "nodes": {
        "vm": {"record": {"prompt": "Leave a message.", "beep": False, "max_seconds": 5,
                          "end_on_silence": 0, "end_on_key": "#"},
               "next": "wait"},
        "wait": {"pause": 0.5, "next": "bye"},  # the call goes on after the message
        "bye": {"hangup": "left-message"},
    },
}


async def test_received_audio_is_taken_only_while_recording(tmp_path: Path) -> None:
    """Subscribed beside the others while a message is recorded, gone once it ends."""
    call = _Call()
    other: list[Pcm] = []
    call.media.on_audio.append(other.append)
    runner = CallRunner(call, Tree.model_validate(VOICEMAIL), {}, audio=_SilentAudio(tmp_path),
                        recordings_dir=tmp_path)
    running = asyncio.ensure_future(runner.run())
    await asyncio.sleep(0.1)
    assert call.media.on_audio == [other.append, runner._on_audio]  # subscribed, not chained
    for _ in range(5):
        runner._on_audio(np.full(160, 2000, dtype=np.int16))  # the session's frames
    call.queue.put_nowait(DigitEvent("#", "rfc4733", 0.0))
    await asyncio.sleep(0.1)
    assert call.media.on_audio == [other.append]  # the recording ended: let go
    result = await asyncio.wait_for(running, 5)
    assert result.outcome == "left-message"
    assert result.variables["recording_duration"] == "0.1"  # the five frames it took
    assert call.media.on_audio == [other.append]
