"""The runner over a real RTP leg (two MediaSessions on loopback, no SIP yet).

The robot's leg runs a prompt tree with real espeak-ng prompts; the caller's leg presses
keys as RFC 4733 events and in-band tones. The call must take the expected path, barge-in
must cut prompts short, and the no-input timer must fire from the engine's deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autocall.dialogue.schema import Tree
from autocall.media.clock import MediaEngine
from autocall.media.session import MediaSession
from autocall.telephony.runner import AudioCache, CallRunner

TREE = {
    "name": "sales-line",
    "start": "hello",
    "nodes": {
        "hello": {"say": "Hello {first_name}, this is the sales line of the example company.",
                  "next": "menu"},
        "menu": {"menu": {"prompt": "For sales press 1. For support press 2.",
                          "items": {1: "account", 2: "support"}, "timeout": 3, "retries": 0},
                 "on_failure": "bye"},
        "account": {"gather": {"prompt": "Please key in your account number, then hash.",
                               "max_digits": 6, "terminator": "#", "variable": "account",
                               "first_timeout": 2, "inter_timeout": 2}, "next": "thanks"},
        "support": {"say": "Support is closed.", "next": None},
        "thanks": {"say": "Thank you.", "next": None},
        "bye": {"hangup": "gave-up"},
    },
}


class MediaLeg:
    """The verbs the runner needs, straight on a MediaSession."""

    def __init__(self, media: MediaSession) -> None:
        self.media = media

    async def play(self, pcm: Any) -> bool:
        return await self.media.play(pcm)

    def flush(self) -> None:
        self.media.flush()

    def events(self) -> AsyncIterator[Any]:
        return self.media.digits()

    async def hangup(self) -> None:
        await self.media.close()


async def _legs() -> tuple[MediaEngine, MediaSession, MediaSession]:
    engine = MediaEngine()
    robot = await MediaSession.open(engine)
    caller = await MediaSession.open(engine)
    robot.start(caller.local_addr, 0, 101)
    caller.start(robot.local_addr, 0, 101)
    return engine, robot, caller


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> AudioCache:
    return AudioCache(tmp_path_factory.mktemp("tts"))


@pytest.mark.parametrize("method", ["rfc4733", "inband"])
async def test_keys_take_the_expected_path_with_barge_in(audio: AudioCache, method: str) -> None:
    _, robot, caller = await _legs()
    heard: list[float] = []
    caller.on_audio = lambda f: heard.append(float(np.abs(f).max()) if len(f) else 0.0)

    async def press() -> None:
        await asyncio.sleep(0.8)  # during the greeting: barge-in skips it
        await caller.send_dtmf("1", method=method)  # type: ignore[arg-type]
        await asyncio.sleep(0.6)  # during the account prompt
        await caller.send_dtmf("42#", method=method)  # type: ignore[arg-type]

    presser = asyncio.create_task(press())
    runner = CallRunner(MediaLeg(robot), Tree.model_validate(TREE), {"first_name": "Ann"},
                        audio=audio)
    started = time.monotonic()
    result = await asyncio.wait_for(runner.run(), 30)
    elapsed = time.monotonic() - started
    await presser
    await caller.close()
    assert result.path == ["hello", "menu", "account", "thanks"]
    assert result.variables["account"] == "42"
    assert result.digits == "142#"
    assert result.outcome == "completed"
    texts = (TREE["nodes"]["hello"]["say"], "For sales press 1. For support press 2.",
             "Please key in your account number, then hash.", "Thank you.")
    full = sum([len(await audio.say(_say(t))) for t in texts]) / 8000
    assert elapsed < full - 1.0, "barge-in did not cut the prompts short"
    assert max(heard) > 1000  # the caller heard the robot's voice


async def test_no_input_times_out_to_on_failure(audio: AudioCache) -> None:
    _, robot, caller = await _legs()
    tree = Tree.model_validate(TREE)
    runner = CallRunner(MediaLeg(robot), tree, {"first_name": "Bo"}, audio=audio)
    result = await asyncio.wait_for(runner.run(), 30)
    await caller.close()
    assert result.path == ["hello", "menu", "bye"]
    assert result.outcome == "gave-up" and result.digits == ""


async def test_far_end_hangup_ends_the_dialogue(audio: AudioCache) -> None:
    _, robot, caller = await _legs()

    async def leave() -> None:
        await asyncio.sleep(0.5)
        await robot.close()  # the far end goes away: the leg's events end

    asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(leave()))
    runner = CallRunner(MediaLeg(robot), Tree.model_validate(TREE), {}, audio=audio)
    result = await asyncio.wait_for(runner.run(), 10)
    await caller.close()
    assert result.outcome == "caller-hangup" and result.caller_hung_up
    assert result.path == ["hello"]


def _say(text: str) -> Any:
    from autocall.dialogue.engine import Say

    return Say(text, "en", None)


def test_audio_cache_renders_a_wav_once(audio: AudioCache, tmp_path: Path) -> None:
    first = asyncio.run(audio.say(_say("Once only.")))
    second = asyncio.run(audio.say(_say("Once only.")))
    assert first is second and first.dtype == np.int16 and len(first) > 4000
