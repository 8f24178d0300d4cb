"""Session timers (RFC 4028) without sockets: the header rules, and the INVITE usage's
refresh and expiry deadlines driven by a fake clock."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from autocall.sip.dialog import Dialog, response_to
from autocall.sip.invite import (
    Emit,
    Ended,
    Failed,
    InviteAction,
    InviteState,
    InviteUsage,
    LocalFailure,
    Respond,
    StartRequest,
    Transmit,
)
from autocall.sip.message import Headers, Request, Response
from autocall.sip.session_timer import (
    Interval,
    TimerPolicy,
    TooSmall,
    answer_headers,
    granted,
    interval_of,
    min_se_of,
    next_deadlines,
    request_headers,
)
from autocall.sip.transaction import Timers

T = Timers(t1=0.5, t2=4.0, t4=5.0, timer_d=32.0)
DEST = ("10.0.0.9", 5060)
SOURCE = ("10.0.0.2", 5070)
SDP_A = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
         b"m=audio 4000 RTP/AVP 0\r\n")
SDP_B = SDP_A.replace(b"4000", b"4002")
POLICY = TimerPolicy(interval=1800, min_se=90)


class Agent:
    def __init__(self) -> None:
        self.branches = 0

    def via(self) -> str:
        self.branches += 1
        return f"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKv{self.branches}"

    def contact(self) -> str:
        return "<sip:robot@10.0.0.1:5060>"

    def authorized_retry(self, request: Request, response: Response) -> Request | None:
        return None


def _request(method: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b"",
             outgoing: bool = True) -> Request:
    h = Headers([("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKinv" if outgoing
                  else "SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bKin"),
                 ("From", "<sip:robot@x>;tag=ours" if outgoing else "<sip:caller@y>;tag=theirs"),
                 ("To", "<sip:bob@y>" if outgoing else "<sip:robot@x>"), ("Call-ID", "c1"),
                 ("CSeq", f"1 {method}"), ("Max-Forwards", "70"),
                 ("Contact", "<sip:robot@10.0.0.1:5060>" if outgoing
                  else "<sip:caller@10.0.0.2:5070>")] + list(headers))
    if body:
        h.add("Content-Type", "application/sdp")
    return Request(method, "sip:bob@y" if outgoing else "sip:robot@x", h, body)


def _headers(h: Headers | list[tuple[str, str]]) -> dict[str, str]:
    return {name: value for name, value in h}


# ---- the header rules ----------------------------------------------------------------------
def test_an_invite_offers_the_policy_interval_and_a_422_raises_both_values() -> None:
    assert request_headers(POLICY) == [("Supported", "timer"), ("Session-Expires", "1800"),
                                       ("Min-SE", "90")]
    assert _headers(request_headers(POLICY, floor=3600)) == {
        "Supported": "timer", "Session-Expires": "3600", "Min-SE": "3600"}
    with pytest.raises(ValueError, match="Min-SE"):
        TimerPolicy(interval=60, min_se=90)


def test_session_expires_is_parsed_strictly_in_both_forms() -> None:
    req = _request("INVITE", [("x", "1200 ; refresher=UAS")])
    assert interval_of(req) == Interval(1200, "uas")
    assert interval_of(_request("INVITE")) is None
    for bad in ("0", "-5", "soon", "90;refresher=proxy", "1234567890"):
        with pytest.raises(ValueError, match="Session-Expires"):
            interval_of(_request("INVITE", [("Session-Expires", bad)]))
    assert min_se_of(_request("INVITE", [("Min-SE", "120;x=1")])) == 120
    with pytest.raises(ValueError, match="Min-SE"):
        min_se_of(_request("INVITE", [("Min-SE", "lots")]))


def test_the_answer_names_the_refresher_and_requires_timer_only_when_it_is_the_uac() -> None:
    offer = _request("INVITE", [("Supported", "timer"), ("Session-Expires", "600")],
                     outgoing=False)
    h, interval = answer_headers(offer, POLICY)
    assert interval == Interval(600, "uac")
    assert _headers(h) == {"Supported": "timer", "Session-Expires": "600;refresher=uac",
                           "Require": "timer"}
    named = _request("INVITE", [("Supported", "timer"), ("Session-Expires", "600;refresher=uas")])
    h, interval = answer_headers(named, POLICY)
    assert interval == Interval(600, "uas") and "Require" not in _headers(h)
    # A UAC without timer support: we refresh, it need not know (§9).
    h, interval = answer_headers(_request("INVITE", [("Session-Expires", "600")]), POLICY)
    assert interval == Interval(600, "uas") and "Require" not in _headers(h)
    # No Session-Expires at all: we still want dead calls to end (§9 lets the UAS ask).
    h, interval = answer_headers(_request("INVITE", [("Supported", "timer"),
                                                     ("Min-SE", "2400")]), POLICY)
    assert interval == Interval(2400, "uac")
    assert answer_headers(_request("INVITE"), POLICY, current=300)[1] == Interval(300, "uas")


def test_too_small_an_interval_is_422_for_a_uac_that_can_retry_raised_for_one_that_cannot() -> None:
    with pytest.raises(TooSmall) as small:
        answer_headers(_request("INVITE", [("k", "timer"), ("x", "60")]), POLICY)
    assert small.value.min_se == 90
    assert answer_headers(_request("INVITE", [("x", "60")]), POLICY)[1] == Interval(90, "uas")
    # A UAC naming itself the refresher is taken at its word (and told it must, §9).
    h, interval = answer_headers(_request("INVITE", [("x", "600;refresher=uac")]), POLICY)
    assert interval == Interval(600, "uac") and _headers(h)["Require"] == "timer"


def test_a_2xx_grants_at_least_our_min_se_and_leaves_a_missing_refresher_to_us() -> None:
    invite = _request("INVITE")
    assert granted(response_to(invite, 200), POLICY) is None
    assert granted(response_to(invite, 200, headers=Headers([("Session-Expires", "1")])),
                   POLICY) == Interval(90, "uac")
    ok = response_to(invite, 200, headers=Headers([("Session-Expires", "300;refresher=uas")]))
    assert granted(ok, POLICY) == Interval(300, "uas")


def test_deadlines_are_half_the_interval_and_the_interval_less_min_32_or_a_third() -> None:
    assert next_deadlines(Interval(1800, "uac"), "uac", 100.0) == (1000.0, 100.0 + 1800 - 32)
    assert next_deadlines(Interval(1800, "uac"), "uas", 100.0) == (None, 100.0 + 1800 - 32)
    assert next_deadlines(Interval(90, "uas"), "uas", 0.0) == (45.0, 60.0)
    assert next_deadlines(Interval(6, "uac"), "uas", 0.0) == (None, 4.0)


# ---- the usage: outgoing calls -----------------------------------------------------------
def _uac(policy: TimerPolicy | None = POLICY) -> InviteUsage:
    usage = InviteUsage(Agent(), "uac", _request("INVITE"), timers=T, session_timer=policy)
    usage.set_offer(SDP_A)
    usage.start(DEST, 0.0)
    return usage


def _ok(request: Request, timer: str | None, allow: str | None = None,
        body: bytes = SDP_B) -> Response:
    h = Headers([("Contact", "<sip:bob@10.0.0.2:5060>")])
    if timer is not None:
        h.add("Session-Expires", timer)
    if allow is not None:
        h.add("Allow", allow)
    return response_to(request, 200, to_tag="b1", headers=h, body=body,
                       content_type="application/sdp" if body else None)


def _sent(actions: list[InviteAction]) -> list[Request | Response]:
    return [a.request if isinstance(a, StartRequest) else a.message
            for a in actions if isinstance(a, (StartRequest, Transmit))]


def _answered(usage: InviteUsage, timer: str | None, allow: str | None = None,
              at: float = 1.0) -> None:
    usage.receive(_ok(usage.invite, timer, allow), at)
    assert usage.state is InviteState.CONFIRMED


def test_the_invite_offers_a_timer_and_without_a_policy_nothing_changes() -> None:
    usage = _uac()
    assert _headers(usage.invite.headers)["Session-Expires"] == "1800"
    assert usage.invite.headers.get("Min-SE") == "90"
    plain = _uac(None)
    assert "Session-Expires" not in plain.invite.headers
    _answered(plain, "120;refresher=uac")
    assert plain.interval is None and plain.deadline is None


def test_we_refresh_with_update_at_half_the_interval_and_each_2xx_restarts_it() -> None:
    usage = _uac()
    _answered(usage, "120;refresher=uac", allow="INVITE, ACK, BYE, UPDATE")
    assert usage.interval == Interval(120, "uac") and usage.deadline == 61.0
    assert usage.on_timer(60.9) == []
    [refresh] = usage.on_timer(61.0)
    assert isinstance(refresh, StartRequest) and refresh.refresh and refresh.to is usage.dialog
    update = refresh.request
    assert update.method == "UPDATE" and update.body == b"" and update.cseq.number == 2
    assert _headers(update.headers)["Session-Expires"] == "120;refresher=uac"
    assert update.headers.get("Min-SE") == "90" and update.headers.get("Supported") == "timer"
    assert usage.on_timer(61.5) == []  # one refresh at a time
    ok = response_to(update, 200, headers=Headers([("Session-Expires", "100;refresher=uac")]))
    assert usage.refreshed(ok, 61.5) == []  # an UPDATE's 2xx needs no ACK
    assert usage.interval == Interval(100, "uac") and usage.deadline == 111.5
    assert usage.refreshes == 1


def test_without_update_the_refresh_is_a_reinvite_with_the_same_sdp_acked_once_per_2xx() -> None:
    usage = _uac()
    _answered(usage, "120")  # no refresher named: ours to do
    [refresh] = usage.on_timer(61.0)
    assert isinstance(refresh, StartRequest)
    reinvite = refresh.request
    assert reinvite.method == "INVITE" and reinvite.body == SDP_A  # byte for byte: no change
    ok = _ok(reinvite, "120;refresher=uac")
    [ack] = usage.refreshed(ok, 61.2)
    assert isinstance(ack, Transmit) and isinstance(ack.message, Request)
    assert ack.message.method == "ACK" and ack.message.cseq.number == reinvite.cseq.number
    assert usage.refreshed(ok, 61.7) == [ack]  # a retransmitted 2xx: our ACK got lost
    assert usage.deadline == 121.2


def test_a_reinvite_crossing_our_refresh_reinvite_gets_491() -> None:
    usage = _uac()
    _answered(usage, "120;refresher=uac")
    [refresh] = usage.on_timer(61.0)
    assert isinstance(refresh, StartRequest) and usage.dialog is not None
    theirs = Request("INVITE", "sip:robot@10.0.0.1:5060", Headers([
        ("Via", "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKg"), ("From", "<sip:bob@y>;tag=b1"),
        ("To", "<sip:robot@x>;tag=ours"), ("Call-ID", "c1"), ("CSeq", "4 INVITE")]), SDP_B)
    [reply] = usage.on_request(usage.dialog.accept(theirs), SOURCE, 61.1)
    assert isinstance(reply, Respond) and reply.response.status == 491
    offer = Request("UPDATE", "sip:robot@10.0.0.1:5060", theirs.headers.copy(), SDP_B)
    offer.headers.set("CSeq", "5 UPDATE")
    [reply] = usage.on_request(usage.dialog.accept(offer), SOURCE, 61.1)
    assert isinstance(reply, Respond) and reply.response.status == 491
    offer.body = b""
    offer.headers.set("CSeq", "6 UPDATE")
    offer.headers.remove("Content-Type")
    [reply, _] = usage.on_request(usage.dialog.accept(offer), SOURCE, 61.1)
    assert isinstance(reply, Respond) and reply.response.status == 200
    usage.refreshed(_ok(refresh.request, "120;refresher=uac"), 61.2)
    theirs.headers.set("CSeq", "7 INVITE")
    usage.answerer = lambda offer: SDP_A
    [reply, _] = usage.on_request(usage.dialog.accept(theirs), SOURCE, 61.3)
    assert isinstance(reply, Respond) and reply.response.status == 200


def test_when_the_far_end_refreshes_we_wait_and_send_bye_if_it_stops() -> None:
    usage = _uac()
    _answered(usage, "90;refresher=uas")
    assert usage.deadline == 61.0  # 90 - min(32, 30)
    assert usage.dialog is not None
    update = usage.dialog.new_request("UPDATE", "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKu")
    # the far end's UPDATE, seen from our side
    theirs = Request("UPDATE", "sip:robot@10.0.0.1:5060", Headers([
        ("Via", "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKu"), ("From", str(update.to)),
        ("To", str(update.from_)), ("Call-ID", "c1"), ("CSeq", "7 UPDATE"),
        ("Supported", "timer"), ("Session-Expires", "90;refresher=uac")]))
    actions = usage.on_request(usage.dialog.accept(theirs), SOURCE, 40.0)
    [ok] = [a.response for a in actions if isinstance(a, Respond)]
    assert ok.status == 200 and ok.headers.get("Session-Expires") == "90;refresher=uac"
    assert ok.headers.get("Require") == "timer"
    assert usage.interval_role == "uas" and usage.deadline == 100.0  # 40 + 60
    assert usage.on_timer(99.9) == []
    actions = usage.on_timer(100.0)
    [bye] = _sent(actions)
    assert isinstance(bye, Request) and bye.method == "BYE"
    assert "session expired" in (bye.headers.get("Reason") or "")
    assert [a.event for a in actions if isinstance(a, Emit)] == [
        Ended("local", reason="session expired")]
    assert usage.state is InviteState.TERMINATED and usage.deadline is None


def test_a_refresh_under_our_min_se_gets_422_and_changes_nothing() -> None:
    usage = _uac()
    _answered(usage, "600;refresher=uas")
    assert usage.dialog is not None
    theirs = Request("INVITE", "sip:robot@10.0.0.1:5060", Headers([
        ("Via", "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKr"), ("From", "<sip:bob@y>;tag=b1"),
        ("To", "<sip:robot@x>;tag=ours"), ("Call-ID", "c1"), ("CSeq", "3 INVITE"),
        ("Supported", "timer"), ("Session-Expires", "30")]))
    [reply] = usage.on_request(usage.dialog.accept(theirs), SOURCE, 10.0)
    assert isinstance(reply, Respond) and reply.response.status == 422
    assert reply.response.headers.get("Min-SE") == "90"
    assert usage.interval == Interval(600, "uas") and usage.deadline == 1.0 + 600 - 32


def test_a_422_is_retried_once_with_its_min_se_then_the_call_fails() -> None:
    usage = _uac()
    first_branch = usage.invite.top_via.branch
    small = response_to(usage.invite, 422, to_tag="p1",
                        headers=Headers([("Min-SE", "3600")]))
    [again] = usage.receive(small, 0.2)
    assert isinstance(again, StartRequest) and again.to == DEST and usage.invite is again.request
    retry = again.request
    assert retry.cseq.number == 2 and retry.top_via.branch != first_branch
    assert retry.headers.get("Session-Expires") == "3600" and retry.headers.get("Min-SE") == "3600"
    assert retry.headers.get_all("Supported") == ["timer"]
    assert retry.call_id == "c1" and retry.from_.tag == "ours"
    [failed] = [a.event for a in usage.receive(response_to(retry, 422, to_tag="p2", headers=Headers(
        [("Min-SE", "7200")])), 0.4) if isinstance(a, Emit)]
    assert isinstance(failed, Failed) and failed.status == 422
    # A 422 asking for no more than we offered (or with no Min-SE) is not worth a retry.
    other = _uac()
    events = other.receive(response_to(other.invite, 422, to_tag="p3",
                                       headers=Headers([("Min-SE", "600")])), 0.2)
    assert [e.event.status for e in events if isinstance(e, Emit)  # type: ignore[union-attr]
            ] == [422]


def test_a_failed_refresh_ends_the_call_or_tries_again_as_the_rfc_says() -> None:
    def refreshing(allow: str | None = "UPDATE") -> tuple[InviteUsage, Request]:
        usage = _uac()
        _answered(usage, "120;refresher=uac", allow=allow)
        [refresh] = usage.on_timer(61.0)
        assert isinstance(refresh, StartRequest)
        return usage, refresh.request

    for code in (408, 481):  # the far end is gone: BYE (RFC 4028 §10, RFC 3261 §12.2.1.2)
        usage, req = refreshing()
        bye = _sent(usage.refreshed(response_to(req, code), 62.0))
        assert [m.method for m in bye if isinstance(m, Request)] == ["BYE"]
    usage, req = refreshing()
    timeout = LocalFailure(408, "Request Timeout (no response)", response_to(req, 408).headers)
    assert usage.refreshed(timeout, 93.0)[-1] == Emit(
        Ended("local", reason="session refresh failed (408)"))
    # UPDATE not implemented over there: a re-INVITE at once, and from then on.
    usage, req = refreshing()
    [again] = usage.refreshed(response_to(req, 501), 61.1)
    assert isinstance(again, StartRequest) and again.request.method == "INVITE"
    # Glare: again in 2.1–4 s (RFC 3261 §14.1).
    usage, req = refreshing()
    assert usage.refreshed(response_to(req, 491), 61.1) == []
    assert usage.deadline is not None and 63.2 <= usage.deadline <= 65.1
    [again] = usage.on_timer(usage.deadline)
    assert isinstance(again, StartRequest) and again.request.cseq.number == req.cseq.number + 1
    # A refresh merely refused: the session lasts until it expires, then BYE.
    usage, req = refreshing()
    assert usage.refreshed(response_to(req, 500), 61.1) == []
    assert usage.deadline == 1.0 + 120 - 32
    assert [m.method for m in _sent(usage.on_timer(89.0)) if isinstance(m, Request)] == ["BYE"]


def test_a_slow_answer_to_our_refresh_decides_instead_of_the_expiry() -> None:
    usage = _uac()
    _answered(usage, "90;refresher=uac", allow="UPDATE")
    [refresh] = usage.on_timer(46.0)
    assert isinstance(refresh, StartRequest) and usage.deadline == 61.0
    assert usage.on_timer(61.0) == []  # the far end is still working on it: no BYE yet
    late = response_to(refresh.request, 200, headers=Headers([("Session-Expires", "90")]))
    assert usage.refreshed(late, 70.0) == [] and usage.state is InviteState.CONFIRMED
    assert usage.deadline == 115.0
    [refresh] = usage.on_timer(115.0)
    assert isinstance(refresh, StartRequest)
    usage.on_timer(130.0)
    refused = usage.refreshed(response_to(refresh.request, 500), 131.0)
    assert [m.method for m in _sent(refused) if isinstance(m, Request)] == ["BYE"]


def test_a_422_to_our_refresh_raises_the_interval_once() -> None:
    usage = _uac()
    _answered(usage, "120;refresher=uac", allow="UPDATE")
    [refresh] = usage.on_timer(61.0)
    assert isinstance(refresh, StartRequest)
    small = response_to(refresh.request, 422, headers=Headers([("Min-SE", "300")]))
    [again] = usage.refreshed(small, 61.1)
    assert isinstance(again, StartRequest)
    assert again.request.headers.get("Session-Expires") == "300;refresher=uac"
    assert again.request.headers.get("Min-SE") == "300"


def test_a_bad_session_expires_in_the_2xx_leaves_the_call_up_without_a_timer() -> None:
    usage = _uac()
    _answered(usage, "forever")
    assert usage.interval is None and usage.deadline is None


# ---- the usage: incoming calls -----------------------------------------------------------
def _uas(headers: list[tuple[str, str]], policy: TimerPolicy = POLICY) -> InviteUsage:
    invite = _request("INVITE", headers, SDP_B, outgoing=False)
    return InviteUsage(Agent(), "uas", invite, peer=SOURCE, timers=T, session_timer=policy)


def _ack(usage: InviteUsage, now: float) -> None:
    usage.receive(Request("ACK", "sip:robot@10.0.0.1:5060", Headers([
        ("Via", "SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bKa"), ("From", "<sip:caller@y>;tag=theirs"),
        ("To", f"<sip:robot@x>;tag={usage.local_tag}"), ("Call-ID", "c1"), ("CSeq", "1 ACK")])),
        now)


def test_an_incoming_interval_under_our_min_se_is_refused_with_422_before_anyone_rings() -> None:
    usage = _uas([("Supported", "timer"), ("Session-Expires", "60")])
    [refusal] = usage.screen()
    assert isinstance(refusal, Respond) and refusal.response.status == 422
    assert refusal.response.reason == "Session Interval Too Small"
    assert refusal.response.headers.get("Min-SE") == "90" and refusal.response.to.tag
    assert usage.state is InviteState.TERMINATED and usage.answer(SDP_A, 1.0) == []
    bad = _uas([("Session-Expires", "never")])
    [refusal] = bad.screen()
    assert isinstance(refusal, Respond) and refusal.response.status == 400
    assert "Session-Expires" in (refusal.response.headers.get("Warning") or "")


def test_we_answer_with_the_interval_and_the_uac_refreshes_when_it_can() -> None:
    usage = _uas([("Supported", "timer"), ("Session-Expires", "300"), ("Require", "timer")])
    assert usage.screen() == []
    actions = usage.answer(SDP_A, 2.0)
    [ok] = [a.response for a in actions if isinstance(a, Respond)]
    assert ok.headers.get("Session-Expires") == "300;refresher=uac"
    assert ok.headers.get("Require") == "timer"
    _ack(usage, 2.1)
    assert usage.interval == Interval(300, "uac") and usage.deadline == 2.0 + 300 - 32


def test_a_caller_without_timer_support_is_refreshed_by_us_with_a_reinvite() -> None:
    usage = _uas([])
    assert usage.screen() == []
    [ok] = [a.response for a in usage.answer(SDP_A, 0.0) if isinstance(a, Respond)]
    assert ok.headers.get("Session-Expires") == "1800;refresher=uas"
    assert "Require" not in ok.headers
    assert isinstance(usage.dialog, Dialog)
    _ack(usage, 0.1)
    assert usage.deadline == 900.0
    reinvites = [a.request for a in usage.on_timer(900.0) if isinstance(a, StartRequest)]
    assert [(r.method, r.body) for r in reinvites] == [("INVITE", SDP_A)]
    assert reinvites[0].headers.get("Session-Expires") == "1800;refresher=uac"


def test_a_reinvite_of_the_application_carries_the_interval_and_its_2xx_sets_the_next() -> None:
    usage = _uac()
    _answered(usage, "300;refresher=uas")  # the far end refreshes
    assert _headers(usage.refresh_extra()) == {
        "Supported": "timer", "Session-Expires": "300;refresher=uas", "Min-SE": "90"}
    hold = _request("INVITE")
    assert usage.app_refreshed(response_to(hold, 488), 50.0) == []
    assert usage.deadline == 1.0 + 300 - 32  # a refused re-INVITE refreshes nothing
    ok = response_to(hold, 200, headers=Headers([("Session-Expires", "300;refresher=uas")]))
    usage.app_refreshed(ok, 50.0)
    assert usage.interval_role == "uac" and usage.interval == Interval(300, "uas")
    assert usage.deadline == 50.0 + 300 - 32 and usage.refreshes == 1
    assert _headers(usage.refresh_extra())["Session-Expires"] == "300;refresher=uas"
    # A 2xx without Session-Expires turns the timer off (§7.2): nothing is due any more.
    usage.app_refreshed(response_to(hold, 200), 60.0)
    assert usage.interval is None and usage.deadline is None and usage.refresh_extra() == []
