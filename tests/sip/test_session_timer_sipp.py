"""Session timers (RFC 4028) against a real SIPp on 127.0.0.1: a 422 retried with the far
end's Min-SE, our refreshes (UPDATE, then re-INVITE when UPDATE is refused) before the
interval ends, our BYE when the far end stops refreshing, and the same as the called
side (serve). Intervals of a few seconds (a test-only Min-SE below RFC 4028's 90 s) keep
each test short; SIPp's exit code says it saw each message in time."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

import pytest

from autocall.sip.session_timer import Interval, TimerPolicy
from autocall.sip.transaction import Timers
from autocall.telephony.call import CallStatus, UserAgent
from tests.peers import SCENARIOS, Sipp

pytestmark = [pytest.mark.peers, pytest.mark.timeout(60)]

_ports = itertools.count(19200, 10)  # ours: 19200-19299 (SIPp, its media, our agent)
FAST = Timers(t1=0.1, t2=0.4, t4=0.5, timer_d=0.5)


async def _until(check: Callable[[], bool], timeout: float) -> float:
    """Wait until ``check()`` is true; the monotonic time it became so."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(0.02)
    return time.monotonic()


async def test_a_422_is_retried_and_we_refresh_before_the_interval_ends() -> None:
    port = next(_ports)
    peer = Sipp(SCENARIOS / "uas_timer_refresh.xml", port=port, media_port=port + 2)
    with peer:
        ua = await UserAgent.start(bind_port=port + 7, timers=FAST,
                                   session_timer=TimerPolicy(interval=1, min_se=1))
        try:
            call = await ua.call(f"sip:sipp@127.0.0.1:{port}")
            assert await call.wait_answer(10) is CallStatus.IN_PROGRESS
            answered = time.monotonic()
            usage = call.session.usage
            assert usage.invite.cseq.number == 2  # the retry after the 422
            assert usage.interval is not None and usage.interval.seconds == 4
            assert usage.interval.refresher == usage.interval_role == "uac"
            # UPDATE at 2 s (refused with 501), at once a re-INVITE; the next at 4 s.
            first = await _until(lambda: usage.refreshes >= 1, 4) - answered
            second = await _until(lambda: usage.refreshes >= 2, 4) - answered
            assert 1.8 <= first <= 3.0 and 3.8 <= second <= 5.0, (first, second)
            assert call.status is CallStatus.IN_PROGRESS
            await call.hangup()
            assert peer.wait(10) == 0, peer.errors()
            assert await call.wait_ended(5) is CallStatus.COMPLETED
            assert call.ended_by == "local"
        finally:
            await ua.close()


async def test_a_far_end_that_stops_refreshing_gets_our_bye() -> None:
    port = next(_ports)
    peer = Sipp(SCENARIOS / "uas_timer_expire.xml", port=port, media_port=port + 2)
    with peer:
        ua = await UserAgent.start(bind_port=port + 7, timers=FAST,
                                   session_timer=TimerPolicy(interval=1800, min_se=1))
        try:
            call = await ua.call(f"sip:sipp@127.0.0.1:{port}")
            assert await call.wait_answer(10) is CallStatus.IN_PROGRESS
            invite = call.session.usage.invite
            assert invite.headers.get("Session-Expires") == "1800"
            assert invite.headers.get("Min-SE") == "1"
            answered = time.monotonic()
            assert await call.wait_ended(6) is CallStatus.COMPLETED
            lasted = time.monotonic() - answered
            assert 1.8 <= lasted <= 3.0, lasted  # 3 s less min(32 s, a third)
            assert (call.ended_by, call.reason) == ("local", "session expired")
            assert peer.wait(10) == 0, peer.errors()  # the BYE said "session expired"
        finally:
            await ua.close()


async def test_served_calls_answer_422_grant_the_interval_and_end_when_refreshes_stop() -> None:
    port = next(_ports)
    ours = port + 7
    ua = await UserAgent.start(bind_port=ours, timers=FAST,
                               session_timer=TimerPolicy(interval=1800, min_se=2))
    try:
        calls = aiter(ua.incoming())
        peer = Sipp(SCENARIOS / "uac_timer.xml", port=port, media_port=port + 2,
                    remote=f"127.0.0.1:{ours}", service="robot")
        with peer:
            call = await asyncio.wait_for(anext(calls), 5)
            usage = call.session.usage
            assert usage.invite.cseq.number == 2  # the 422'd INVITE never reached us
            await call.answer()
            answered = time.monotonic()
            await _until(lambda: usage.refreshes >= 1, 3)  # SIPp's UPDATE
            assert await call.wait_ended(6) is CallStatus.COMPLETED
            lasted = time.monotonic() - answered
            assert 2.7 <= lasted <= 4.0, lasted  # refreshed at 1 s, then 3 s less 1 s
            assert call.ended_by == "local"
            assert peer.wait(10) == 0, peer.errors()
        with pytest.raises(TimeoutError):  # and no other call was offered to us
            await asyncio.wait_for(anext(calls), 0.2)
    finally:
        await ua.close()


async def test_between_our_agents_a_hold_reinvite_refreshes_too_and_calls_outlive_the_interval(
        ) -> None:
    policy = TimerPolicy(interval=6, min_se=1)
    port = next(_ports)
    a = await UserAgent.start(bind_port=port, timers=FAST, session_timer=policy)
    b = await UserAgent.start(bind_port=port + 2, timers=FAST, session_timer=policy, user="b")
    try:
        out = await a.call(f"sip:b@127.0.0.1:{port + 2}")
        inbound = await asyncio.wait_for(anext(aiter(b.incoming())), 5)
        await inbound.answer()
        assert await out.wait_answer(5) is CallStatus.IN_PROGRESS
        ours, theirs = out.session.usage, inbound.session.usage
        # b supports timers, so the caller refreshes: the same interval on both sides.
        assert ours.interval == theirs.interval == Interval(6, "uac")
        assert (ours.interval_role, theirs.interval_role) == ("uac", "uas")
        await asyncio.sleep(1.0)
        assert await out.hold() == 200  # the hold re-INVITE carries the interval
        held = time.monotonic()
        assert ours.refreshes == theirs.refreshes == 1
        # Then the caller refreshes on its own every 3 s (UPDATE: no SDP, hold stays).
        first = await _until(lambda: theirs.refreshes >= 2, 5) - held
        second = await _until(lambda: theirs.refreshes >= 3, 5) - held
        assert 2.7 <= first <= 3.6 and 5.7 <= second <= 6.6, (first, second)
        assert out.status is inbound.status is CallStatus.IN_PROGRESS  # past the 6 s
        assert out.media.on_hold and ours.refreshes == 3
        await out.hangup()
        assert await inbound.wait_ended(5) is CallStatus.COMPLETED
    finally:
        await a.close()
        await b.close()


async def test_a_malformed_session_expires_is_refused_with_400_that_says_why() -> None:
    port = next(_ports)
    ua = await UserAgent.start(bind_port=port, timers=FAST)
    loop = asyncio.get_running_loop()
    replies: asyncio.Queue[bytes] = asyncio.Queue()

    class Caller(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            replies.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Caller, local_addr=("127.0.0.1",
                                                                           port + 2))
    try:
        invite = (f"INVITE sip:robot@127.0.0.1:{port} SIP/2.0\r\n"
                  f"Via: SIP/2.0/UDP 127.0.0.1:{port + 2};branch=z9hG4bKbadse\r\n"
                  "From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:robot@127.0.0.1>\r\n"
                  "Call-ID: bad-se\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
                  f"Contact: <sip:x@127.0.0.1:{port + 2}>\r\n"
                  "Supported: timer\r\nSession-Expires: forever;refresher=me\r\n"
                  "Content-Length: 0\r\n\r\n")
        transport.sendto(invite.encode(), ("127.0.0.1", port))
        final = b""
        while not final.startswith(b"SIP/2.0 4"):
            final = await asyncio.wait_for(replies.get(), 3)
        assert final.startswith(b"SIP/2.0 400 ")
        assert b"Session-Expires" in final.split(b"\r\n\r\n")[0]  # the Warning says what
        with pytest.raises(TimeoutError):  # no call was offered to the application
            await asyncio.wait_for(anext(aiter(ua.incoming())), 0.2)
    finally:
        transport.close()
        await ua.close()


async def test_a_caller_without_timer_support_is_refreshed_by_our_reinvite() -> None:
    port = next(_ports)
    ours = port + 7
    ua = await UserAgent.start(bind_port=ours, timers=FAST,
                               session_timer=TimerPolicy(interval=1800, min_se=2))
    try:
        peer = Sipp(SCENARIOS / "uac_timer_no_support.xml", port=port, media_port=port + 2,
                    remote=f"127.0.0.1:{ours}", service="robot")
        with peer:
            call = await asyncio.wait_for(anext(aiter(ua.incoming())), 5)
            await call.answer()
            answered = time.monotonic()
            usage = call.session.usage
            assert usage.interval == Interval(3, "uas") and usage.interval_role == "uas"
            refreshed = await _until(lambda: usage.refreshes >= 1, 4) - answered
            assert 1.3 <= refreshed <= 2.3, refreshed  # half of 3 s
            assert await call.wait_ended(5) is CallStatus.COMPLETED
            assert call.ended_by == "remote"  # SIPp's BYE, not an expiry of ours
            assert peer.wait(10) == 0, peer.errors()
    finally:
        await ua.close()
