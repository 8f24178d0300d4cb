"""Bind vs advertised address, seen by a raw UDP peer on loopback."""

from __future__ import annotations

import asyncio
import socket

import pytest

from autocall.sip.message import Request, parse_message
from autocall.sip.sdp import parse_sdp
from autocall.sip.transaction import Timers
from autocall.telephony.call import CallStatus, UserAgent

pytestmark = pytest.mark.timeout(30)


async def test_via_contact_and_sdp_carry_the_advertised_address() -> None:
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setblocking(False)
    loop = asyncio.get_running_loop()
    ua = await UserAgent.start(bind_host="127.0.0.1", advertise_host="203.0.113.7",
                               advertise_port=5080)
    try:
        assert ua.sip.transport is not None and ua.sip.transport.local[0] == "127.0.0.1"
        call = await ua.call(f"sip:bob@127.0.0.1:{peer.getsockname()[1]}", ring_timeout=5)
        data = await asyncio.wait_for(loop.sock_recv(peer, 4096), 5)
        invite = parse_message(data)
        assert isinstance(invite, Request) and invite.method == "INVITE"
        via = invite.top_via
        assert (via.host, via.port) == ("203.0.113.7", 5080)
        contact = invite.contact
        assert contact is not None and contact.uri.host == "203.0.113.7"
        assert contact.uri.port == 5080
        assert parse_sdp(invite.body).connection[0] == "203.0.113.7"
        assert len(via.branch or "") >= 7 + 16 and len(invite.from_.tag or "") >= 16
        await call.cancel()
    finally:
        await ua.close()
        peer.close()


async def test_wildcard_bind_never_advertises_the_wildcard() -> None:
    ua = await UserAgent.start(bind_host="0.0.0.0")
    try:
        host, port = ua.sip.advertised
        assert host not in ("0.0.0.0", "") and port == ua.sip.transport.local[1]  # type: ignore[union-attr]
        assert "0.0.0.0" not in ua.sip.via() and "0.0.0.0" not in ua.sip.contact()
    finally:
        await ua.close()


def _invite(peer_port: int, ua_port: int) -> bytes:
    sdp = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           b"m=audio 9 RTP/AVP 0\r\n")
    return (f"INVITE sip:robot@127.0.0.1:{ua_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{peer_port};branch=z9hG4bKraw1\r\n"
            f"From: <sip:raw@127.0.0.1>;tag=raw1\r\nTo: <sip:robot@127.0.0.1>\r\n"
            f"Call-ID: raw-call\r\nCSeq: 1 INVITE\r\nContact: <sip:raw@127.0.0.1:{peer_port}>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n").encode() + sdp


async def test_our_200_is_retransmitted_until_ack_then_bye_without_one() -> None:
    loop = asyncio.get_running_loop()
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setblocking(False)
    ua = await UserAgent.start(timers=Timers(t1=0.05, t2=0.2, t4=0.2, timer_d=0.2))
    try:
        dest = ua.sip.advertised
        await loop.sock_sendto(peer, _invite(peer.getsockname()[1], dest[1]), dest)
        call = await asyncio.wait_for(anext(aiter(ua.incoming())), 5)
        await call.answer()
        seen: list[bytes] = []
        deadline = loop.time() + 5
        while loop.time() < deadline:
            data = await asyncio.wait_for(loop.sock_recv(peer, 4096), 5)
            first = data.split(b"\r\n", 1)[0]
            seen.append(first)
            if first.startswith(b"BYE"):
                break
        oks = [f for f in seen if f.startswith(b"SIP/2.0 200")]
        assert len(oks) >= 4  # T1, 2T1, 4T1, T2… (§13.3.1.4)
        assert seen[-1].startswith(b"BYE")  # 64*T1 without ACK: the session ends
        assert await call.wait_ended(2) is CallStatus.COMPLETED and call.ended_by == "local"
    finally:
        await ua.close()
        peer.close()
