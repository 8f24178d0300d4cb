"""Reliable provisional responses (RFC 3262) and UPDATE before the answer (RFC 3311) in
the INVITE usage, driven by a fake clock, no sockets."""

from __future__ import annotations

from autocall.sip.dialog import response_to
from autocall.sip.invite import (
    DialogUp,
    Emit,
    Failed,
    InviteAction,
    InviteState,
    InviteUsage,
    Progress,
    Respond,
    StartRequest,
    Transmit,
)
from autocall.sip.message import Headers, Request, Response
from tests.sip.test_invite import SDP_A, SDP_B, SOURCE, Agent, T, _answer, _invite, _run, _uac


def _reliable(usage: InviteUsage, rseq: str, status: int = 183) -> Response:
    resp = _answer(usage, status)
    resp.headers.add("Require", "100rel")
    resp.headers.add("RSeq", rseq)
    return resp


def _pracks(actions: list[InviteAction]) -> list[Request]:
    return [a.request for a in actions
            if isinstance(a, StartRequest) and a.request.method == "PRACK"]


def test_each_reliable_1xx_is_pracked_once_and_in_order() -> None:
    usage = _uac()
    first = usage.receive(_reliable(usage, "7"), 0.1)
    [prack] = _pracks(first)
    assert prack.headers.get("RAck") == "7 1 INVITE"
    assert prack.to.tag == "b1" and prack.cseq.number == 2
    assert str(prack.uri) == "sip:bob@10.0.0.21:5060"  # the 183's Contact
    assert any(isinstance(a, Emit) and isinstance(a.event, Progress) for a in first)
    assert usage.remote_sdp == SDP_B  # the answer came in the 183
    assert usage.receive(_reliable(usage, "7"), 0.2) == []  # a retransmission
    assert usage.receive(_reliable(usage, "9"), 0.3) == []  # out of order: not processed
    [second] = _pracks(usage.receive(_reliable(usage, "8", 180), 0.4))
    assert second.headers.get("RAck") == "8 1 INVITE" and second.cseq.number == 3
    assert usage.pracks == 2
    usage.receive(_answer(usage, 200, body=b""), 1.0)
    assert usage.state is InviteState.CONFIRMED and usage.dialog is not None
    assert usage.dialog.local_seq == 3  # the BYE will be 4: the early dialog goes on
    assert usage.remote_sdp == SDP_B


def test_a_reliable_1xx_without_rseq_is_taken_as_unreliable() -> None:
    usage = _uac()
    resp = _answer(usage, 183)
    resp.headers.add("Require", "100rel")
    actions = usage.receive(resp, 0.1)
    assert _pracks(actions) == [] and usage.state is InviteState.EARLY


def _uas_reliable() -> tuple[InviteUsage, Response]:
    invite = _invite(outgoing=False)
    invite.headers.add("Require", "100rel")
    usage = InviteUsage(Agent(), "uas", invite, peer=SOURCE, timers=T)
    assert usage.reliable_1xx
    early, ring = usage.ring(180, 0.0)
    assert isinstance(early, DialogUp) and isinstance(ring, Respond)
    assert ring.response.headers.get("Require") == "100rel"
    assert (ring.response.headers.get("RSeq") or "").isdigit()
    return usage, ring.response


def _prack(usage: InviteUsage, rack: str) -> Request:
    assert usage.dialog is not None
    h = Headers([("Via", "SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bKp"),
                 ("From", "<sip:caller@y>;tag=theirs"),
                 ("To", f"<sip:robot@x>;tag={usage.local_tag}"),
                 ("Call-ID", "c1"), ("CSeq", "2 PRACK"), ("RAck", rack)])
    return Request("PRACK", "sip:robot@10.0.0.1:5060", h)


def test_our_reliable_180_comes_again_until_its_prack() -> None:
    usage, ringing = _uas_reliable()
    resent = [(t, a) for t, a in _run(usage, 1.6) if isinstance(a, Respond)]
    assert [t for t, _ in resent] == [0.5, 1.5]  # T1, then 2*T1 later (RFC 3262 §3)
    assert all(a.response is ringing for _, a in resent)
    assert usage.dialog is not None
    rseq = ringing.headers.get("RSeq") or ""
    other = _prack(usage, f"{int(rseq) + 1} 1 INVITE")  # names no 1xx of ours
    wrong = usage.on_request(usage.dialog.accept(other), SOURCE, 1.7)
    assert [a.response.status for a in wrong if isinstance(a, Respond)] == [481]
    ok = usage.on_request(usage.dialog.accept(_prack(usage, f"{rseq} 1 INVITE")), SOURCE, 1.8)
    assert [a.response.status for a in ok if isinstance(a, Respond)] == [200]
    assert usage.pracks == 1 and usage.deadline is None  # no more 180s, no 504
    again = usage.on_request(usage.dialog.accept(_prack(usage, f"{rseq} 1 INVITE")), SOURCE, 1.9)
    assert [a.response.status for a in again if isinstance(a, Respond)] == [481]


def test_no_prack_within_64_t1_refuses_the_invite_with_504() -> None:
    usage, _ringing = _uas_reliable()
    fired = _run(usage, 64 * T.t1)
    final = [a.response.status for _, a in fired
             if isinstance(a, Respond) and a.response.status >= 200]
    assert final == [504] and usage.state is InviteState.TERMINATED
    assert [a.event.status for _, a in fired if isinstance(a, Emit)
            and isinstance(a.event, Failed)] == [504]


def _update(usage: InviteUsage, body: bytes) -> Request:
    """An UPDATE from the far end in the (first) early dialog."""
    assert usage.dialogs
    dialog = usage.dialogs[0]
    h = Headers([("Via", "SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bKu"),
                 ("From", f"{dialog.remote_uri}"), ("To", f"{dialog.local_uri}"),
                 ("Call-ID", "c1"), ("CSeq", "5 UPDATE"), ("Contact", "<sip:x@10.0.0.2:5070>")])
    if body:
        h.add("Content-Type", "application/sdp")
    return Request("UPDATE", "sip:robot@10.0.0.1:5060", h, body)


def _status(usage: InviteUsage, req: Request) -> int:
    dialog = usage.dialog_for(req)
    assert dialog is not None
    [resp] = [a.response for a in usage.on_request(dialog.accept(req), SOURCE, 1.0)
              if isinstance(a, Respond)]
    return resp.status


def test_an_update_offer_before_the_invite_offer_is_answered_is_refused() -> None:
    usage, _ringing = _uas_reliable()
    usage.answerer = lambda offer: SDP_A
    refused = _update(usage, SDP_B)
    dialog = usage.dialog_for(refused)
    assert dialog is not None
    [resp] = [a.response for a in usage.on_request(dialog.accept(refused), SOURCE, 1.0)
              if isinstance(a, Respond)]
    assert resp.status == 500 and resp.headers.get("Retry-After") == "1"
    bodiless = _update(usage, b"")
    bodiless.headers.set("CSeq", "6 UPDATE")
    assert _status(usage, bodiless) == 200
    reinvite = _update(usage, SDP_B)
    reinvite = Request("INVITE", reinvite.uri, reinvite.headers.copy(), SDP_B)
    reinvite.headers.set("CSeq", "7 INVITE")
    assert _status(usage, reinvite) == 500  # RFC 3261 §14.2: the INVITE is pending


def test_as_caller_an_early_update_offer_waits_for_the_answer_to_ours() -> None:
    usage = _uac()
    usage.answerer = lambda offer: SDP_A
    unreliable = _answer(usage, 180, body=b"")  # an early dialog, no answer yet
    usage.receive(unreliable, 0.1)
    assert _status(usage, _update(usage, SDP_B)) == 491
    usage.receive(_reliable(usage, "1"), 0.2)  # the answer, reliably
    update = _update(usage, SDP_B)
    update.headers.set("CSeq", "6 UPDATE")
    assert _status(usage, update) == 200
    assert usage.local_sdp == SDP_A


def test_a_prack_answers_an_offer_in_a_reliable_1xx_to_our_late_offer() -> None:
    usage = InviteUsage(Agent(), "uac", _invite(), timers=T)
    usage.set_offer(None)
    usage.start(("10.0.0.9", 5060), 0.0)
    usage.answerer = lambda offer: SDP_A
    [prack] = _pracks(usage.receive(_reliable(usage, "1"), 0.1))
    assert prack.body == SDP_A and prack.content_type == "application/sdp"
    ok = response_to(usage.invite, 200, to_tag="b1",
                     headers=Headers([("Contact", "<sip:bob@10.0.0.21:5060>")]))
    actions = usage.receive(ok, 0.5)
    acks = [a.message for a in actions if isinstance(a, Transmit)]
    assert [m.method for m in acks if isinstance(m, Request)] == ["ACK"]
    assert not acks[0].body  # answered in the PRACK: not twice


def test_the_early_dialog_is_announced_once() -> None:
    usage = _uac()
    first = usage.receive(_answer(usage, 180, body=b""), 0.1)
    again = usage.receive(_answer(usage, 180, body=b""), 0.2)
    assert [a for a in first if isinstance(a, DialogUp)] != []
    assert [a for a in again if isinstance(a, DialogUp)] == []
    assert len(usage.dialogs) == 1
