"""Hostile in-dialog requests against a real SIPp callee (issue 12 item 2).

A re-INVITE from the caller's IP but another port, with the right Call-ID and tags, must
not move the dialog's remote target: it is refused with 403 and our BYE still reaches
the real far end.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from autocall.sip.transaction import Timers
from autocall.telephony.call import CallStatus, UserAgent
from tests.peers import SCENARIOS, Sipp

pytestmark = [pytest.mark.peers, pytest.mark.timeout(60)]

FAST = Timers(t1=0.1, t2=0.4, t4=0.5, timer_d=0.5)
SIPP_PORT = 42010  # h3's range: 42000-42999
ATTACKER_PORT = 42020


def _exchange(sock: socket.socket, dest: tuple[str, int], data: bytes) -> bytes | None:
    sock.sendto(data, dest)
    try:
        while True:
            reply = sock.recv(65535)
            if not reply.startswith(b"SIP/2.0 1"):  # skip 100 Trying
                return reply
    except TimeoutError:
        return None


def _drain(sock: socket.socket) -> list[bytes]:
    got: list[bytes] = []
    for _ in range(50):  # bounded: Timer G retransmits the 403 a few times at most
        try:
            got.append(sock.recv(65535))
        except TimeoutError:
            break
    return got


async def test_reinvite_from_another_port_cannot_steal_the_dialog() -> None:
    peer = Sipp(SCENARIOS / "uas_answer.xml", port=SIPP_PORT, media_port=SIPP_PORT + 2)
    with peer:
        ua = await UserAgent.start(timers=FAST)
        try:
            call = await ua.call(f"sip:sipp@127.0.0.1:{SIPP_PORT}")
            assert await call.wait_answer(10) is CallStatus.IN_PROGRESS
            d = call.session.usage.dialog
            assert d is not None
            dest = ua.sip.advertised
            reinvite = (
                f"INVITE sip:autocall@{dest[0]}:{dest[1]} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{ATTACKER_PORT};branch=z9hG4bKsteal1\r\n"
                f"From: <sip:sipp@127.0.0.1>;tag={d.remote_tag}\r\n"
                f"To: <sip:autocall@127.0.0.1>;tag={d.local_tag}\r\n"
                f"Call-ID: {d.call_id}\r\nCSeq: 7 INVITE\r\n"
                f"Contact: <sip:evil@127.0.0.1:{ATTACKER_PORT}>\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode()
            loop = asyncio.get_running_loop()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", ATTACKER_PORT))  # the caller's IP, another port
                s.settimeout(2)
                reply = await loop.run_in_executor(None, _exchange, s, dest, reinvite)
                assert reply is not None and reply.startswith(b"SIP/2.0 403"), reply
                assert d.remote_target.port == SIPP_PORT
                await call.hangup()
                assert await call.wait_ended(5) is CallStatus.COMPLETED
                s.settimeout(0.5)  # the attacker sees only its 403 (retransmitted): no BYE
                got = await loop.run_in_executor(None, _drain, s)
                assert not [m for m in got if not m.startswith(b"SIP/2.0 403")], got
            assert peer.wait(10) == 0, peer.errors()  # SIPp got our BYE and answered it
        finally:
            await ua.close()


async def test_reinvite_with_a_broken_sdp_gets_400_and_the_call_goes_on() -> None:
    a = await UserAgent.start(timers=FAST)
    b = await UserAgent.start(timers=FAST, user="b")
    try:
        host, port = b.sip.advertised
        out = await a.call(f"sip:b@{host}:{port}")
        inbound = await asyncio.wait_for(anext(aiter(b.incoming())), 5)
        await inbound.answer()
        assert await out.wait_answer(5) is CallStatus.IN_PROGRESS
        nul = out._sdp().replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 127.0.0\x00.1")
        resp = await out.session.request("INVITE", body=nul, content_type="application/sdp")
        assert resp.status == 400 and (resp.headers.get("Warning") or "").startswith("399 ")
        assert inbound.status is CallStatus.IN_PROGRESS
        assert inbound.media.remote_addr is not None and "\x00" not in inbound.media.remote_addr[0]
        await out.hangup()
        assert await inbound.wait_ended(3) is CallStatus.COMPLETED
    finally:
        await a.close()
        await b.close()
