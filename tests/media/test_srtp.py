"""SRTP in the media path: two real MediaSessions on loopback, and a raw socket that
sees what goes on the wire (and forges what comes back)."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pylibsrtp
import pytest

from autocall.audio import g711
from autocall.audio.tones import beep
from autocall.media import MediaEngine, MediaSession
from autocall.media.rtp import RtpPacket
from autocall.media.srtp import SrtpError, SrtpKeys, SrtpStream

pytestmark = pytest.mark.timeout(30)

SHA80, SHA32 = "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"
K1, K2 = bytes(range(30)), bytes(range(100, 130))


def session(key: bytes, direction: int) -> pylibsrtp.Session:
    """libsrtp used directly, as the far end would."""
    return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=direction))


INBOUND, OUTBOUND = pylibsrtp.Policy.SSRC_ANY_INBOUND, pylibsrtp.Policy.SSRC_ANY_OUTBOUND


def dominant_hz(x: np.ndarray, rate: int = 8000) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


@pytest.mark.parametrize("suite", [SHA80, SHA32])
async def test_tone_and_digits_cross_both_ways_encrypted(engine: MediaEngine,
                                                         suite: str) -> None:
    a = await MediaSession.open(engine)
    b = await MediaSession.open(engine)
    heard: list[np.ndarray] = []
    b.on_audio.append(heard.append)
    try:
        a.start(("127.0.0.1", b.local_port), 0, 101, srtp=SrtpKeys(suite, K1, K2))
        b.start(("127.0.0.1", a.local_port), 0, 101, srtp=SrtpKeys(suite, K2, K1))
        assert await a.play(beep(1000, 400, -10))
        assert await a.send_dtmf("7#") == "rfc4733"
        assert await b.send_dtmf("3") == "rfc4733"
        await asyncio.sleep(0.3)
        assert [d.digit for d in b.received_digits] == ["7", "#"]
        assert [d.digit for d in a.received_digits] == ["3"]
        pcm = np.concatenate(heard)
        loud = np.flatnonzero(np.abs(pcm) > 500)
        assert len(loud) > 0.3 * 8000 * 0.5
        assert dominant_hz(pcm[loud[0]:loud[-1]]) == pytest.approx(1000, abs=15)
        sa, sb = a.stats(), b.stats()
        assert sa.srtp_suite == suite and sb.srtp_failures == 0 and sa.srtp_failures == 0
        assert sb.packets_received > 20
    finally:
        await a.close()
        await b.close()


async def test_the_wire_carries_srtp_and_forgeries_are_dropped(engine: MediaEngine) -> None:
    """What leaves is not our G.711 but decrypts to it with the key of our a=crypto line;
    packets from the far end that do not authenticate never reach the call."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(2)
    media = await MediaSession.open(engine)
    try:
        media.start(peer.getsockname(), 0, 101, srtp=SrtpKeys(SHA80, K1, K2))
        tone = beep(1000, 200, -10)
        play = asyncio.ensure_future(media.play(tone))
        loop = asyncio.get_running_loop()
        rx = session(K1, INBOUND)
        wire: list[bytes] = []
        while not play.done() or len(wire) < 12:
            wire.append(await loop.run_in_executor(None, peer.recv, 2048))
        assert all(len(p) == 12 + 160 + 10 for p in wire)  # RTP header, PCMU, 80-bit tag
        plain = [RtpPacket.parse(rx.unprotect(p)) for p in wire]
        sent = b"".join(p.payload for p in plain)
        assert g711.ulaw_encode(tone)[:800] in sent  # decrypts to exactly our audio
        assert g711.ulaw_encode(tone)[:160] not in b"".join(p[12:] for p in wire)

        # The far end's packets: a good one, a flipped bit, one under the wrong key, a replay.
        tx, wrong = session(K2, OUTBOUND), session(K1, OUTBOUND)
        ours = peer.getsockname()
        us = ("127.0.0.1", media.local_port)
        good = tx.protect(bytes(RtpPacket(0, 1, 160, 0xBEEF, bytes(160))))
        flipped = bytearray(tx.protect(bytes(RtpPacket(0, 2, 320, 0xBEEF, bytes(160)))))
        flipped[20] ^= 1
        forged = wrong.protect(bytes(RtpPacket(0, 3, 480, 0xBEEF, bytes(160))))
        for p in (good, bytes(flipped), forged, good, bytes(RtpPacket(0, 4, 640, 0xBEEF,
                                                                        bytes(160)))):
            peer.sendto(p, us)
        await asyncio.sleep(0.2)
        stats = media.stats()
        assert stats.srtp_failures == 4  # flipped, wrong key, replayed, plain RTP
        assert stats.remote_addr == ours
        await play
    finally:
        await media.close()
        peer.close()


async def test_rekeying_on_a_new_offer(engine: MediaEngine) -> None:
    a = await MediaSession.open(engine)
    b = await MediaSession.open(engine)
    try:
        a.start(("127.0.0.1", b.local_port), 0, 101, srtp=SrtpKeys(SHA80, K1, K2))
        b.start(("127.0.0.1", a.local_port), 0, 101, srtp=SrtpKeys(SHA80, K2, K1))
        await asyncio.sleep(0.15)
        same = a._srtp
        a.update(srtp=SrtpKeys(SHA80, K1, K2))  # a re-offer with the same keys: no re-key
        assert a._srtp is same
        # b moves to new keys (a re-INVITE with a new a=crypto line): a follows; until
        # then what b sends fails a's authentication
        k3 = bytes(range(50, 80))
        b.update(srtp=SrtpKeys(SHA32, k3, K1))
        await asyncio.sleep(0.15)
        assert a.stats().srtp_failures > 0
        a.update(srtp=SrtpKeys(SHA32, K1, k3))
        before = a.stats().srtp_failures
        assert await b.send_dtmf("5") == "rfc4733"
        await asyncio.sleep(0.2)
        assert [d.digit for d in a.received_digits] == ["5"]
        assert a.stats().srtp_failures <= before + 1  # at most a packet in flight
        a.update(srtp=None)  # plain RTP from now on
        assert a.stats().srtp_suite is None
    finally:
        await a.close()
        await b.close()


def test_stream_errors_are_srtp_errors() -> None:
    s = SrtpStream(SrtpKeys(SHA80, K1, K1))
    packet = bytes(RtpPacket(0, 9, 1440, 1, bytes(160)))
    assert s.unprotect(s.protect(packet)) == packet
    with pytest.raises(SrtpError, match="SRTP packet of 10 bytes refused"):
        s.unprotect(b"\x80" * 10)
    with pytest.raises(SrtpError):
        s.unprotect(b"\x80" * 4000)
    with pytest.raises(ValueError, match="tx_key must be 30 bytes"):
        SrtpKeys(SHA80, b"x", K1)
    with pytest.raises(ValueError, match="suite 'NULL' is not one of"):
        SrtpKeys("NULL", K1, K1)


def test_a_new_far_end_key_keeps_our_sending_session() -> None:
    """Our key and SSRC stay across a transfer; a new libsrtp sending session would count
    its rollover from 0 again and, past 2^16 packets, reuse keystream. libsrtp refuses to
    protect one index twice in a session, which shows which session sends."""
    s = SrtpStream(SrtpKeys(SHA80, K1, K2))
    packet = bytes(RtpPacket(0, 5, 800, 1, bytes(160)))
    first = s.protect(packet)
    moved = s.rekeyed(SrtpKeys(SHA80, K1, bytes(range(60, 90))))
    with pytest.raises(pylibsrtp.Error):
        moved.protect(packet)  # the same session: index 5 was used
    assert moved.unprotect(session(bytes(range(60, 90)), OUTBOUND).protect(packet)) == packet
    fresh = s.rekeyed(SrtpKeys(SHA32, K2, K2))  # our key changed: a new session
    assert fresh.protect(packet) != first
