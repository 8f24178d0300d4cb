"""The INVITE usage (RFC 3261 §13–§15) driven by a fake clock, no sockets: the CANCEL/2xx
race, forked 2xx, 2xx retransmission until ACK, and the ordinary paths."""

from __future__ import annotations

from autocall.sip.dialog import Dialog, DialogEvent, InDialogKind, response_to
from autocall.sip.invite import (
    Acked,
    Answered,
    DialogUp,
    Emit,
    Ended,
    Failed,
    InDialog,
    InviteAction,
    InviteState,
    InviteUsage,
    LocalFailure,
    Progress,
    Respond,
    SessionEvent,
    StartRequest,
    Transmit,
)
from autocall.sip.message import Headers, Request, Response
from autocall.sip.transaction import Timers

T = Timers(t1=0.5, t2=4.0, t4=5.0, timer_d=32.0)
DEST = ("10.0.0.9", 5060)
SOURCE = ("10.0.0.2", 5070)
SDP_A = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
         b"m=audio 4000 RTP/AVP 0\r\n")
SDP_B = SDP_A.replace(b"4000", b"4002")


class Agent:
    """Fresh branches, a fixed Contact, and a digest answer when ``credentials`` is set."""

    def __init__(self, credentials: bool = False) -> None:
        self.branches = 0
        self.credentials = credentials

    def via(self) -> str:
        self.branches += 1
        return f"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKv{self.branches}"

    def contact(self) -> str:
        return "<sip:robot@10.0.0.1:5060>"

    def authorized_retry(self, request: Request, response: Response) -> Request | None:
        if not self.credentials or request.headers.get("Proxy-Authorization"):
            return None
        retry = Request(request.method, request.uri, request.headers.copy(), request.body)
        retry.headers.add("Proxy-Authorization", 'Digest username="robot"')
        retry.headers.set("CSeq", f"{request.cseq.number + 1} INVITE")
        return retry


def _invite(outgoing: bool = True) -> Request:
    h = Headers([("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKinv" if outgoing
                  else "SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bKin"),
                 ("From", "<sip:robot@x>;tag=ours" if outgoing else "<sip:caller@y>;tag=theirs"),
                 ("To", "<sip:bob@y>" if outgoing else "<sip:robot@x>"), ("Call-ID", "c1"),
                 ("CSeq", "1 INVITE"), ("Max-Forwards", "70"),
                 ("Contact", "<sip:robot@10.0.0.1:5060>" if outgoing
                  else "<sip:caller@10.0.0.2:5070>")])
    return Request("INVITE", "sip:bob@y" if outgoing else "sip:robot@x", h)


def _uac(**kw: bool) -> InviteUsage:
    usage = InviteUsage(Agent(**kw), "uac", _invite(), timers=T)
    usage.set_offer(SDP_A)
    assert usage.start(DEST, 0.0) == [StartRequest(usage.invite, DEST)]
    return usage


def _answer(usage: InviteUsage, status: int = 200, tag: str = "b1",
            body: bytes = SDP_B) -> Response:
    contact = Headers([("Contact", f"<sip:bob@10.0.0.2{tag[-1]}:5060>")])
    return response_to(usage.invite, status, to_tag=tag, headers=contact, body=body,
                       content_type="application/sdp" if body else None)


def _events(actions: list[InviteAction]) -> list[SessionEvent]:
    return [a.event for a in actions if isinstance(a, Emit)]


def _kinds(actions: list[InviteAction]) -> list[type]:
    return [type(e) for e in _events(actions)]


def _sent(actions: list[InviteAction]) -> list[Request | Response]:
    return [a.request if isinstance(a, StartRequest) else a.message
            for a in actions if isinstance(a, (StartRequest, Transmit))]


def _methods(actions: list[InviteAction]) -> list[str]:
    return [m.method if isinstance(m, Request) else str(m.status) for m in _sent(actions)]


def _run(usage: InviteUsage, until: float) -> list[tuple[float, InviteAction]]:
    """Fire timers at their deadlines up to ``until``; return (time, action)."""
    out: list[tuple[float, InviteAction]] = []
    while usage.deadline is not None and usage.deadline <= until:
        now = usage.deadline
        out += [(now, a) for a in usage.on_timer(now)]
    return out


# ---- UAC: the ordinary paths -------------------------------------------------------------
def test_offer_goes_into_the_invite_and_a_late_offer_leaves_it_empty() -> None:
    usage = InviteUsage(Agent(), "uac", _invite(), timers=T)
    usage.set_offer(SDP_A)
    assert usage.invite.body == SDP_A and usage.invite.content_type == "application/sdp"
    usage.set_offer(None)
    assert usage.invite.body == b"" and "Content-Type" not in usage.invite.headers


def test_ringing_then_answer_confirms_and_acks() -> None:
    usage = _uac()
    assert not usage.heard_back
    assert usage.receive(response_to(usage.invite, 100), 0.1) == []
    assert usage.heard_back and not usage.provisional and usage.state is InviteState.CALLING
    ringing = _answer(usage, 180, body=b"")
    actions = usage.receive(ringing, 0.2)
    early = actions[0]  # a 1xx with a To tag makes the early dialog (RFC 3261 §12.1)
    assert isinstance(early, DialogUp) and early.dialog.remote_tag == ringing.to.tag
    assert actions[1:] == [Emit(Progress(180, "Ringing", ringing))]
    assert usage.state is InviteState.EARLY and usage.provisional
    ok = _answer(usage)
    actions = usage.receive(ok, 1.0)
    assert isinstance(actions[0], DialogUp) and usage.dialog is actions[0].dialog
    assert usage.dialog is early.dialog  # the 2xx confirms it
    ack = actions[1]
    assert isinstance(ack, Transmit) and ack.to is usage.dialog
    assert isinstance(ack.message, Request) and ack.message.method == "ACK"
    assert ack.message.cseq.number == 1 and ack.message.to.tag == "b1"
    assert ack.message.top_via.branch != usage.invite.top_via.branch  # its own (§13.2.2.4)
    assert _kinds(actions) == [Answered] and usage.state is InviteState.CONFIRMED
    assert usage.remote_sdp == SDP_B and usage.final_status == 200
    assert usage.deadline is None


def test_final_failure_ends_the_usage() -> None:
    usage = _uac()
    busy = _answer(usage, 486, body=b"")
    assert usage.receive(busy, 1.0) == [Emit(Failed(486, "Busy Here", busy))]
    assert usage.state is InviteState.TERMINATED and usage.final_status == 486
    assert usage.receive(busy, 1.1) == []  # the ACK of a non-2xx is the transaction's (§17.1.1.3)


def test_timeout_and_transport_failure_are_local_network_faults() -> None:
    usage = _uac()
    timeout = LocalFailure(408, "Request Timeout (no response)")
    [event] = _events(usage.receive(timeout, 32.0))
    assert isinstance(event, Failed)
    assert (event.status, event.by, event.network_fault) == (408, "local", True)
    assert usage.state is InviteState.TERMINATED


def test_challenge_is_answered_once_with_a_new_cseq() -> None:
    usage = _uac(credentials=True)
    challenge = _answer(usage, 407, body=b"")
    [again] = usage.receive(challenge, 0.5)
    assert isinstance(again, StartRequest) and again.to == DEST
    assert again.request.cseq.number == 2 and usage.invite is again.request
    assert usage.state is InviteState.CALLING and not usage.heard_back
    assert _kinds(usage.receive(_answer(usage, 407, body=b""), 1.0)) == [Failed]


def test_late_offer_is_answered_in_the_ack() -> None:
    usage = InviteUsage(Agent(), "uac", _invite(), timers=T)
    usage.set_offer(None)
    usage.start(DEST, 0.0)
    usage.answerer = lambda offer: SDP_A if offer == SDP_B else None
    actions = usage.receive(_answer(usage), 1.0)
    [ack] = [m for m in _sent(actions) if isinstance(m, Request)]
    assert ack.method == "ACK" and ack.body == SDP_A and ack.content_type == "application/sdp"


# ---- UAC: CANCEL (§9.1) ------------------------------------------------------------------
def test_cancel_waits_for_a_provisional_then_487_ends_it() -> None:
    usage = _uac()
    assert usage.cancel(1.0) == []  # nothing provisional yet: the CANCEL must wait (§9.1)
    actions = usage.receive(_answer(usage, 180, body=b""), 2.0)
    assert _methods(actions) == ["CANCEL"] and _kinds(actions) == [Progress]
    [cancel] = _sent(actions)
    assert isinstance(cancel, Request) and cancel.top_via.branch == usage.invite.top_via.branch
    assert usage.cancel(2.1) == []  # one CANCEL only
    assert _methods(usage.receive(_answer(usage, 183, body=b""), 2.2)) == []
    terminated = _answer(usage, 487, body=b"")
    assert _kinds(usage.receive(terminated, 2.5)) == [Failed] and usage.final_status == 487
    assert usage.deadline is None


def test_cancel_gives_up_64_t1_after_without_a_final_response() -> None:
    usage = _uac()
    usage.receive(_answer(usage, 180, body=b""), 0.5)
    assert _methods(usage.cancel(1.0)) == ["CANCEL"]
    assert usage.deadline == 1.0 + 64 * T.t1
    [(when, action)] = _run(usage, 100)
    assert when == 33.0 and isinstance(action, Emit)
    assert isinstance(action.event, Failed)
    assert (action.event.status, action.event.by) == (487, "local")


def test_2xx_crossing_our_cancel_is_acked_then_ended_with_bye() -> None:
    usage = _uac()
    usage.receive(_answer(usage, 180, body=b""), 0.5)
    assert _methods(usage.cancel(1.0)) == ["CANCEL"]
    actions = usage.receive(_answer(usage), 1.1)  # the callee answered as our CANCEL flew
    assert _methods(actions) == ["ACK", "BYE"]
    [ack, bye] = _sent(actions)
    assert isinstance(bye, Request) and isinstance(ack, Request)
    assert bye.to.tag == ack.to.tag == "b1" and bye.cseq.number == 2
    assert 'text="cancelled"' in (bye.headers.get("Reason") or "")
    assert isinstance(actions[2], StartRequest) and actions[2].to is usage.dialog
    assert _kinds(actions) == [Ended]  # never "answered"
    assert usage.state is InviteState.TERMINATED and usage.deadline is None


def test_2xx_after_the_cancel_timer_gave_up_is_still_acked_and_ended() -> None:
    usage = _uac()
    usage.receive(_answer(usage, 180, body=b""), 0.5)
    usage.cancel(1.0)
    assert _kinds([a for _, a in _run(usage, 100)]) == [Failed]
    actions = usage.receive(_answer(usage), 40.0)
    assert _methods(actions) == ["ACK", "BYE"] and _kinds(actions) == [Ended]


# ---- UAC: forks and retransmitted 2xx (§13.2.2.4) ----------------------------------------
def test_second_fork_200_is_acked_and_ended_with_bye() -> None:
    usage = _uac()
    usage.receive(_answer(usage, 180, tag="b1", body=b""), 0.5)
    usage.receive(_answer(usage, tag="b1"), 1.0)
    first = usage.dialog
    assert first is not None
    other = _answer(usage, tag="b2")
    actions = usage.receive(other, 1.2)
    assert _methods(actions) == ["ACK", "BYE"] and _kinds(actions) == []
    ack, bye = actions
    assert isinstance(ack, Transmit) and isinstance(bye, StartRequest)
    assert isinstance(ack.to, Dialog) and ack.to.remote_tag == "b2" and bye.to is ack.to
    assert isinstance(ack.message, Request) and ack.message.to.tag == "b2"
    assert bye.request.to.tag == "b2" and bye.request.uri.host == "10.0.0.22"  # its Contact
    assert usage.dialog is first and usage.state is InviteState.CONFIRMED  # the call stays


def test_retransmitted_2xx_is_acked_again() -> None:
    usage = _uac()
    ok = _answer(usage)
    first = usage.receive(ok, 1.0)[1]
    assert isinstance(first, Transmit)
    assert usage.receive(ok, 1.5) == [first]  # the same ACK, no new event
    usage.bye()
    assert usage.receive(ok, 2.0) == [first]  # even after our BYE: the 2xx is still owed one


# ---- UAS ---------------------------------------------------------------------------------
def _uas() -> InviteUsage:
    usage = InviteUsage(Agent(), "uas", _invite(outgoing=False), peer=SOURCE, timers=T)
    early, ring = usage.ring()  # the 180 makes the early dialog (RFC 3261 §12.1.1)
    assert isinstance(early, DialogUp) and early.dialog is usage.dialog
    assert early.dialog.local_tag == usage.local_tag
    assert isinstance(ring, Respond) and ring.response.status == 180
    assert "Require" not in ring.response.headers  # not reliable unless asked (RFC 3262)
    assert ring.response.to.tag == usage.local_tag and usage.state is InviteState.EARLY
    return usage


def test_200_is_retransmitted_t1_doubling_to_t2_then_bye_at_64_t1() -> None:
    usage = _uas()
    actions = usage.answer(SDP_A, 0.0)
    assert isinstance(actions[0], DialogUp) and isinstance(actions[1], Respond)
    ok = actions[1].response
    assert ok.status == 200 and ok.body == SDP_A and usage.state is InviteState.CONFIRMED
    fired = _run(usage, 100)
    resent = [when for when, a in fired if a == Transmit(ok, SOURCE)]
    # §13.3.1.4: intervals T1, 2T1, 4T1, then T2 (4 s) until 64*T1 = 32 s.
    assert resent == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert [when for when, a in fired if isinstance(a, StartRequest)] == [32.0]
    bye = [a for _, a in fired if isinstance(a, StartRequest)][0].request
    assert bye.method == "BYE" and 'text="no ACK"' in (bye.headers.get("Reason") or "")
    assert _kinds([a for _, a in fired]) == [Ended] and usage.state is InviteState.TERMINATED


def _ack(usage: InviteUsage, body: bytes = b"") -> Request:
    assert usage.dialog is not None
    h = Headers([("Via", "SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bKack"),
                 ("From", "<sip:caller@y>;tag=theirs"),
                 ("To", f"<sip:robot@x>;tag={usage.local_tag}"), ("Call-ID", "c1"),
                 ("CSeq", "1 ACK")] + ([("Content-Type", "application/sdp")] if body else []))
    return Request("ACK", "sip:robot@10.0.0.1:5060", h, body)


def test_ack_stops_the_200_retransmissions() -> None:
    usage = _uas()
    usage.answer(SDP_A, 0.0)
    assert len(_run(usage, 2.0)) == 2  # 0.5 and 1.5
    ack = _ack(usage)
    assert usage.receive(ack, 2.1) == [Emit(Acked(ack))]
    assert usage.deadline is None and _run(usage, 100) == []
    assert usage.receive(ack, 2.2) == []  # a retransmitted ACK says nothing new


def test_late_offer_answer_comes_in_the_ack() -> None:
    usage = _uas()
    usage.offerer = lambda: SDP_A
    usage.answer(usage.offerer(), 0.0)
    [event] = _events(usage.receive(_ack(usage, SDP_B), 0.3))
    assert isinstance(event, Acked) and usage.remote_sdp == SDP_B


def test_caller_cancel_answers_487_and_reject_answers_once() -> None:
    usage = _uas()
    cancel = Request("CANCEL", "sip:robot@x", usage.invite.headers.copy())
    actions = usage.receive(cancel, 1.0)
    assert isinstance(actions[0], Respond) and actions[0].response.status == 487
    assert _events(actions) == [Failed(487, "cancelled by caller", by="remote")]
    assert usage.reject(486) == [] and usage.answer(SDP_A, 1.1) == []
    other = InviteUsage(Agent(), "uas", _invite(outgoing=False), peer=SOURCE, timers=T)
    [busy] = other.reject(486)
    assert isinstance(busy, Respond) and busy.response.status == 486
    assert other.state is InviteState.TERMINATED and other.receive(cancel, 1.0) == []


def test_bye_from_the_far_end_ends_the_call_once() -> None:
    usage = _uas()
    usage.answer(SDP_A, 0.0)
    bye = Request("BYE", "sip:robot@10.0.0.1:5060", _ack(usage).headers.copy())
    bye.headers.set("CSeq", "2 BYE")
    actions = usage.on_request(DialogEvent(InDialogKind.BYE, bye), SOURCE, 1.0)
    assert isinstance(actions[0], Respond) and actions[0].response.status == 200
    assert _kinds(actions) == [Ended] and usage.deadline is None
    assert _kinds(usage.on_request(DialogEvent(InDialogKind.BYE, bye), SOURCE, 1.1)) == []


def test_reinvite_200_is_retransmitted_until_its_ack() -> None:
    usage = _uas()
    usage.answer(SDP_A, 0.0)
    usage.receive(_ack(usage), 0.1)
    usage.answerer = lambda offer: SDP_A
    reinvite = Request("INVITE", "sip:robot@10.0.0.1:5060", _ack(usage).headers.copy(), SDP_B)
    reinvite.headers.set("CSeq", "2 INVITE")
    reinvite.headers.set("Content-Type", "application/sdp")
    actions = usage.on_request(DialogEvent(InDialogKind.REINVITE, reinvite), ("10.0.0.3", 5080),
                               5.0)
    assert isinstance(actions[0], Respond) and actions[0].response.body == SDP_A
    assert usage.remote_sdp == SDP_B and _kinds(actions) == [InDialog]
    assert _run(usage, 5.6) == [(5.5, Transmit(actions[0].response, ("10.0.0.3", 5080)))]
    usage.receive(_ack(usage), 5.7)
    assert usage.deadline is None


# -- RFC 3263 §4.3: the next server when one fails before anyone answers ----------------
NEXT = [("10.0.0.10", 5060), ("10.0.0.11", 5062)]


def _local(usage: InviteUsage, status: int, reason: str) -> LocalFailure:
    return LocalFailure(status, reason, response_to(usage.invite, status).headers)


def test_a_dead_or_silent_server_moves_the_invite_to_the_next_one() -> None:
    usage = InviteUsage(Agent(), "uac", _invite(), timers=T)
    usage.set_offer(SDP_A)
    first = usage.invite
    assert usage.start(DEST, 0.0, NEXT) == [StartRequest(first, DEST)]
    moved = usage.receive(_local(usage, 503, "Service Unavailable (refused)"), 0.1)
    assert moved == [StartRequest(usage.invite, NEXT[0])] and usage.peer == NEXT[0]
    second = usage.invite
    assert second.headers.get("Via") != first.headers.get("Via")  # a new transaction
    for name in ("Call-ID", "CSeq", "From", "To", "Contact"):
        assert second.headers.get(name) == first.headers.get(name), name
    assert second.body == first.body == SDP_A
    moved = usage.receive(_local(usage, 408, "Request Timeout (no response)"), 32.0)
    assert moved == [StartRequest(usage.invite, NEXT[1])]
    last = usage.receive(_local(usage, 503, "Service Unavailable (refused)"), 32.1)
    assert last == [Emit(Failed(503, "Service Unavailable (refused)", last[0].event.message,
                                by="local", network_fault=True))]  # type: ignore[union-attr]
    assert usage.state is InviteState.TERMINATED


def test_a_503_moves_on_but_a_refusal_ringing_or_a_cancel_stays() -> None:
    usage = InviteUsage(Agent(), "uac", _invite(), timers=T)
    usage.start(DEST, 0.0, NEXT)
    assert usage.receive(_answer(usage, 503, body=b""), 0.2) == [
        StartRequest(usage.invite, NEXT[0])]
    busy = usage.receive(_answer(usage, 486, body=b""), 0.4)  # a person said no: final
    assert [type(a) for a in busy] == [Emit] and usage.state is InviteState.TERMINATED

    rang = InviteUsage(Agent(), "uac", _invite(), timers=T)
    rang.start(DEST, 0.0, NEXT)
    rang.receive(_answer(rang, 180, body=b""), 0.1)
    gone = rang.receive(_local(rang, 408, "Request Timeout (no response)"), 40.0)
    assert [type(a) for a in gone] == [Emit] and rang.peer == DEST  # it rang: no retry

    cancelled = InviteUsage(Agent(), "uac", _invite(), timers=T)
    cancelled.start(DEST, 0.0, NEXT)
    cancelled.cancel(0.1)
    out = cancelled.receive(_local(cancelled, 503, "Service Unavailable (refused)"), 0.2)
    assert [type(a) for a in out] == [Emit] and cancelled.peer == DEST
