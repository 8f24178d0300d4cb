"""What the baresip call tests share: baresip's recording of what it decoded from us, the
tone found in it, our key events, and a walk through `serving.TREE` by baresip's keys."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from autocall.telephony.call import Call, DigitEvent
from tests.peers import Baresip, BaresipControl
from tests.telephony.serving import records


def dominant_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spec))])


def decoded(phone: Baresip) -> tuple[np.ndarray, int]:
    """baresip's recording of what it decoded from us (the last call), and its rate."""
    heard = sorted(phone.recordings.glob("*-dec.wav"))
    assert heard, f"baresip recorded nothing: {phone.output()[-1500:]}"
    pcm, rate = sf.read(str(heard[-1]), dtype="float64")
    return pcm, rate


def tone_heard(phone: Baresip, hz: float) -> tuple[np.ndarray, int]:
    """Over a second of our ``hz`` tone in what baresip decoded: the loud part, its rate."""
    pcm, rate = decoded(phone)
    loud = np.flatnonzero(np.abs(pcm) > 0.1)
    assert len(loud) > rate, phone.output()[-1500:]
    segment = pcm[loud[0] : loud[-1]]
    assert abs(dominant_hz(segment, rate) - hz) < 10
    return segment, rate


async def keys(call: Call, n: int, timeout: float) -> list[DigitEvent]:
    """The first ``n`` keys the call reports within ``timeout`` s (other events skipped)."""
    got: list[DigitEvent] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(got) < n and loop.time() < deadline:
        ev = await call.next_event(max(0.05, deadline - loop.time()))
        if isinstance(ev, DigitEvent):
            got.append(ev)
    return got


def walk_front_desk(ctrl: BaresipControl, uri: str, tmp: Path, welcome: float) -> None:
    """baresip calls ``uri`` (`autocall serve` with `serving.TREE`), presses 7 after the
    welcome prompt's ``welcome`` seconds and 9 in the sales menu, then waits up to 20 s
    for the call's record in ``tmp``."""
    try:
        ctrl.send("dial", uri)
        ctrl.wait_event("CALL_ESTABLISHED", 15.0)
        time.sleep(welcome)
        ctrl.send("sndcode", "7")
        time.sleep(2.5)
        ctrl.send("sndcode", "9")
        deadline = time.monotonic() + 20
        while not records(tmp) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        ctrl.close()
