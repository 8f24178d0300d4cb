"""baresip as a real softphone callee: it auto-answers and records what it hears."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soundfile as sf

from autocall.audio.tones import beep
from autocall.telephony.call import CallStatus, DigitEvent, UserAgent
from tests.peers import Baresip

pytestmark = [pytest.mark.peers, pytest.mark.timeout(60)]

TONE_HZ = 1333.0


def _dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


async def test_our_tone_arrives_in_baresips_recording() -> None:
    with Baresip(port=20500, ctrl_port=20503) as phone:
        ua = await UserAgent.start()
        try:
            call = await ua.call("sip:bob@127.0.0.1:20500", ring_timeout=15)
            assert await call.wait_answer(15) is CallStatus.IN_PROGRESS
            assert await call.play(beep(TONE_HZ, 1500, level_dbm0=-6))
            await call.hangup()
            assert await call.wait_ended(5) is CallStatus.COMPLETED
        finally:
            await ua.close()
        await asyncio.sleep(0.5)  # let baresip close its WAV files
    heard = sorted(phone.recordings.glob("*-dec.wav"))
    assert heard, f"baresip recorded nothing: {phone.output()[-1500:]}"
    pcm, rate = sf.read(str(heard[-1]), dtype="float64")
    loud = np.flatnonzero(np.abs(pcm) > 0.1)
    assert len(loud) > rate  # more than one second of our tone came through
    segment = pcm[loud[0] : loud[-1]]
    assert abs(_dominant_hz(segment, rate) - TONE_HZ) < 10


async def test_dtmf_both_ways_with_baresip() -> None:
    loop = asyncio.get_running_loop()
    with Baresip(port=20520, ctrl_port=20523) as phone:
        ctrl = phone.control()
        ua = await UserAgent.start()
        try:
            call = await ua.call("sip:bob@127.0.0.1:20520", ring_timeout=15)
            assert await call.wait_answer(15) is CallStatus.IN_PROGRESS
            await loop.run_in_executor(None, ctrl.wait_event, "CALL_ESTABLISHED", 5.0)
            ctrl.send("sndcode", "4")  # baresip sends RFC 4733 events
            ev = await call.next_event(5)
            assert isinstance(ev, DigitEvent) and (ev.digit, ev.source) == ("4", "rfc4733")
            assert await call.send_dtmf("6") == "rfc4733"
            got = await loop.run_in_executor(None, ctrl.wait_event, "CALL_DTMF_START", 5.0)
            assert got.get("param") == "6"
            await call.hangup()
        finally:
            ctrl.close()
            await ua.close()
