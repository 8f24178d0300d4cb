"""The runner keeps in-band DTMF detection on only while a key could change the call.

Two real MediaSessions on loopback share one MediaEngine, so its detector pool counts the
robot leg's slot (the caller leg runs without a detector). Each received frame logs the
engine's node next to that count: the timeline shows exactly when the detector ran.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autocall.dialogue.engine import Say
from autocall.dialogue.schema import Tree
from autocall.media.clock import MediaEngine
from autocall.media.session import MediaSession
from autocall.telephony.call import CallStatus, UserAgent
from autocall.telephony.runner import AudioCache, CallRunner, RunResult
from autocall.telephony.virtual import Behaviour, PhoneScript, VirtualPhones
from tests.telephony.legs import MediaLeg

PHONES, ROBOT = 30900, 30901


@dataclass
class Leg:
    engine: MediaEngine
    robot: MediaSession
    caller: MediaSession
    loud: list[float]  # monotonic times of caller-side frames carrying the robot's voice

    async def heard_voice(self, after: float = 0.0) -> float:
        """Wait for the robot's voice after monotonic time ``after``; returns when it came."""
        while not self.loud or self.loud[-1] <= after:
            await asyncio.sleep(0.01)
        return next(t for t in self.loud if t > after)

    async def heard_quiet(self, seconds: float) -> float:
        """Wait until the robot has been quiet for ``seconds`` after speaking."""
        await self.heard_voice()
        while time.monotonic() - self.loud[-1] < seconds:
            await asyncio.sleep(0.01)
        return time.monotonic()


async def _leg() -> Leg:
    engine = MediaEngine()
    robot = await MediaSession.open(engine)
    caller = await MediaSession.open(engine, detect_inband=False)
    robot.start(caller.local_addr, 0, 101)
    caller.start(robot.local_addr, 0, 101)
    loud: list[float] = []
    caller.on_audio.append(
        lambda f: loud.append(time.monotonic()) if np.abs(f).max() > 500 else None)
    return Leg(engine, robot, caller, loud)


Row = tuple[str | None, str | None, int]  # node, waiting_for, robot detector slots in use
Caller = Callable[[Leg], Coroutine[Any, Any, None]]  # what the caller does meanwhile


async def _run(leg: Leg, tree: dict[str, Any], audio: AudioCache, caller: Caller,
               **options: Any) -> tuple[RunResult, list[Row]]:
    runner = CallRunner(MediaLeg(leg.robot), Tree.model_validate(tree), {}, audio=audio,
                        **options)
    pool = leg.engine.detector_pool()
    rows: list[Row] = []
    leg.robot.on_audio.append(lambda _: rows.append(
        (runner.engine.node, runner.engine.waiting_for, pool.calls)))  # before the runner's
    acting = asyncio.create_task(caller(leg))
    try:
        result = await asyncio.wait_for(runner.run(), 30)
        await asyncio.wait_for(acting, 5)
    finally:
        acting.cancel()
        await leg.caller.close()
    return result, rows


def _slots(rows: list[Row], node: str) -> set[int]:
    found = {slots for n, waiting, slots in rows if n == node and waiting is not None}
    assert found, f"no frame was received during {node!r}"
    return found


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> AudioCache:
    return AudioCache(tmp_path_factory.mktemp("tts"))


IGNORED = {
    "start": "wait",
    "nodes": {
        "wait": {"pause": 0.8, "next": "vm"},
        "vm": {"record": {"prompt": "Leave a message after the tone.", "beep": False,
                          "max_seconds": 1.5, "end_on_silence": 0, "end_on_key": None},
               "next": "bye"},
        "bye": {"say": "Goodbye.", "next": None},
    },
}


async def test_detector_is_off_where_keys_are_ignored(audio: AudioCache,
                                                      tmp_path: Path) -> None:
    """Pause (no menu ahead), record prompt and a recording without a stop key: off."""
    leg = await _leg()

    async def caller(leg: Leg) -> None:
        await asyncio.sleep(0.3)
        await leg.caller.send_dtmf("7", method="rfc4733")  # during the pause: not in-band
        await leg.heard_voice()  # the record prompt
        await asyncio.sleep(0.3)
        await leg.caller.send_dtmf("5", method="inband")  # the engine drops it anyway
        await leg.heard_quiet(0.4)  # recording
        await leg.caller.send_dtmf("6", method="inband")  # no end_on_key: nothing reacts

    result, rows = await _run(leg, IGNORED, audio, caller, recordings_dir=tmp_path)
    assert result.path == ["wait", "vm", "bye"] and result.outcome == "completed"
    assert result.variables["recording_duration"] == "1.5"  # the "6" did not end it
    assert result.digits == "7"  # RFC 4733 still arrives; in-band keys were not analysed
    assert _slots(rows, "wait") == {0}
    assert _slots(rows, "vm") == {0}
    assert _slots(rows, "bye") == {1}  # a message can be skipped by a key
    assert leg.robot.inband_detection  # left as the runner found it


MENU_PROMPT = "For sales press 1. For support press 2. For anything else, please stay on the line."
EARLY_MENU = {
    "start": "vm",
    "nodes": {
        "vm": {"record": {"prompt": "Leave a message.", "beep": False, "max_seconds": 1.0,
                          "end_on_silence": 0, "end_on_key": None}, "next": "menu"},
        "menu": {"menu": {"prompt": MENU_PROMPT,
                          "items": {1: "sales", 2: "support"}, "timeout": 3, "retries": 0},
                 "on_failure": "gave_up"},
        "sales": {"hangup": "sales"},
        "support": {"hangup": "support"},
        "gave_up": {"hangup": "gave-up"},
    },
}


async def test_detector_is_on_before_a_menu_prompt_starts(audio: AudioCache,
                                                          tmp_path: Path) -> None:
    """Off during the recording, on for the whole menu: a key at its first word counts."""
    leg = await _leg()
    prompt = await audio.say(Say(MENU_PROMPT, "en", None))
    pressed: list[float] = []

    async def caller(leg: Leg) -> None:
        quiet = await leg.heard_quiet(0.5)  # the record prompt has ended: recording
        menu_starts = await leg.heard_voice(after=quiet)
        pressed.append(menu_starts)
        await leg.caller.send_dtmf("1", method="inband")  # at once: 100 ms of tone

    result, rows = await _run(leg, EARLY_MENU, audio, caller, recordings_dir=tmp_path)
    assert result.path == ["vm", "menu", "sales"] and result.outcome == "sales"
    assert result.digits == "1"
    assert _slots(rows, "vm") == {0}
    assert _slots(rows, "menu") == {1}  # from the node's first frame, before its prompt
    assert time.monotonic() - pressed[0] < len(prompt) / 8000 - 1.0, "the key did not barge in"


ANNOUNCEMENT = ("This is a long announcement from the example company about the opening "
                "hours of all our stores during the coming holiday weekend.")
SKIPPABLE = {
    "start": "hello",
    "nodes": {
        "hello": {"say": ANNOUNCEMENT, "next": "heard"},
        "heard": {"hangup": "heard"},
    },
}


async def test_a_message_a_key_can_skip_keeps_the_detector_on(audio: AudioCache) -> None:
    leg = await _leg()
    message = await audio.say(Say(ANNOUNCEMENT, "en", None))

    async def caller(leg: Leg) -> None:
        await leg.heard_voice()
        await asyncio.sleep(0.5)
        await leg.caller.send_dtmf("5", method="inband")

    started = time.monotonic()
    result, rows = await _run(leg, SKIPPABLE, audio, caller)
    assert result.path == ["hello", "heard"] and result.outcome == "heard"
    assert result.digits == "5"
    assert _slots(rows, "hello") == {1}
    assert time.monotonic() - started < len(message) / 8000 - 1.5, "the key did not skip it"


TYPE_AHEAD = {
    "start": "wait",
    "nodes": {
        "wait": {"pause": 1.5, "next": "menu"},
        "menu": {"menu": {"prompt": "For sales press 1. For support press 2.",
                          "items": {1: "sales", 2: "support"}, "timeout": 3, "retries": 0}},
        "sales": {"hangup": "sales"},
        "support": {"hangup": "support"},
    },
}


async def test_a_pause_before_a_menu_keeps_keys_as_type_ahead(audio: AudioCache) -> None:
    leg = await _leg()

    async def caller(leg: Leg) -> None:
        await asyncio.sleep(0.5)
        await leg.caller.send_dtmf("2", method="inband")

    started = time.monotonic()
    result, rows = await _run(leg, TYPE_AHEAD, audio, caller)
    assert result.path == ["wait", "menu", "support"] and result.digits == "2"
    assert _slots(rows, "wait") == {1}
    assert time.monotonic() - started < 2.5  # the menu took the key without its prompt


async def test_no_detector_runs_while_the_caller_talks_to_an_agent(audio: AudioCache) -> None:
    """Attended transfer with nothing to listen for after it: neither leg is analysed."""
    book = {"cust": PhoneScript(Behaviour.ANSWER, ring_seconds=0.05),
            "agent": PhoneScript(Behaviour.HANGUP_EARLY, ring_seconds=0.05, hangup_after=2.0)}
    async with VirtualPhones(book, port=PHONES) as phones:
        ua = await UserAgent.start(bind_port=ROBOT)
        try:
            agent = phones.uri("agent")
            tree = Tree.model_validate({
                "start": "hold",
                "transfer_targets": [agent],
                "nodes": {
                    "hold": {"say": "Connecting you.", "next": "agent"},
                    "agent": {"transfer": {"target": agent, "mode": "attended",
                                           "timeout": 3, "announce": "A caller."},
                              "on_failure": "sorry"},
                    "sorry": {"say": "Nobody answers.", "next": None},
                },
            })
            call = await ua.call(phones.uri("cust"), ring_timeout=5)
            assert await call.wait_answer(5) is CallStatus.IN_PROGRESS
            runner = CallRunner(call, tree, {}, audio=audio)
            pool = ua.engine.detector_pool()
            rows: list[Row] = []

            async def watch() -> None:
                while True:
                    rows.append((runner.engine.node, runner.engine.waiting_for, pool.calls))
                    await asyncio.sleep(0.02)

            watcher = asyncio.create_task(watch())
            try:
                result = await asyncio.wait_for(runner.run(), 30)
            finally:
                watcher.cancel()
        finally:
            await ua.close()
    assert result.path == ["hold", "agent"] and result.outcome == "transferred"
    assert [c.number for c in phones.calls] == ["cust", "agent"]
    assert phones.calls[1].answered_at is not None  # the bridge really happened
    assert _slots(rows, "hold") == {1}
    assert _slots(rows, "agent") == {0}


NOTICE_TEXT = ("This call is recorded for quality and training purposes. By staying on the "
               "line you agree to the recording.")
NOTICE = {
    "start": "wait",
    "nodes": {
        "wait": {"pause": 0.6, "next": "notice"},
        "notice": {"say": NOTICE_TEXT, "skippable": False, "next": "menu"},
        "menu": {"menu": {"prompt": "Press 2 to agree.", "items": {1: "one", 2: "two"},
                          "timeout": 3, "retries": 0}, "on_failure": "gave_up"},
        "one": {"hangup": "one"},
        "two": {"hangup": "two"},
        "gave_up": {"hangup": "gave-up"},
    },
}


async def test_an_unskippable_message_turns_the_detector_off_and_ignores_keys(
        audio: AudioCache) -> None:
    """Off during the notice and the pause before it (its type-ahead would be dropped)."""
    leg = await _leg()
    notice = await audio.say(Say(NOTICE_TEXT, "en", None))
    heard: list[float] = []

    async def caller(leg: Leg) -> None:
        await asyncio.sleep(0.2)
        await leg.caller.send_dtmf("1", method="rfc4733")  # the pause: dropped by the notice
        heard.append(await leg.heard_voice())
        await asyncio.sleep(0.5)
        await leg.caller.send_dtmf("1", method="inband")  # the detector is off: unheard
        await asyncio.sleep(0.3)
        await leg.caller.send_dtmf("1", method="rfc4733")  # arrives, neither skips nor answers
        await asyncio.sleep(max(0.0, heard[0] + len(notice) / 8000 + 0.5 - time.monotonic()))
        await leg.caller.send_dtmf("2", method="inband")  # the menu now: heard and taken

    result, rows = await _run(leg, NOTICE, audio, caller)
    assert result.path == ["wait", "notice", "menu", "two"] and result.outcome == "two"
    assert result.digits == "112"  # both RFC 4733 keys logged, the in-band 1 never analysed
    assert result.inputs == 2  # the pause's key and the answer; a key into the notice is none
    assert _slots(rows, "wait") == {0}
    assert _slots(rows, "notice") == {0}
    assert _slots(rows, "menu") == {1}
    notice_frames = sum(1 for node, _, _ in rows if node == "notice")  # one per 20 ms
    assert notice_frames * 0.02 >= len(notice) / 8000 - 0.3, "a key cut the notice short"


SPOKEN_THEN_NOTICE = {
    "language": "ko",
    "start": "ask",
    "nodes": {
        "ask": {"menu": {"prompt": "예약을 확인하시겠습니까?", "speech": True, "timeout": 1.0,
                         "retries": 0, "items": {"1": {"next": "yes", "say": ["네"]}}},
                "on_failure": "notice"},
        "notice": {"say": "이 통화는 녹음됩니다. 감사합니다. 안녕히 계세요.", "skippable": False,
                   "next": "bye"},
        "bye": {"hangup": "no-answer"},
        "yes": {"hangup": "confirmed"},
    },
}


async def test_a_voice_during_the_notice_after_a_spoken_menu_does_not_cut_it(
        audio: AudioCache) -> None:
    """The menu's recogniser must not outlive it: its barge-in would flush the notice."""
    from autocall.speech.asr import load_model
    from tests.speech.asr_audio import synth

    model = await asyncio.to_thread(load_model, None, "ko")
    voice = synth("아니요 아니요 아니요")
    tree = Tree.model_validate(SPOKEN_THEN_NOTICE)
    notice = await audio.say(Say(tree.nodes["notice"].say, "ko", None))  # type: ignore[union-attr]

    async def caller(leg: Leg) -> None:
        quiet = await leg.heard_quiet(0.3)  # the question, then the menu's 1 s of silence
        await leg.heard_voice(after=quiet + 0.5)  # the notice
        await leg.caller.play(voice)  # talks over it

    leg = await _leg()
    started = time.monotonic()
    result, rows = await _run(leg, SPOKEN_THEN_NOTICE, audio, caller, speech_model=model)
    assert result.path == ["ask", "notice", "bye"] and result.outcome == "no-answer"
    notice_frames = sum(1 for node, _, _ in rows if node == "notice")
    assert notice_frames * 0.02 >= len(notice) / 8000 - 0.3, "the voice cut the notice short"
    assert time.monotonic() - started < 20 and leg.robot.inband_detection
