"""Hostile RTP into a live call (issue 12, item 1): a raw socket against a real SIPp caller.

SIPp answers our INVITE and streams μ-law audio from the address its SDP names, then
presses "1" with Debian's RFC 4733 pcap. Meanwhile an attacker on another port of the
same host sends RFC 4733 "9" (opt-out) and an in-band "9" to our RTP port. The call must
hear only SIPp's "1", count the attacker's packets as foreign, and never send the
robot's audio to the attacker.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from autocall.audio import g711
from autocall.audio.tones import beep, dtmf
from autocall.media import Digit
from autocall.media.rtp import RtpPacket
from autocall.media.telephone_event import TelephoneEvent, event_code
from tests.media.test_sipp_media import PCAPS, sipp_call

pytestmark = [pytest.mark.peers, pytest.mark.timeout(40)]

SIP_PORT = 40060  # h1's range: 40000-40999
MEDIA_PORT = 40100
ATTACKER_PORT = 40200


def attack_packets(ssrc: int = 0x0BAD) -> list[bytes]:
    """RFC 4733 "9" (start, updates, three ends) and 400 ms of in-band "9", as RTP."""
    code = event_code("9")
    packets = [
        bytes(
            RtpPacket(101, 1000 + i, 50_000, ssrc, bytes(TelephoneEvent(code, False, 10, 160 * i)),
                      marker=i == 1)
        )
        for i in range(1, 6)
    ]  # fmt: skip
    end = bytes(TelephoneEvent(code, True, 10, 960))
    packets += [bytes(RtpPacket(101, 1006 + i, 50_000, ssrc, end)) for i in range(3)]
    tone = g711.ulaw_encode(dtmf("9", on_ms=400, off_ms=100))
    packets += [
        bytes(RtpPacket(0, 2000 + i, 90_000 + 160 * i, ssrc + 1, tone[160 * i : 160 * (i + 1)]))
        for i in range(len(tone) // 160)
    ]
    return packets


async def test_foreign_rfc4733_and_inband_keys_are_dropped_and_get_no_audio(
    tmp_path: Path,
) -> None:
    stream = tmp_path / "caller.ul"
    stream.write_bytes(g711.ulaw_encode(beep(440, 2500, -20)))
    actions = f"""
  <nop><action><exec rtp_stream="{stream},1,0"/></action></nop>
  <pause milliseconds="1500"/>
  <nop><action><exec play_pcap_audio="{PCAPS}/dtmf_2833_1.pcap"/></action></nop>
  <pause milliseconds="300"/>
"""
    evil = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    evil.bind(("127.0.0.1", ATTACKER_PORT))
    evil.setblocking(False)
    digits: list[Digit] = []
    packets = attack_packets()
    try:
        async with sipp_call(tmp_path, actions, SIP_PORT, MEDIA_PORT) as media:
            prompt = asyncio.ensure_future(media.play(beep(1000, 2000, -10)))
            while media.stats().packets_received < 10:  # SIPp's stream is flowing
                await asyncio.sleep(0.02)
            for p in packets:
                evil.sendto(p, ("127.0.0.1", media.local_port))
                await asyncio.sleep(0.002)

            async for d in media.digits():  # SIPp's "1" comes after the attack
                digits.append(d)
                if d.digit == "1":
                    break
            stats = media.stats()
            prompt.cancel()
            await asyncio.sleep(0.5)  # SIPp waits for our BYE only after its last pause
        stolen = 0
        while True:
            try:
                evil.recv(2048)
                stolen += 1
            except BlockingIOError:
                break
    finally:
        evil.close()
    assert [(d.digit, d.source) for d in digits] == [("1", "rfc4733")]
    assert stats.foreign_packets == len(packets)
    assert stats.remote_addr == ("127.0.0.1", MEDIA_PORT)
    assert stolen == 0, f"the attacker received {stolen} packets of the robot's audio"
