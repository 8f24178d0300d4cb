"""Bind vs advertised address, seen by a raw UDP peer on loopback."""

from __future__ import annotations

import asyncio
import socket

import pytest

from autocall.sip.message import Request, parse_message
from autocall.sip.sdp import parse_sdp
from autocall.telephony.call import UserAgent

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
