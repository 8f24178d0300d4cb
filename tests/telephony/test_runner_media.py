"""The runner over a real RTP leg (two MediaSessions on loopback, no SIP yet).

The robot's leg runs a prompt tree with real espeak-ng prompts; the caller's leg presses
keys as RFC 4733 events and in-band tones. The call must take the expected path, barge-in
must cut prompts short, and the no-input timer must fire from the engine's deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from autocall.dialogue.schema import Tree
from autocall.media.clock import MediaEngine
from autocall.media.session import MediaSession
from autocall.telephony.runner import AudioCache, CallRunner
from autocall.telephony.webhooks import WebhookClient
from tests.telephony.legs import MediaLeg

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
    caller.on_audio.append(lambda f: heard.append(float(np.abs(f).max()) if len(f) else 0.0))

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


VOICEMAIL = {
    "name": "voicemail",
    "start": "record",
    "nodes": {
        "record": {"record": {"prompt": "Leave a message after the tone.", "max_seconds": 8,
                              "end_on_silence": 0.8}, "next": "thanks"},
        "thanks": {"say": "Got it.", "next": None},
    },
}


async def test_voicemail_is_a_wav_with_a_json_sidecar(audio: AudioCache, tmp_path: Path) -> None:
    _, robot, caller = await _legs()
    loud: list[float] = []
    caller.on_audio.append(
        lambda f: loud.append(time.monotonic()) if np.abs(f).max() > 500 else None)

    async def speak() -> None:
        while not loud or time.monotonic() - loud[-1] < 0.4:  # prompt and beep, then quiet
            await asyncio.sleep(0.05)
        t = np.arange(12000) / 8000
        await caller.play((np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16))

    speaker = asyncio.create_task(speak())
    runner = CallRunner(MediaLeg(robot), Tree.model_validate(VOICEMAIL), {}, audio=audio,
                        recordings_dir=tmp_path, call_facts={"caller": "+12025550111",
                                                             "call_id": "vm1"})
    result = await asyncio.wait_for(runner.run(), 30)
    await speaker
    await caller.close()
    assert result.path == ["record", "thanks"] and result.outcome == "completed"
    assert result.recording is not None
    wav = Path(result.recording)
    samples, rate = sf.read(wav, dtype="int16")
    assert rate == 8000 and 1.5 <= len(samples) / 8000 < 4.0
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    assert abs(np.fft.rfftfreq(len(samples), 1 / 8000)[spectrum.argmax()] - 440) < 5
    sidecar = json.loads(wav.with_suffix(".json").read_text())
    assert sidecar["caller"] == "+12025550111" and sidecar["node"] == "record"
    assert sidecar["reason"] == "silence" and sidecar["duration"] == pytest.approx(
        len(samples) / 8000, abs=0.05)
    assert float(result.variables["recording_duration"]) >= 1.5


class _Hooks(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/slow":
            time.sleep(3)
        reply = json.dumps({"plan": "gold", "seen": body["number"]}).encode()
        with contextlib.suppress(OSError):  # the client gave up on /slow: fine
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def hooks() -> Any:
    server = ThreadingHTTPServer(("127.0.0.1", 30500), _Hooks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _hook_tree(url: str) -> Tree:
    return Tree.model_validate({
        "start": "lookup",
        "nodes": {
            "lookup": {"webhook": {"url": url, "payload": {"number": "{number}"}, "timeout": 0.5,
                                   "retries": 1, "save": {"plan": "plan"}},
                       "next": "hello", "on_failure": "fallback"},
            "hello": {"say": "Welcome, {plan} member.", "next": None},
            "fallback": {"say": "Welcome.", "next": None},
        },
    })


@pytest.mark.parametrize(("path", "expected"), [
    ("/lookup", ["lookup", "hello"]), ("/slow", ["lookup", "fallback"]), ("dead", None)])
async def test_webhook_answers_or_falls_back(audio: AudioCache, hooks: Any, path: str,
                                            expected: list[str] | None) -> None:
    url = "http://127.0.0.1:30509/dead" if path == "dead" else f"http://127.0.0.1:30500{path}"
    _, robot, caller = await _legs()
    runner = CallRunner(MediaLeg(robot), _hook_tree(url), {"number": "+12025550123"},
                        audio=audio)
    started = time.monotonic()
    result = await asyncio.wait_for(runner.run(), 20)
    await caller.close()
    assert result.path == (expected or ["lookup", "fallback"])
    if path == "/lookup":
        assert result.variables["plan"] == "gold"
    else:  # two tries of 0.5 s and a 0.2 s backoff, never the slow server's 3 s
        assert result.variables["webhook_status"] == "0"
        assert time.monotonic() - started < 6


async def test_a_hanging_webhook_does_not_hold_a_hangup(audio: AudioCache, hooks: Any) -> None:
    _, robot, caller = await _legs()
    tree = _hook_tree("http://127.0.0.1:30500/slow")
    runner = CallRunner(MediaLeg(robot), tree, {"number": "+1"}, audio=audio)
    asyncio.get_running_loop().call_later(0.3, lambda: asyncio.ensure_future(robot.close()))
    started = time.monotonic()
    result = await asyncio.wait_for(runner.run(), 10)
    await caller.close()
    assert result.outcome == "caller-hangup" and time.monotonic() - started < 1.0


SPOKEN = {
    "name": "spoken-yes-no",
    "language": "ko",
    "start": "ask",
    "nodes": {
        "ask": {"menu": {"prompt": "예약을 확인하시겠습니까?", "speech": True, "timeout": 6,
                         "items": {"1": {"next": "yes", "say": ["네"]},
                                   "2": {"next": "no", "say": ["아니요"]}}}},
        "yes": {"hangup": "confirmed"},
        "no": {"hangup": "declined"},
    },
}


async def test_a_spoken_answer_takes_its_branch(audio: AudioCache) -> None:
    from autocall.speech.asr import load_model
    from tests.speech.asr_audio import synth

    model = await asyncio.to_thread(load_model, None, "ko")
    answer = synth("아니요")
    _, robot, caller = await _legs()
    loud: list[float] = []
    caller.on_audio.append(
        lambda f: loud.append(time.monotonic()) if np.abs(f).max() > 500 else None)

    async def reply() -> None:
        while not loud or time.monotonic() - loud[-1] < 0.4:  # the question, then quiet
            await asyncio.sleep(0.05)
        await caller.play(np.concatenate([answer, np.zeros(8000, np.int16)]))

    speaker = asyncio.create_task(reply())
    runner = CallRunner(MediaLeg(robot), Tree.model_validate(SPOKEN), {}, audio=audio,
                        speech_model=model)
    result = await asyncio.wait_for(runner.run(), 30)
    speaker.cancel()
    await caller.close()
    assert result.path == ["ask", "no"] and result.outcome == "declined"
    assert result.digits == ""


async def test_a_dead_webhook_falls_back_to_the_fallback_url(audio: AudioCache,
                                                             hooks: Any) -> None:
    _, robot, caller = await _legs()
    runner = CallRunner(MediaLeg(robot), _hook_tree("http://127.0.0.1:30509/dead"),
                        {"number": "+12025550123"}, audio=audio,
                        webhooks=WebhookClient(fallback_url="http://127.0.0.1:30500/lookup"))
    result = await asyncio.wait_for(runner.run(), 20)
    await caller.close()
    assert result.path == ["lookup", "hello"] and result.variables["plan"] == "gold"


def test_prompts_of_lists_what_the_engine_will_say() -> None:
    from autocall.dialogue.engine import Engine, PromptFinished, Say
    from autocall.telephony.runner import prompts_of

    tree = Tree.model_validate(TREE)
    listed = prompts_of(tree, {"first_name": "Ann"})
    assert Say("Hello Ann, this is the sales line of the example company.", "en", None) in listed
    assert len(listed) == len(set(listed))
    engine = Engine(tree, {"first_name": "Ann"})  # what a silent caller actually hears
    actions = engine.start(0.0)
    for t in range(1, 6):
        actions += engine.handle(PromptFinished(), float(t))
    said = [a for a in actions if isinstance(a, Say)]
    assert said and all(s in listed for s in said)
