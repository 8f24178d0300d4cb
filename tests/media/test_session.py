"""Two real MediaSessions on loopback UDP: audio, DTMF both ways, barge-in, re-INVITE, latching."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from autocall.audio import g711
from autocall.audio.tones import beep
from autocall.media import Digit, MediaEngine, MediaSession
from autocall.media.rtp import RtpPacket
from autocall.media.telephone_event import TelephoneEvent
from tests.media.udp_call import session_pair

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def pair(engine: MediaEngine) -> AsyncIterator[tuple[MediaSession, MediaSession]]:
    async with session_pair(engine, payload_type=0) as both:
        yield both


def dominant_hz(x: np.ndarray, rate: int = 8000) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


async def collect(session: MediaSession, n: int, timeout: float = 5.0) -> list[Digit]:
    got: list[Digit] = []

    async def run() -> None:
        async for d in session.digits():
            got.append(d)
            if len(got) == n:
                return

    await asyncio.wait_for(run(), timeout)
    return got


async def test_tones_cross_both_ways_and_land_in_the_recording(
    pair: tuple[MediaSession, MediaSession], tmp_path: Path
) -> None:
    a, b = pair
    wav = tmp_path / "b.wav"
    b.record(wav)
    ok = await asyncio.gather(a.play(beep(1000, 400, -10)), b.play(beep(600, 400, -10)))
    assert ok == [True, True]
    await asyncio.sleep(0.2)
    assert b.stop_recording() == wav
    audio, rate = sf.read(wav, dtype="int16")
    assert rate == 8000 and audio.shape[1] == 2
    received, sent = audio[:, 0], audio[:, 1]
    loud_rx = received[np.abs(received) > 500]
    assert len(loud_rx) > 0.7 * 0.4 * 8000 * 0.5  # most of the 400 ms tone arrived
    assert dominant_hz(received) == pytest.approx(1000, abs=10)
    assert dominant_hz(sent) == pytest.approx(600, abs=10)
    # sent and received are aligned to the same ticks: the tone on the left starts after
    # ours on the right by no more than the jitter buffer delay plus a few frames
    start_rx = np.argmax(np.abs(received) > 500)
    start_tx = np.argmax(np.abs(sent) > 500)
    assert 0 <= start_rx - start_tx <= 8000 * 0.2
    st = b.stats()
    assert st.packets_received >= 20 and st.packets_lost == 0 and st.malformed == 0


async def test_rfc4733_digits_both_ways_each_reported_once(
    pair: tuple[MediaSession, MediaSession],
) -> None:
    a, b = pair
    seen_cb: list[Digit] = []
    b.on_digit.append(seen_cb.append)
    assert await a.send_dtmf("19*#A!", duration_ms=60, gap_ms=60) == "rfc4733"
    got_b = await collect(b, 6)
    assert "".join(d.digit for d in got_b) == "19*#A!"
    assert {d.source for d in got_b} == {"rfc4733"}
    assert [d.duration_ms for d in got_b] == [60.0] * 6
    assert seen_cb == got_b
    await b.send_dtmf("0D")
    assert "".join(d.digit for d in await collect(a, 2)) == "0D"
    await asyncio.sleep(0.5)  # retransmitted ends and timeouts must not add digits
    assert b.stats().dtmf_received == 6 and a.stats().dtmf_received == 2


async def test_inband_digits_both_ways(pair: tuple[MediaSession, MediaSession]) -> None:
    a, b = pair
    assert await a.send_dtmf("58#", method="inband") == "inband"
    got = await collect(b, 3)
    assert [(d.digit, d.source) for d in got] == [("5", "inband"), ("8", "inband"), ("#", "inband")]
    await b.send_dtmf("3", method="inband")
    assert [d.digit for d in await collect(a, 1)] == ["3"]
    await asyncio.sleep(0.3)
    assert b.stats().dtmf_received == 3


async def test_without_telephone_event_dtmf_falls_back_to_inband(engine: MediaEngine) -> None:
    a = await MediaSession.open(engine)
    b = await MediaSession.open(engine)
    a.start(("127.0.0.1", b.local_port), payload_type=8, dtmf_payload_type=None)
    b.start(("127.0.0.1", a.local_port), payload_type=8, dtmf_payload_type=None)
    try:
        assert await a.send_dtmf("42") == "inband"
        assert [(d.digit, d.source) for d in await collect(b, 2)] == [
            ("4", "inband"),
            ("2", "inband"),
        ]
        with pytest.raises(ValueError, match="flash"):
            await a.send_dtmf("!", method="inband")
    finally:
        await a.close()
        await b.close()


async def test_flush_stops_the_prompt_mid_play(
    pair: tuple[MediaSession, MediaSession], tmp_path: Path
) -> None:
    a, b = pair
    b.record(tmp_path / "b.wav")
    long_prompt = asyncio.ensure_future(a.play(beep(800, 3000, -10)))
    queued = asyncio.ensure_future(a.play(beep(800, 3000, -10)))
    await asyncio.sleep(0.3)
    assert a.playing
    a.flush()
    assert await asyncio.wait_for(long_prompt, 1) is False
    assert await asyncio.wait_for(queued, 1) is False
    assert not a.playing
    await asyncio.sleep(0.4)
    b.stop_recording()
    rx = sf.read(tmp_path / "b.wav", dtype="int16")[0][:, 0]
    loud = np.flatnonzero(np.abs(rx) > 500)
    assert len(loud) > 0
    assert len(rx) - loud[-1] > 8000 * 0.25  # the far end hears silence after the barge-in
    assert await a.play(beep(800, 40, -10)) is True  # the session plays on afterwards


class Sniffer(asyncio.DatagramProtocol):
    """A bare UDP peer that keeps every RTP packet it gets."""

    def __init__(self) -> None:
        self.packets: list[tuple[float, RtpPacket]] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.packets.append((asyncio.get_running_loop().time(), RtpPacket.parse(data)))


async def sniffer() -> tuple[asyncio.DatagramTransport, Sniffer]:
    loop = asyncio.get_running_loop()
    return await loop.create_datagram_endpoint(Sniffer, local_addr=("127.0.0.1", 0))


async def test_reinvite_keeps_the_stream_and_hold_stops_it(engine: MediaEngine) -> None:
    t1, s1 = await sniffer()
    t2, s2 = await sniffer()
    a = await MediaSession.open(engine)
    try:
        a.start(t1.get_extra_info("sockname"), payload_type=0, dtmf_payload_type=101)
        await asyncio.sleep(0.2)
        a.update(remote_addr=t2.get_extra_info("sockname"), payload_type=8)
        await asyncio.sleep(0.2)
        a.update(hold=True)
        held = len(s2.packets)
        await asyncio.sleep(0.2)
        assert len(s2.packets) - held <= 1
        a.update(hold=False)
        await asyncio.sleep(0.1)
    finally:
        await a.close()
        t1.close()
        t2.close()
    first, second = [p for _, p in s1.packets], [p for _, p in s2.packets]
    assert len(first) >= 5 and len(second) >= 10
    assert {p.payload_type for p in first} == {0} and {p.payload_type for p in second} == {8}
    assert {p.ssrc for p in first} == {p.ssrc for p in second}
    seqs = [p.sequence_number for p in first + second]
    assert all((b - a) % 65536 == 1 for a, b in zip(seqs, seqs[1:], strict=False))
    assert first[0].marker and not any(p.marker for p in first[1:])
    assert set(second[0].payload) == {0xD5}  # A-law comfort silence
    # after the hold the timestamp jumped by the time on hold, and a marker starts the spurt
    resumed = next(i for i, p in enumerate(second) if p.marker)
    gap = (second[resumed].timestamp - second[resumed - 1].timestamp) % 2**32
    assert gap >= 0.15 * 8000


async def test_symmetric_rtp_latches_to_the_real_source_and_drops_strangers(
    engine: MediaEngine,
) -> None:
    a = await MediaSession.open(engine)
    b = await MediaSession.open(engine)
    decoy_t, decoy = await sniffer()
    try:
        # b was told (by SDP) a wrong address for a; a's packets teach b the right one
        a.start(("127.0.0.1", b.local_port), 0, 101)
        b.start(decoy_t.get_extra_info("sockname"), 0, 101)
        await asyncio.sleep(0.2)
        assert b.remote_addr == ("127.0.0.1", a.local_port)
        decoy_count = len(decoy.packets)
        await b.send_dtmf("6")
        assert [d.digit for d in await collect(a, 1)] == ["6"]
        assert len(decoy.packets) == decoy_count
        # a stranger's injected digit is ignored once latched
        evil = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        pkt = RtpPacket(101, 1, 1234, 99, bytes(TelephoneEvent(1, True, 10, 800)))
        for _ in range(3):
            evil.sendto(bytes(pkt), ("127.0.0.1", b.local_port))
        evil.sendto(b"\x00garbage", ("127.0.0.1", b.local_port))
        evil.close()
        await asyncio.sleep(0.5)
        assert b.stats().dtmf_received == 0
        assert b.stats().malformed == 1
    finally:
        await a.close()
        await b.close()
        decoy_t.close()


async def test_the_sdp_address_takes_the_latch_back_from_the_old_party(
    engine: MediaEngine,
) -> None:
    old = await MediaSession.open(engine)
    new = await MediaSession.open(engine)
    us = await MediaSession.open(engine)
    try:
        old.start(("127.0.0.1", us.local_port), 0, 101)
        us.start(("127.0.0.1", old.local_port), 0, 101)
        await asyncio.sleep(0.2)
        assert us.remote_addr == ("127.0.0.1", old.local_port)
        # A transfer points us at the new party while the old one keeps sending for a
        # while: its packets re-open nothing once the new party's have arrived.
        us.update(remote_addr=("127.0.0.1", new.local_port))
        await asyncio.sleep(0.05)
        new.start(("127.0.0.1", us.local_port), 0, 101)
        await asyncio.sleep(0.3)
        assert us.remote_addr == ("127.0.0.1", new.local_port)
        await old.send_dtmf("7")
        await new.send_dtmf("4")
        assert [d.digit for d in await collect(us, 1)] == ["4"]
        await asyncio.sleep(0.3)
        assert us.stats().dtmf_received == 1
    finally:
        for s in (old, new, us):
            await s.close()


async def test_close_ends_waiters_and_many_sessions_share_one_timer(engine: MediaEngine) -> None:
    baseline_tasks = len(asyncio.all_tasks())
    sink_t, sink = await sniffer()
    sessions = [await MediaSession.open(engine) for _ in range(40)]
    for s in sessions:
        s.start(sink_t.get_extra_info("sockname"), 0, 101)
    assert engine.streams == 40
    assert len(asyncio.all_tasks()) == baseline_tasks  # no task or thread per call
    await asyncio.sleep(0.5)
    ssrcs = {p.ssrc for _, p in sink.packets}
    assert len(ssrcs) == 40
    per_stream = len(sink.packets) / 40
    assert 15 <= per_stream <= 35  # ~25 frames in 0.5 s
    s0 = sessions[0]
    playing = asyncio.ensure_future(s0.play(np.zeros(80000, np.int16)))
    digits = asyncio.ensure_future(collect(s0, 1))
    await asyncio.sleep(0.05)
    for s in sessions:
        await s.close()
    assert await playing is False
    assert await asyncio.wait_for(digits, 1) == []  # digits() ended with the session
    assert engine.streams == 0
    sink_t.close()


async def test_hold_pauses_prompt_and_dtmf_until_unhold(
    pair: tuple[MediaSession, MediaSession],
) -> None:
    a, b = pair
    a.update(hold=True)
    prompt = asyncio.ensure_future(a.play(beep(700, 100, -10)))
    keys = asyncio.ensure_future(a.send_dtmf("4"))
    await asyncio.sleep(0.3)
    assert not prompt.done() and not keys.done()
    sent_on_hold = a.stats().packets_sent
    await asyncio.sleep(0.1)
    assert a.stats().packets_sent == sent_on_hold
    a.update(hold=False)
    assert await asyncio.wait_for(prompt, 2) is True
    assert await asyncio.wait_for(keys, 2) == "rfc4733"
    assert [d.digit for d in await collect(b, 1)] == ["4"]


async def test_peer_codec_events_on_own_ssrc_and_on_audio(
    engine: MediaEngine, tmp_path: Path
) -> None:
    """A peer that sends A-law though we offered μ-law, with events on a second SSRC."""
    b = await MediaSession.open(engine)
    frames: list[np.ndarray] = []
    b.on_audio.append(frames.append)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    try:
        b.start(peer.getsockname(), payload_type=0, dtmf_payload_type=101)
        b.record(tmp_path / "b.wav")
        tone = g711.alaw_encode(beep(1200, 200, -10))
        ev = bytes(TelephoneEvent(3, True, 10, 480))
        for i in range(10):
            audio = RtpPacket(8, 100 + i, 8000 + 160 * i, 0xA, tone[160 * i : 160 * (i + 1)])
            peer.sendto(bytes(audio), ("127.0.0.1", b.local_port))
            if i == 4:
                event = RtpPacket(101, 7, 8000 + 160 * i, 0xB, ev, marker=True)
                peer.sendto(bytes(event), ("127.0.0.1", b.local_port))
        got = await collect(b, 1)
        await asyncio.sleep(0.4)
        b.stop_recording()
    finally:
        await b.close()
        peer.close()
    assert [(d.digit, d.source) for d in got] == [("3", "rfc4733")]
    rx = sf.read(tmp_path / "b.wav", dtype="int16")[0][:, 0]
    blocks = rx[: len(rx) // 160 * 160].reshape(-1, 160).astype(float)
    loud = np.sqrt((blocks**2).mean(axis=1)) > 1000
    assert loud.sum() == 10  # all ten A-law frames, none lost to the events' SSRC
    assert dominant_hz(rx) == pytest.approx(1200, abs=10)
    assert sum(int(np.abs(f).max() > 1000) for f in frames) == 10


async def test_inband_detection_can_be_switched_off_and_on(
    pair: tuple[MediaSession, MediaSession],
) -> None:
    a, b = pair
    b.inband_detection = False
    assert not b.inband_detection
    await a.send_dtmf("7", method="inband")
    await asyncio.sleep(0.5)
    assert b.stats().dtmf_received == 0
    b.inband_detection = True
    await a.send_dtmf("8", method="inband")
    assert [(d.digit, d.source) for d in await collect(b, 1)] == [("8", "inband")]


async def test_rfc4733_on_the_wire(engine: MediaEngine) -> None:
    t, sniff = await sniffer()
    a = await MediaSession.open(engine)
    try:
        a.start(t.get_extra_info("sockname"), payload_type=0, dtmf_payload_type=110)
        await asyncio.sleep(0.1)
        await a.send_dtmf("5", duration_ms=100, gap_ms=60)
        await asyncio.sleep(0.1)
    finally:
        await a.close()
        t.close()
    pkts = [p for _, p in sniff.packets]
    events = [p for p in pkts if p.payload_type == 110]
    parsed = [TelephoneEvent.parse(p.payload) for p in events]
    assert [p.marker for p in events] == [True] + [False] * 6
    assert len({p.timestamp for p in events}) == 1
    assert [e.end for e in parsed].count(True) == 3
    assert [e.duration for e in parsed] == [160, 320, 480, 640, 800, 800, 800]
    # the event's timestamp is the media clock's at its start; audio resumes after it
    first = pkts.index(events[0])
    assert events[0].timestamp == (pkts[first - 1].timestamp + 160) % 2**32
    after = pkts[pkts.index(events[-1]) + 1]
    assert after.payload_type == 0 and after.timestamp == (events[0].timestamp + 7 * 160) % 2**32
    assert all(
        (q.sequence_number - p.sequence_number) % 65536 == 1
        for p, q in zip(pkts, pkts[1:], strict=False)
    )


async def test_a_flood_on_one_port_is_bounded_and_pacing_holds(engine: MediaEngine) -> None:
    sink_t, sink = await sniffer()
    a = await MediaSession.open(engine)
    b = await MediaSession.open(engine)
    evil = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    evil.setblocking(False)
    try:
        a.start(sink_t.get_extra_info("sockname"), 0, 101)
        b.start(("127.0.0.1", a.local_port), 0, 101)
        await asyncio.sleep(0.2)  # a has latched to b
        sent0, wakeups0 = a.stats().packets_sent, engine.wakeups
        loop = asyncio.get_running_loop()
        end = loop.time() + 1.0
        flood = 0
        junk = bytes(RtpPacket(0, 1, 1, 99, bytes(160)))
        while loop.time() < end:  # as fast as this loop can send, to a's RTP port
            for _ in range(200):
                try:
                    evil.sendto(junk, ("127.0.0.1", a.local_port))
                    flood += 1
                except BlockingIOError:
                    pass
            await asyncio.sleep(0)
        sent = a.stats().packets_sent - sent0
        wakeups = engine.wakeups - wakeups0
        assert flood > 10_000
        assert 40 <= sent <= 60  # still 50 packets a second
        # the stranger's packets are read at most max_reads per wake-up, then dropped
        assert a._foreign <= engine.max_reads * wakeups
        assert a.remote_addr == ("127.0.0.1", b.local_port)
        assert engine.errors == 0
    finally:
        evil.close()
        await a.close()
        await b.close()
        sink_t.close()
