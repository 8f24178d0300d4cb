"""The runner on a G.722 leg (two MediaSessions on loopback speaking payload type 9):
the tree's prompts play at 16 kHz, its voicemail is written at 16 kHz, keys still work."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from autocall.dialogue.schema import Tree
from autocall.media.clock import MediaEngine
from autocall.media.session import MediaSession
from autocall.telephony.runner import AudioCache, CallRunner
from tests.telephony.legs import MediaLeg


def _dominant_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spec))])


async def test_a_wideband_leg_hears_16khz_prompts_and_leaves_16khz_voicemail(
    tmp_path: Path,
) -> None:
    t = np.arange(16000) / 16000
    chirp = tmp_path / "high.wav"  # one second of 5 kHz: cannot pass at 8 kHz
    sf.write(str(chirp), (0.4 * np.sin(2 * np.pi * 5000 * t)).astype(np.float32), 16000)
    tree = Tree.model_validate({
        "name": "wideband",
        "start": "tone",
        "nodes": {
            "tone": {"play": str(chirp), "next": "menu"},
            "menu": {"menu": {"prompt": "Press 3 to leave a message.", "items": {3: "record"},
                              "timeout": 5, "retries": 0}, "on_failure": "bye"},
            "record": {"record": {"max_seconds": 6, "end_on_silence": 0.8, "beep": False},
                       "next": None},
            "bye": {"hangup": "gave-up"},
        },
    })  # fmt: skip
    engine = MediaEngine()
    robot, caller = await MediaSession.open(engine), await MediaSession.open(engine)
    robot.start(caller.local_addr, 9, 101)
    caller.start(robot.local_addr, 9, 101)
    heard: list[np.ndarray] = []
    caller.on_audio.append(heard.append)

    async def act() -> None:
        while not heard or max(np.abs(f).max() for f in heard[-5:]) < 1000:
            await asyncio.sleep(0.05)  # the tone began
        await asyncio.sleep(1.4)  # the tone and the start of the menu prompt
        await caller.send_dtmf("3", method="inband")
        await asyncio.sleep(0.5)
        u = np.arange(24000) / 16000  # 1.5 s at 6 kHz: only a 16 kHz voicemail keeps it
        await caller.play((np.sin(2 * np.pi * 6000 * u) * 8000).astype(np.int16))

    actor = asyncio.create_task(act())
    runner = CallRunner(
        MediaLeg(robot),
        tree,
        {},
        audio=AudioCache(tmp_path / "tts"),
        recordings_dir=tmp_path / "rec",
        call_facts={"call_id": "wb1"},
    )
    started = time.monotonic()
    result = await asyncio.wait_for(runner.run(), 30)
    await actor
    await caller.close()
    engine.close()
    assert result.path == ["tone", "menu", "record"] and result.digits == "3", result
    assert time.monotonic() - started < 25
    received = np.concatenate(heard)
    loud = np.flatnonzero(np.abs(received) > 1000)
    assert abs(_dominant_hz(received[loud[0] : loud[0] + 12000], 16000) - 5000) < 20
    assert result.recording is not None
    voicemail, rate = sf.read(result.recording, dtype="int16")
    assert rate == 16000 and 1.2 <= len(voicemail) / rate < 4.0
    assert abs(_dominant_hz(voicemail, rate) - 6000) < 20
