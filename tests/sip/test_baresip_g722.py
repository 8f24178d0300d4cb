"""Wideband calls with baresip (its own G.722 module, libre/rem, not libg722): G.722 is
negotiated (RTP payload type 9, ``G722/8000`` per RFC 3551 §4.5.2) when both sides allow
it, and a 5 kHz tone of ours, which no 8 kHz codec can carry, arrives in baresip's
recording of what it decoded, at 16 kHz. Keys still come through (RFC 4733, and in-band
from baresip's 16 kHz source through our decimator to the 8 kHz detector); a peer that
only has G.711 still gets G.711."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest

from autocall.audio.tones import beep, dtmf
from autocall.sip.sdp import parse_sdp
from autocall.telephony.call import CallStatus, UserAgent
from tests.peers import Baresip
from tests.sip.baresip_calls import decoded, keys, tone_heard, walk_front_desk
from tests.telephony.serving import records, serve

pytestmark = [pytest.mark.peers, pytest.mark.timeout(90)]

# Ports (issue 18 wideband): ours 32000-32009; baresip SIP 32100/32200/32300/32400 (TLS +1,
# ctrl +3, RTP +10..+40).
WIDE = ("G722", "PCMU", "PCMA")
BARESIP_WIDE = "G722/16000/1,PCMU"  # baresip names a codec by its audio rate
HIGH_HZ = 5000.0  # above 4 kHz: only a 16 kHz codec carries it


def _share_near(x: np.ndarray, rate: int, hz: float) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spec[np.abs(freqs - hz) < 100].sum() / spec.sum())


def _keyed_source(path: Path, code: str) -> Path:
    """baresip's 16 kHz source: 2 s of silence, ``code`` in-band, then silence (60 s)."""
    rate = 16000
    pcm = np.concatenate(
        (
            np.zeros(2 * rate, dtype=np.int16),
            dtmf(code, on_ms=120, off_ms=120, level_dbm0=-8, rate=rate),
            np.zeros(58 * rate, dtype=np.int16),
        )
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


async def test_we_call_baresip_with_g722_and_our_5khz_tone_arrives_at_16khz(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    source = _keyed_source(tmp_path / "keys.wav", "2580")
    with Baresip(
        port=32100, ctrl_port=32103, codecs=BARESIP_WIDE, srate=16000, source_wav=source
    ) as phone:
        ctrl = phone.control()
        ua = await UserAgent.start(bind_port=32000, codecs=WIDE)
        try:
            call = await ua.call("sip:bob@127.0.0.1:32100", ring_timeout=15)
            assert await call.wait_answer(15) is CallStatus.IN_PROGRESS, phone.output()[-1500:]
            offer = parse_sdp(call.session.usage.invite.body)
            assert offer.audio is not None and offer.audio.formats[:3] == [9, 0, 8]
            answer = parse_sdp(call.session.usage.remote_sdp or b"")
            assert answer.audio is not None and answer.audio.formats[0] == 9
            assert call.negotiated is not None and call.negotiated.codec == "G722"
            assert call.media.rate == 16000
            await loop.run_in_executor(None, ctrl.wait_event, "CALL_ESTABLISHED", 5.0)
            # baresip's source keys 2580 in-band at 16 kHz, 2 s into the call
            inband = await keys(call, 4, 8.0)
            assert [(k.digit, k.source) for k in inband] == [(d, "inband") for d in "2580"]
            assert await call.play(beep(HIGH_HZ, 1500, level_dbm0=-6, rate=16000))
            ctrl.send("sndcode", "4")  # RFC 4733 from baresip
            (key,) = await keys(call, 1, 5.0)
            assert (key.digit, key.source) == ("4", "rfc4733")
            assert await call.send_dtmf("6") == "rfc4733"
            got = await loop.run_in_executor(None, ctrl.wait_event, "CALL_DTMF_START", 5.0)
            assert got.get("param") == "6"
            await call.hangup()
            assert await call.wait_ended(5) is CallStatus.COMPLETED
        finally:
            ctrl.close()
            await ua.close()
        await asyncio.sleep(0.5)  # let baresip close its WAV files
    segment, rate = tone_heard(phone, HIGH_HZ)  # over a second of our tone
    assert rate == 16000, phone.output()[-1500:]
    assert _share_near(segment, rate, HIGH_HZ) > 0.9


async def test_baresip_offers_g722_and_we_answer_with_it() -> None:
    loop = asyncio.get_running_loop()
    with Baresip(port=32200, ctrl_port=32203, codecs=BARESIP_WIDE, srate=16000) as phone:
        ctrl = phone.control()
        ua = await UserAgent.start(bind_port=32001, user="robot", codecs=WIDE)
        try:
            ctrl.send("dial", "sip:robot@127.0.0.1:32001")
            call = await asyncio.wait_for(anext(aiter(ua.incoming())), 10)
            offer = parse_sdp(call.session.usage.invite.body)
            assert offer.audio is not None and 9 in offer.audio.formats
            assert offer.audio.codec_name(9) == ("G722", 8000)  # RFC 3551 §4.5.2's clock
            await call.answer()
            assert call.negotiated is not None and call.negotiated.pt == 9
            assert call.media.rate == 16000
            await loop.run_in_executor(None, ctrl.wait_event, "CALL_ESTABLISHED", 5.0)
            assert await call.play(beep(HIGH_HZ, 1500, level_dbm0=-6, rate=16000))
            ctrl.send("sndcode", "7")
            (key,) = await keys(call, 1, 5.0)
            assert (key.digit, key.source) == ("7", "rfc4733")
            await call.hangup()
        finally:
            ctrl.close()
            await ua.close()
        await asyncio.sleep(0.5)
    _, rate = tone_heard(phone, HIGH_HZ)
    assert rate == 16000


async def test_a_g711_only_baresip_still_gets_g711() -> None:
    """Our wideband-first offer to a peer without G.722: PCMU, 8 kHz, tone in the band."""
    loop = asyncio.get_running_loop()
    with Baresip(port=32300, ctrl_port=32303, codecs="PCMU,PCMA") as phone:
        ctrl = phone.control()
        ua = await UserAgent.start(bind_port=32002, codecs=WIDE)
        try:
            call = await ua.call("sip:bob@127.0.0.1:32300", ring_timeout=15)
            assert await call.wait_answer(15) is CallStatus.IN_PROGRESS, phone.output()[-1500:]
            answer = parse_sdp(call.session.usage.remote_sdp or b"")
            assert answer.audio is not None and 9 not in answer.audio.formats
            assert call.negotiated is not None and call.negotiated.codec == "PCMU"
            assert call.media.rate == 8000
            await loop.run_in_executor(None, ctrl.wait_event, "CALL_ESTABLISHED", 5.0)
            assert await call.play(beep(1333.0, 1500, level_dbm0=-6))
            ctrl.send("sndcode", "4")
            (key,) = await keys(call, 1, 5.0)
            assert (key.digit, key.source) == ("4", "rfc4733")
            await call.hangup()
        finally:
            ctrl.close()
            await ua.close()
        await asyncio.sleep(0.5)
    _, rate = tone_heard(phone, 1333.0)
    assert rate == 8000


async def test_g722_is_not_offered_unless_allowed() -> None:
    """G.711 stays the default: an agent without G.722 in its codecs never offers 9, and a
    baresip that prefers G.722 gets PCMU."""
    with Baresip(port=32400, ctrl_port=32403, codecs=BARESIP_WIDE, srate=16000) as phone:
        ua = await UserAgent.start(bind_port=32003)
        try:
            call = await ua.call("sip:bob@127.0.0.1:32400", ring_timeout=15)
            assert await call.wait_answer(15) is CallStatus.IN_PROGRESS, phone.output()[-1500:]
            offer = parse_sdp(call.session.usage.invite.body)
            assert offer.audio is not None and 9 not in offer.audio.formats
            assert call.negotiated is not None and call.negotiated.codec == "PCMU"
            assert call.media.rate == 8000
            await call.hangup()
        finally:
            await ua.close()


def test_autocall_serve_speaks_its_prompts_at_16khz_to_a_g722_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The product path: `autocall serve` with AUTOCALL_CODECS=g722,pcmu,pcma answers
    baresip's G.722 offer, speaks the tree's prompts from the 16 kHz TTS cache (espeak-ng
    renders at 16 kHz: its fricatives reach above 4 kHz) and walks the tree on keys."""
    monkeypatch.setenv("AUTOCALL_CODECS", "g722,pcmu,pcma")
    monkeypatch.setenv("AUTOCALL_TTS", "espeak")
    with (
        Baresip(port=32500, ctrl_port=32503, codecs=BARESIP_WIDE, srate=16000) as phone,
        serve(tmp_path, 32010),
    ):
        walk_front_desk(phone.control(), "sip:robot@127.0.0.1:32010", tmp_path, welcome=3.0)
    (rec,) = records(tmp_path)
    assert rec["digits"] == "79" and rec["path"] == ["welcome", "sales", "confirmed"], rec
    assert sorted((tmp_path / "tts").glob("*-16k.*.wav")), "no 16 kHz render in the cache"
    pcm, rate = decoded(phone)
    assert rate == 16000, phone.output()[-1500:]
    welcome = pcm[: rate * 3]
    assert np.sqrt(np.mean(welcome**2)) > 0.01  # the welcome prompt, not silence
    spec = np.abs(np.fft.rfft(welcome)) ** 2
    freqs = np.fft.rfftfreq(len(welcome), 1 / rate)
    above = float(spec[freqs > 4200].sum() / spec.sum())
    assert above > 0.005, f"only {above:.5f} of the prompt's energy above 4.2 kHz"
