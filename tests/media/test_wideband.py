"""Two real MediaSessions on loopback UDP speaking G.722 (ITU-T G.722, RTP payload type 9):
16 kHz audio end to end, the 8000 Hz RTP clock of RFC 3551 §4.5.2, in-band DTMF through
the 8 kHz signal path, and a re-INVITE to G.711 in the middle of a wideband call."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from autocall.audio import g722
from autocall.audio.tones import beep, dtmf
from autocall.media import Digit, MediaEngine, MediaSession
from autocall.media.rtp import RtpPacket
from tests.media.udp_call import session_pair

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def pair(engine: MediaEngine) -> AsyncIterator[tuple[MediaSession, MediaSession]]:
    async with session_pair(engine, payload_type=9) as both:
        yield both


def level_at(x: np.ndarray, rate: int, hz: float) -> float:
    """Share of the signal's energy within 100 Hz of ``hz``."""
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spec[np.abs(freqs - hz) < 100].sum() / max(spec.sum(), 1e-9))


def dominant_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spec))])


async def test_a_5khz_tone_crosses_at_16khz_and_is_recorded_at_16khz(
    pair: tuple[MediaSession, MediaSession], tmp_path: Path
) -> None:
    """5 kHz is above the 4 kHz Nyquist limit of G.711: it can only cross as wideband."""
    a, b = pair
    assert a.rate == b.rate == 16000 and a.frame_samples == 320
    b.record(tmp_path / "b.wav")
    a.record(tmp_path / "a.wav")
    assert await a.play(beep(5000.0, 600, level_dbm0=-10, rate=16000))
    await asyncio.sleep(0.3)
    path, ours = b.stop_recording(), a.stop_recording()
    assert path is not None and ours is not None
    pcm, rate = sf.read(str(path), dtype="int16")
    assert rate == 16000
    heard = pcm[:, 0]
    loud = np.flatnonzero(np.abs(heard) > 1000)
    assert len(loud) > 0.5 * 16000, "less than half a second of the tone arrived"
    assert abs(dominant_hz(heard[loud[0] : loud[-1]], rate) - 5000) < 20
    assert level_at(heard[loud[0] : loud[-1]], rate, 5000) > 0.95
    sent, rate = sf.read(str(ours), dtype="int16")
    assert rate == 16000  # the sender's recording: its right channel is what it sent
    ours_loud = np.flatnonzero(np.abs(sent[:, 1]) > 1000)
    assert abs(dominant_hz(sent[ours_loud[0] : ours_loud[-1], 1], rate) - 5000) < 20


async def test_wideband_rtp_runs_on_the_8000hz_clock(engine: MediaEngine) -> None:
    """RFC 3551 §4.5.2: G.722 timestamps step 160 per 20 ms frame of 320 samples."""
    media = await MediaSession.open(engine)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setblocking(False)
    loop = asyncio.get_running_loop()
    media.start(("127.0.0.1", peer.getsockname()[1]), payload_type=9)
    try:
        packets = [
            RtpPacket.parse(await asyncio.wait_for(loop.sock_recv(peer, 2048), 2)) for _ in range(5)
        ]
    finally:
        await media.close()
        peer.close()
    assert {p.payload_type for p in packets} == {9}
    assert {len(p.payload) for p in packets} == {160}  # 64 kbit/s: 160 bytes per 20 ms
    steps = {
        (q.timestamp - p.timestamp) % 2**32 for p, q in zip(packets, packets[1:], strict=False)
    }
    assert steps == {160}


async def test_inband_dtmf_is_heard_on_a_wideband_call(
    pair: tuple[MediaSession, MediaSession],
) -> None:
    """Tones sent in-band at 16 kHz reach the (8 kHz) detector through the decimator."""
    a, b = pair
    got: list[Digit] = []
    b.on_digit.append(got.append)
    assert await a.send_dtmf("159#", method="inband") == "inband"
    for _ in range(40):
        if len(got) == 4:
            break
        await asyncio.sleep(0.05)
    assert [(d.digit, d.source) for d in got] == [(c, "inband") for c in "159#"]


async def test_rfc4733_digits_on_a_wideband_call(pair: tuple[MediaSession, MediaSession]) -> None:
    a, b = pair
    got: list[Digit] = []
    b.on_digit.append(got.append)
    assert await a.send_dtmf("42") == "rfc4733"
    for _ in range(40):
        if len(got) == 2:
            break
        await asyncio.sleep(0.05)
    assert [(d.digit, d.source) for d in got] == [("4", "rfc4733"), ("2", "rfc4733")]


async def test_reinvite_to_g711_keeps_the_call_at_16khz(
    pair: tuple[MediaSession, MediaSession], tmp_path: Path
) -> None:
    """A re-INVITE to PCMU keeps the call's rate: 1 kHz still arrives, 5 kHz cannot."""
    a, b = pair
    a.update(payload_type=0)
    b.update(payload_type=0)
    assert a.rate == b.rate == 16000
    b.record(tmp_path / "b.wav")
    await a.play(beep(1000.0, 400, level_dbm0=-10, rate=16000))
    await a.play(beep(5000.0, 400, level_dbm0=-10, rate=16000))
    await asyncio.sleep(0.3)
    path = b.stop_recording()
    assert path is not None
    pcm, rate = sf.read(str(path), dtype="int16")
    heard = pcm[:, 0].astype(np.float64)
    assert rate == 16000
    loud = np.flatnonzero(np.abs(heard) > 1000)
    assert len(loud) > 0.3 * 16000
    assert abs(dominant_hz(heard[loud[0] : loud[-1]], rate) - 1000) < 20
    assert level_at(heard, rate, 5000) < 0.01  # G.711 cannot carry it


async def test_a_narrowband_call_stays_8khz(engine: MediaEngine) -> None:
    media = await MediaSession.open(engine)
    try:
        media.start(("127.0.0.1", 9), payload_type=8)
        assert media.rate == 8000 and media.frame_samples == 160
    finally:
        await media.close()


def test_decimator_keeps_dtmf_and_halves_the_length() -> None:
    x = dtmf("5", on_ms=200, off_ms=0, rate=16000)
    d = g722.Decimator()
    y = np.concatenate([d.process(x[i : i + 320]) for i in range(0, len(x), 320)])
    assert len(y) == len(x) // 2
    ref = dtmf("5", on_ms=200, off_ms=0, rate=8000).astype(np.float64)
    lag = (len(g722._H) - 1) // 4  # the filter delay: 24 samples at 16 kHz, 12 at 8 kHz
    err = y[lag + 50 : 1500].astype(np.float64) - ref[50 : 1500 - lag]
    assert np.sqrt(np.mean(err**2)) < 0.01 * np.sqrt(np.mean(ref**2))  # within 1 %


def test_g722_codec_round_trip() -> None:
    tone = beep(5000.0, 200, level_dbm0=-10, rate=16000)
    enc, dec = g722.Encoder(), g722.Decoder()
    out = np.concatenate(
        [dec.decode(enc.encode(tone[i : i + 320])) for i in range(0, len(tone), 320)]
    )
    assert out.dtype == np.int16 and len(out) == len(tone)
    assert abs(dominant_hz(out[400:], 16000) - 5000) < 20


async def test_a_recording_started_before_a_wideband_start_is_16khz(
    engine: MediaEngine, tmp_path: Path
) -> None:
    media = await MediaSession.open(engine)
    media.record(tmp_path / "early.wav")
    media.start(("127.0.0.1", 9), payload_type=9)
    await asyncio.sleep(0.2)
    await media.close()
    info = sf.info(str(tmp_path / "early.wav"))
    assert info.samplerate == 16000 and info.frames >= 320


async def test_odd_g722_and_g711_packets_on_a_wideband_call(engine: MediaEngine) -> None:
    """Empty, one-byte, oversized and PCMU packets into a G.722 session: decoded at the
    call's rate or ignored, never an exception in the pacing tick; the call goes on."""
    media = await MediaSession.open(engine)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    media.start(("127.0.0.1", peer.getsockname()[1]), payload_type=9, dtmf_payload_type=101)
    got: list[np.ndarray] = []
    media.on_audio.append(got.append)
    enc = g722.Encoder()
    tone = beep(5000.0, 400, level_dbm0=-10, rate=16000)
    payloads = [(9, b""), (9, b"\x00"), (9, bytes(1400)), (0, bytes(160)), (0, b"\xff" * 7)]
    payloads += [(9, enc.encode(tone[i : i + 320])) for i in range(0, len(tone), 320)]
    try:
        for n, (pt, payload) in enumerate(payloads):
            peer.sendto(
                bytes(RtpPacket(pt, 10 + n, 1000 + 160 * n, 0xABC, payload)),
                ("127.0.0.1", media.local_port),
            )
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        assert media.started and not media.closed
        assert all(len(f) == 320 for f in got)  # playout stays 20 ms frames at 16 kHz
        heard = np.concatenate(got)
        assert np.abs(heard).max() > 1000  # the real G.722 tone after the junk came through
    finally:
        await media.close()
        peer.close()


def test_the_decimator_is_one_filter_across_packet_sizes() -> None:
    """Packets of 20, 30 and 10 ms in turn give what one long convolution gives."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(16000) * 5000).clip(-32768, 32767).astype(np.int16)
    d, out, i = g722.Decimator(), [], 0
    for n in [320, 480, 160] * 50:
        if i + n > len(x):
            break
        out.append(d.process(x[i : i + n]))
        i += n
    got = np.concatenate(out)
    ref = np.convolve(np.concatenate((np.zeros(len(g722._H) - 1), x[:i])), g722._H, "valid")
    want = np.clip(np.rint(ref[::2]), -32768, 32767).astype(np.int16)
    assert np.array_equal(got, want)
