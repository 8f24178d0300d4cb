"""In-dialog requests against real peers: REFER + NOTIFY, hold/resume re-INVITE, INFO DTMF,
late offer, TCP; and between two of our own agents: codec change, spoofed requests."""

from __future__ import annotations

import asyncio
import itertools
import socket

import pytest

from autocall.sip.transaction import Timers
from autocall.telephony.call import Call, CallStatus, DigitEvent, UserAgent
from tests.peers import SCENARIOS, Sipp

pytestmark = [pytest.mark.peers, pytest.mark.timeout(60)]

_ports = itertools.count(20600, 4)
FAST = Timers(t1=0.1, t2=0.4, t4=0.5, timer_d=0.5)


def _sipp(scenario: str, **kw: object) -> tuple[Sipp, str]:
    port = next(_ports)
    peer = Sipp(SCENARIOS / scenario, port=port, media_port=port + 2, **kw)  # type: ignore[arg-type]
    return peer, f"sip:sipp@127.0.0.1:{port}"


async def test_blind_transfer_with_refer_and_notify() -> None:
    peer, target = _sipp("uas_answer_refer.xml")
    with peer:
        ua = await UserAgent.start(timers=FAST)
        try:
            call = await ua.call(target)
            assert await call.wait_answer(10) is CallStatus.IN_PROGRESS
            assert await call.transfer("sip:agent@127.0.0.1:5099", timeout=5)
            assert call.transfer_code == 200
            assert await call.wait_ended(5) is CallStatus.COMPLETED  # we hung up after it
            assert peer.wait(10) == 0, peer.errors()
        finally:
            await ua.close()


async def test_hold_and_resume_reuse_the_stream() -> None:
    peer, target = _sipp("uas_answer_reinvite.xml")
    with peer:
        ua = await UserAgent.start(timers=FAST)
        try:
            call = await ua.call(target)
            assert await call.wait_answer(10) is CallStatus.IN_PROGRESS
            await asyncio.sleep(0.2)
            ssrc = call.media._sender.ssrc
            assert await call.hold() == 200 and call.media.on_hold
            sent = call.media.stats().packets_sent
            await asyncio.sleep(0.3)
            assert call.media.stats().packets_sent == sent  # nothing sent while held
            assert await call.unhold() == 200 and not call.media.on_hold
            await asyncio.sleep(0.2)
            assert call.media.stats().packets_sent > sent and call.media._sender.ssrc == ssrc
            await call.hangup()
            assert peer.wait(10) == 0, peer.errors()
        finally:
            await ua.close()


async def test_info_dtmf_and_late_offer_to_sipp() -> None:
    peer, target = _sipp("uas_answer.xml", extra=["-aa"])
    with peer:
        ua = await UserAgent.start(timers=FAST)
        try:
            call = await ua.call(target, late_offer=True)
            assert await call.wait_answer(10) is CallStatus.IN_PROGRESS
            assert not call.session.usage.invite.body  # no offer in the INVITE
            assert call.negotiated is not None and call.negotiated.remote[1] == peer.media_port
            assert call.media.started
            assert await call.send_dtmf("12", method="info") == "info"
            await call.hangup()
            assert peer.wait(10) == 0, peer.errors()
        finally:
            await ua.close()


async def test_call_over_tcp() -> None:
    peer, target = _sipp("uas_answer_bye.xml", transport="t1")
    with peer:
        ua = await UserAgent.start(transport="tcp", timers=FAST)
        try:
            call = await ua.call(target + ";transport=tcp")
            assert await call.wait_answer(10) is CallStatus.IN_PROGRESS
            assert await call.wait_ended(10) is CallStatus.COMPLETED
            assert call.ended_by == "remote"
            assert peer.wait(10) == 0, peer.errors()
        finally:
            await ua.close()


async def _pair() -> tuple[UserAgent, UserAgent, Call, Call]:
    a = await UserAgent.start(timers=FAST)
    b = await UserAgent.start(timers=FAST, user="b")
    host, port = b.sip.advertised
    out = await a.call(f"sip:b@{host}:{port}")
    inbound = await asyncio.wait_for(anext(aiter(b.incoming())), 5)
    await inbound.answer()
    assert await out.wait_answer(5) is CallStatus.IN_PROGRESS
    return a, b, out, inbound


async def test_codec_change_and_info_between_our_agents() -> None:
    a, b, out, inbound = await _pair()
    try:
        assert out.media.payload_type == 0
        assert await out.change_codec("PCMA") == 200
        assert out.media.payload_type == 8 and inbound.media.payload_type == 8
        await out.send_dtmf("5", method="info")
        ev = await inbound.next_event(3)
        assert isinstance(ev, DigitEvent) and (ev.digit, ev.source) == ("5", "info")
        await out.send_dtmf("7")
        ev = await inbound.next_event(3)
        assert isinstance(ev, DigitEvent) and (ev.digit, ev.source) == ("7", "rfc4733")
    finally:
        await a.close()
        await b.close()


async def test_update_and_options_inside_the_dialog() -> None:
    a, b, out, inbound = await _pair()
    try:
        resp = await out.session.request("UPDATE", body=out._sdp(codecs=["PCMA"]),
                                         content_type="application/sdp")
        assert resp.status == 200 and b"PCMA" in resp.body
        assert inbound.media.payload_type == 8  # the UPDATE's offer took effect over there
        opts = await out.session.request("OPTIONS")
        assert opts.status == 200 and "REFER" in (opts.headers.get("Allow") or "")
        # Our agent declines being transferred away (603): the transfer reports failure.
        assert not await out.transfer("sip:elsewhere@127.0.0.1:5099", timeout=2)
        assert out.transfer_code == 603
        assert out.status is CallStatus.IN_PROGRESS and inbound.status is CallStatus.IN_PROGRESS
    finally:
        await a.close()
        await b.close()


def _raw(sock: socket.socket, dest: tuple[str, int], data: bytes) -> bytes | None:
    sock.sendto(data, dest)
    try:
        return sock.recv(4096)
    except TimeoutError:
        return None


async def test_spoofed_and_malformed_requests_are_refused() -> None:
    a, b, out, inbound = await _pair()
    try:
        dest = b.sip.advertised
        d = inbound.session.usage.dialog
        assert d is not None
        loop = asyncio.get_running_loop()

        def bye(from_tag: str, branch: str) -> bytes:
            return (f"BYE sip:b@{dest[0]}:{dest[1]} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.2:5999;branch=z9hG4bK{branch}\r\n"
                    f"From: <sip:autocall@127.0.0.1>;tag={from_tag}\r\n"
                    f"To: <sip:b@127.0.0.1>;tag={d.local_tag}\r\n"
                    f"Call-ID: {d.call_id}\r\nCSeq: 99 BYE\r\nContent-Length: 0\r\n\r\n"
                    ).encode()

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.2", 0))  # another host on loopback
            s.settimeout(2)
            wrong_tag = await loop.run_in_executor(None, _raw, s, dest, bye("guess", "s1"))
            assert wrong_tag is not None and wrong_tag.startswith(b"SIP/2.0 481")
            right_tag = await loop.run_in_executor(None, _raw, s, dest,
                                                   bye(d.remote_tag, "s2"))
            assert right_tag is not None and right_tag.startswith(b"SIP/2.0 403")
            bad = (b"OPTIONS sip:b@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5999;"
                   b"branch=z9hG4bKm\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:b@z>\r\n"
                   b"Call-ID: m1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 50\r\n\r\nshort")
            reply = await loop.run_in_executor(None, _raw, s, dest, bad)
            assert reply is not None and reply.startswith(b"SIP/2.0 400 body shorter")
            needs = bad.replace(b"Content-Length: 50\r\n\r\nshort",
                                b"Require: 100rel\r\nContent-Length: 0\r\n\r\n")
            needs = needs.replace(b"branch=z9hG4bKm", b"branch=z9hG4bKr")
            reply = await loop.run_in_executor(None, _raw, s, dest, needs)
            assert reply is not None and reply.startswith(b"SIP/2.0 420")
            assert b"Unsupported: 100rel" in reply
            s.settimeout(0.3)
            assert await loop.run_in_executor(None, _raw, s, dest, b"\x00garbage\xff") is None
        assert inbound.status is CallStatus.IN_PROGRESS and out.status is CallStatus.IN_PROGRESS
        await out.hangup()
        assert await inbound.wait_ended(3) is CallStatus.COMPLETED
        assert inbound.ended_by == "remote"
    finally:
        await a.close()
        await b.close()
