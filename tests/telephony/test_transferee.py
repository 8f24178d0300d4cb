"""Being transferred: the far end REFERs our call elsewhere (RFC 3515, we are the recipient).

Against real SIPp peers on 127.0.0.1 the referrer checks on the wire what it must see
(202, NOTIFY "100 Trying" then the final status line, our BYE); between our own agents
we check what the ``Call`` does: the policy, the media moving to the new party, a
referrer that hangs up early, and a hangup while the target still rings.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import pytest

from autocall.sip.transaction import Timers
from autocall.telephony.call import (
    Call,
    CallStatus,
    DigitEvent,
    HangupEvent,
    TransferredEvent,
    UserAgent,
)
from tests.peers import SCENARIOS, Sipp

pytestmark = [pytest.mark.peers, pytest.mark.timeout(60)]

_ports = itertools.count(31700, 10)  # 31700..31790: SIPp on p, its audio on p+2, video p+4
FAST = Timers(t1=0.1, t2=0.4, t4=0.5, timer_d=0.5)


def _sipp(scenario: str, **kw: object) -> tuple[Sipp, str]:
    port = next(_ports)
    peer = Sipp(SCENARIOS / scenario, port=port, media_port=port + 2, **kw)  # type: ignore[arg-type]
    return peer, f"sip:sipp@127.0.0.1:{port}"


async def _exited(peer: Sipp, timeout: float = 10) -> int:
    """SIPp's exit code, waited for off the event loop (our agent must keep answering)."""
    return await asyncio.to_thread(peer.wait, timeout)


async def _digit(call: Call, timeout: float = 5) -> DigitEvent:
    ev = await call.next_event(timeout)
    assert isinstance(ev, DigitEvent), ev
    return ev


# ---- against SIPp ------------------------------------------------------------------------
async def test_accepted_refer_moves_the_call_to_the_target() -> None:
    second, target = _sipp("uas_answer_rfc4733.xml")  # answers, then sends digits 1 and 5
    first, referrer = _sipp("uas_refer_us.xml", keys={"refer_to": target})
    asked: list[str] = []

    def accept(uri: str) -> bool:
        asked.append(uri)
        return uri == target

    with second, first:
        ua = await UserAgent.start(timers=FAST, accept_refer=accept)
        try:
            call = await ua.call(referrer, ring_timeout=10)
            assert await call.wait_answer(10) is CallStatus.IN_PROGRESS, (call, first.errors())
            call_id, media = call.call_id, call.media
            ev = await call.next_event(10)
            assert isinstance(ev, TransferredEvent), ev
            assert ev.target == target and ev.sip_code == 200
            assert ev.referred_by is not None and "sip:referrer@127.0.0.1" in ev.referred_by
            assert asked == [target]
            assert call.transferred_to == target and call.status is CallStatus.IN_PROGRESS
            # The referrer saw 202, NOTIFY 100 Trying, NOTIFY 200 OK (terminated) and our BYE.
            assert await _exited(first) == 0, first.errors()
            # Same Call, same RTP session, now pointed at the second SIPp, which keys in 1 5.
            assert [(d.digit, d.source) for d in (await _digit(call), await _digit(call))] == \
                [("1", "rfc4733"), ("5", "rfc4733")]
            assert call.media is media and call.call_id == call_id
            assert call.negotiated is not None
            assert call.negotiated.remote == ("127.0.0.1", second.media_port)
            assert call.status is CallStatus.IN_PROGRESS
            await call.hangup()
            assert await call.wait_ended(5) is CallStatus.COMPLETED
            assert await _exited(second) == 0, second.errors()  # the BYE went to the target
        finally:
            await ua.close()


@pytest.mark.parametrize("policy", [None, lambda uri: uri.startswith("sip:agent@10.")],
                         ids=["default", "predicate-says-no"])
async def test_refused_refer_gets_603_and_the_call_goes_on(
        policy: Callable[[str], bool] | None) -> None:
    nobody = f"sip:sipp@127.0.0.1:{next(_ports)}"  # never dialled: nothing listens there
    first, referrer = _sipp("uas_refer_us_refused.xml", keys={"refer_to": nobody})
    with first:
        ua = await UserAgent.start(timers=FAST, accept_refer=policy)
        try:
            call = await ua.call(referrer, ring_timeout=10)
            assert await call.wait_answer(10) is CallStatus.IN_PROGRESS
            # SIPp sends digit 2 only after it got the 603 it expects.
            assert (await _digit(call, 10)).digit == "2"
            assert call.status is CallStatus.IN_PROGRESS and call.transferred_to is None
            await call.hangup()
            assert await call.wait_ended(5) is CallStatus.COMPLETED
            assert await _exited(first) == 0, first.errors()
        finally:
            await ua.close()


async def test_target_busy_is_reported_and_the_original_call_goes_on() -> None:
    busy, target = _sipp("uas_reject_486.xml")
    first, referrer = _sipp("uas_refer_us_failed.xml", keys={"refer_to": target})
    with busy, first:
        ua = await UserAgent.start(timers=FAST, accept_refer=lambda uri: True)
        try:
            call = await ua.call(referrer, ring_timeout=10)
            assert await call.wait_answer(10) is CallStatus.IN_PROGRESS
            media_remote = call.negotiated.remote if call.negotiated else None
            # The referrer sends digit 3 once the final NOTIFY said 486 (it checks that).
            ev = await _digit(call, 10)
            assert ev.digit == "3" and ev.source == "rfc4733"
            assert await _exited(busy) == 0, busy.errors()  # it got its ACK
            assert call.status is CallStatus.IN_PROGRESS and call.transferred_to is None
            assert call.negotiated is not None and call.negotiated.remote == media_remote
            await call.hangup()
            assert await call.wait_ended(5) is CallStatus.COMPLETED
            assert await _exited(first) == 0, first.errors()  # and our BYE on the original
        finally:
            await ua.close()


# ---- between our own agents --------------------------------------------------------------
class Trio:
    """a calls b (answered); c is a third agent b can be transferred to."""

    def __init__(self, a: UserAgent, b: UserAgent, c: UserAgent, out: Call, inbound: Call) -> None:
        self.a, self.b, self.c, self.out, self.inbound = a, b, c, out, inbound

    @property
    def c_uri(self) -> str:
        host, port = self.c.sip.advertised
        return f"sip:c@{host}:{port}"

    async def close(self) -> None:
        for ua in (self.a, self.b, self.c):
            await ua.close()


async def _trio(accept: Callable[[str], bool] | None) -> Trio:
    a = await UserAgent.start(timers=FAST, user="a")
    b = await UserAgent.start(timers=FAST, user="b", accept_refer=accept)
    c = await UserAgent.start(timers=FAST, user="c")
    host, port = b.sip.advertised
    out = await a.call(f"sip:b@{host}:{port}")
    inbound = await asyncio.wait_for(anext(aiter(b.incoming())), 5)
    await inbound.answer()
    assert await out.wait_answer(5) is CallStatus.IN_PROGRESS
    return Trio(a, b, c, out, inbound)


async def _next_incoming(ua: UserAgent) -> Call:
    return await asyncio.wait_for(anext(aiter(ua.incoming())), 5)


async def test_blind_transfer_between_our_agents() -> None:
    asked: list[str] = []
    t = await _trio(lambda uri: asked.append(uri) is None and uri.startswith("sip:c@"))
    try:
        answering = asyncio.ensure_future(_next_incoming(t.c))
        transfer = asyncio.ensure_future(t.out.transfer(t.c_uri, timeout=5))
        at_c = await answering
        # Referred-By travels from the REFER into the INVITE (RFC 3892).
        assert "sip:a@" in (at_c.session.usage.invite.headers.get("Referred-By") or "")
        await at_c.answer()
        assert await asyncio.wait_for(transfer, 10) and t.out.transfer_code == 200
        assert asked == [t.c_uri]
        assert await t.out.wait_ended(5) is CallStatus.COMPLETED  # the referrer left
        ev = await t.inbound.next_event(5)
        assert isinstance(ev, TransferredEvent) and ev.target == t.c_uri
        await asyncio.sleep(0.3)  # both BYEs of the old dialog cross; neither ends b's call
        assert t.inbound.status is CallStatus.IN_PROGRESS
        await at_c.send_dtmf("7")
        ev = await t.inbound.next_event(5)
        assert isinstance(ev, DigitEvent) and ev.digit == "7"
        await t.inbound.hangup()
        assert await at_c.wait_ended(5) is CallStatus.COMPLETED and at_c.ended_by == "remote"
        assert t.inbound.status is CallStatus.COMPLETED
        events = [e async for e in t.inbound]
        assert isinstance(events[-1], HangupEvent) and events[-1].by == "local"
    finally:
        await t.close()


@pytest.mark.parametrize(("refer_to", "code", "words"), [
    (None, 400, "Missing Refer-To"),
    (["<sip:x@127.0.0.1>", "<sip:y@127.0.0.1>"], 400, "Exactly one"),
    (["<sip:x@127.0.0.1>, <sip:y@127.0.0.1>"], 400, "Exactly one"),
    (["<http://evil.example/dial>"], 603, "scheme http"),
    (["<sip:x@127.0.0.1?Replaces=abc%40h%3Bto-tag%3D1%3Bfrom-tag%3D2>"], 603, "Replaces"),
    (["<sip:x@127.0.0.1;method=BYE>"], 603, "method BYE"),
    (["<sip:@>"], 400, "Bad Refer-To"),
    (["<tel:+15550100>"], 603, "tel:"),  # no proxy to route it through
    (["<sip:x@127.0.0.1:9>"], 603, "Transfer not accepted"),  # the predicate says no
])
async def test_refer_we_will_not_follow_is_refused_with_a_reason(
        refer_to: list[str] | None, code: int, words: str) -> None:
    asked: list[str] = []
    t = await _trio(lambda uri: asked.append(uri) is None and uri.startswith("sip:c@"))
    try:
        extra = [("Refer-To", v) for v in refer_to or []]
        resp = await t.out.session.request("REFER", extra=extra)
        assert (resp.status, words in resp.reason) == (code, True), resp.reason
        assert asked == ([] if code == 400 or "Transfer" not in words else ["sip:x@127.0.0.1:9"])
        assert not t.c.calls  # nobody was dialled
        await t.out.send_dtmf("4")  # and the call goes on
        ev = await t.inbound.next_event(3)
        assert isinstance(ev, DigitEvent) and ev.digit == "4"
        assert t.out.status is CallStatus.IN_PROGRESS and t.inbound.status is CallStatus.IN_PROGRESS
    finally:
        await t.close()


def _sdp_version(sdp: bytes | None) -> int:
    line = next(x for x in (sdp or b"").decode().splitlines() if x.startswith("o="))
    return int(line.split()[2])


async def test_target_busy_between_our_agents_keeps_the_call_and_its_sdp() -> None:
    t = await _trio(lambda uri: True)
    try:
        before = _sdp_version(t.out.session.usage.remote_sdp)  # b's answer to a's INVITE
        answering = asyncio.ensure_future(_next_incoming(t.c))
        transfer = asyncio.ensure_future(t.out.transfer(t.c_uri, timeout=5))
        await (await answering).reject(486)
        assert not await asyncio.wait_for(transfer, 10) and t.out.transfer_code == 486
        assert t.out.status is CallStatus.IN_PROGRESS and t.inbound.status is CallStatus.IN_PROGRESS
        assert t.inbound.transferred_to is None
        # b's next offer in this dialog is one version up, whatever it offered c (RFC 3264 §8).
        assert await t.inbound.hold() == 200
        assert _sdp_version(t.out.session.usage.remote_sdp) == before + 1
        # and a second REFER may follow the failed one
        answering = asyncio.ensure_future(_next_incoming(t.c))
        transfer = asyncio.ensure_future(t.out.transfer(t.c_uri, timeout=5))
        await (await answering).answer()
        assert await asyncio.wait_for(transfer, 10) and t.out.transfer_code == 200
        ev = await t.inbound.next_event(5)
        assert isinstance(ev, TransferredEvent) and t.inbound.transferred_to == t.c_uri
    finally:
        await t.close()


@pytest.mark.parametrize("target_answers", [True, False])
async def test_referrer_hanging_up_after_202_leaves_it_to_the_target(
        target_answers: bool) -> None:
    t = await _trio(lambda uri: True)
    try:
        resp = await t.out.session.request("REFER", extra=[("Refer-To", f"<{t.c_uri}>")])
        assert resp.status == 202
        await t.out.hangup()  # many PBXes BYE right after the 202 of a blind transfer
        at_c = await _next_incoming(t.c)
        await asyncio.sleep(0.2)
        assert t.inbound.status is CallStatus.IN_PROGRESS  # the BYE waits for the transfer
        if target_answers:
            await at_c.answer()
            ev = await t.inbound.next_event(5)
            assert isinstance(ev, TransferredEvent)
            await at_c.send_dtmf("9")
            ev = await t.inbound.next_event(5)
            assert isinstance(ev, DigitEvent) and ev.digit == "9"
            assert t.inbound.status is CallStatus.IN_PROGRESS
            await at_c.hangup()
            assert await t.inbound.wait_ended(5) is CallStatus.COMPLETED
        else:
            await at_c.reject(486)
            assert await t.inbound.wait_ended(5) is CallStatus.COMPLETED
            assert t.inbound.ended_by == "remote" and t.inbound.transferred_to is None
    finally:
        await t.close()


async def test_hangup_while_the_target_rings_cancels_it() -> None:
    t = await _trio(lambda uri: True)
    try:
        resp = await t.out.session.request("REFER", extra=[("Refer-To", f"<{t.c_uri}>")])
        assert resp.status == 202
        at_c = await _next_incoming(t.c)  # ringing, never answered
        await t.inbound.hangup()
        assert await t.inbound.wait_ended(5) is CallStatus.COMPLETED
        assert await at_c.wait_ended(5) is CallStatus.CANCELED  # our INVITE was CANCELled
        assert t.inbound.transferred_to is None
    finally:
        await t.close()
