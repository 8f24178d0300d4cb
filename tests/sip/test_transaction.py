"""§17 transactions driven by a fake clock: retransmissions, timers, ACK, absorption."""

from __future__ import annotations

from autocall.sip.dialog import response_to
from autocall.sip.message import Headers, Request, Response
from autocall.sip.transaction import (
    ClientTransaction,
    Deliver,
    Send,
    ServerTransaction,
    State,
    TimedOut,
    Timers,
    server_key,
)

T = Timers(t1=0.5, t2=4.0, t4=5.0, timer_d=32.0)


def _req(method: str = "INVITE", branch: str = "z9hG4bKabc") -> Request:
    h = Headers([("Via", f"SIP/2.0/UDP 10.0.0.1:5060;branch={branch}"),
                 ("From", "<sip:a@x>;tag=f"), ("To", "<sip:b@y>"), ("Call-ID", "c1"),
                 ("CSeq", f"1 {method}"), ("Max-Forwards", "70")])
    return Request(method, "sip:b@y", h)


def _run(tx: ClientTransaction | ServerTransaction, until: float) -> list[tuple[float, object]]:
    """Fire timers at their deadlines up to ``until``; return (time, action)."""
    out: list[tuple[float, object]] = []
    while tx.deadline is not None and tx.deadline <= until:
        now = tx.deadline
        out += [(now, a) for a in tx.on_timer(now)]
    return out


def test_invite_client_retransmits_with_timer_a_and_times_out_with_b() -> None:
    tx = ClientTransaction(_req(), timers=T)
    assert tx.start(0.0) == [Send(tx.request)]
    events = _run(tx, 100)
    sends = [t for t, a in events if isinstance(a, Send)]
    # Timer A doubles from T1: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 (§17.1.1.2); B = 64*T1 = 32 s.
    assert sends == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert events[-1] == (32.0, TimedOut("B")) and tx.terminated


def test_invite_client_no_retransmission_on_reliable_transport() -> None:
    tx = ClientTransaction(_req(), reliable=True, timers=T)
    tx.start(0.0)
    assert [a for _, a in _run(tx, 100)] == [TimedOut("B")]


def test_invite_client_acks_non_2xx_in_transaction_and_absorbs_retransmits() -> None:
    inv = _req()
    tx = ClientTransaction(inv, timers=T)
    tx.start(0.0)
    ringing = response_to(inv, 180, to_tag="t")
    assert tx.receive(ringing, 0.1) == [Deliver(ringing)] and tx.state is State.PROCEEDING
    assert _run(tx, 10) == []  # Timer A stops once a provisional arrives
    busy = response_to(inv, 486, to_tag="t")
    actions = tx.receive(busy, 11.0)
    ack = actions[0]
    assert isinstance(ack, Send) and isinstance(ack.message, Request)
    assert ack.message.method == "ACK" and ack.message.to.tag == "t"
    assert ack.message.top_via.branch == inv.top_via.branch and ack.message.cseq.number == 1
    assert actions[1] == Deliver(busy)
    again = tx.receive(busy, 12.0)  # retransmitted 486: ACK again, not delivered twice
    assert len(again) == 1 and isinstance(again[0], Send)
    assert _run(tx, 11.0 + 32.0) == [] and tx.terminated  # Timer D


def test_invite_client_2xx_goes_to_tu_including_retransmissions() -> None:
    inv = _req()
    tx = ClientTransaction(inv, timers=T)
    tx.start(0.0)
    ok = response_to(inv, 200, to_tag="t")
    assert tx.receive(ok, 1.0) == [Deliver(ok)] and tx.state is State.ACCEPTED
    assert tx.receive(ok, 2.0) == [Deliver(ok)]  # the TU re-ACKs (RFC 6026)
    _run(tx, 1.0 + 64 * T.t1)
    assert tx.terminated


def test_non_invite_client_timer_e_caps_at_t2_and_f_times_out() -> None:
    tx = ClientTransaction(_req("OPTIONS"), timers=T)
    tx.start(0.0)
    sends = [t for t, a in _run(tx, 100) if isinstance(a, Send)]
    gaps = [round(b - a, 3) for a, b in zip([0.0, *sends], sends, strict=False)]
    assert gaps[:4] == [0.5, 1.0, 2.0, 4.0] and set(gaps[4:]) == {4.0}
    assert tx.terminated


def test_non_invite_client_final_then_timer_k() -> None:
    req = _req("BYE")
    tx = ClientTransaction(req, timers=T)
    tx.start(0.0)
    ok = response_to(req, 200)
    assert tx.receive(ok, 0.2) == [Deliver(ok)]
    assert tx.receive(ok, 0.3) == []  # completed: absorbed
    _run(tx, 0.2 + T.t4)
    assert tx.terminated


def test_invite_server_100_trying_retransmits_final_until_ack() -> None:
    inv = _req()
    tx = ServerTransaction(inv, timers=T)
    trying = response_to(inv, 100)
    assert tx.start(0.0, trying) == [Send(trying), Deliver(inv)]
    assert tx.receive(inv, 0.1) == [Send(trying)]  # retransmitted INVITE → last response
    busy = response_to(inv, 486, to_tag="t")
    assert tx.respond(busy, 1.0) == [Send(busy)]
    sends = [t for t, a in _run(tx, 5.0) if isinstance(a, Send)]
    assert sends == [1.5, 2.5, 4.5]  # Timer G: T1, 2T1, 4T1 … capped at T2
    ack = Request("ACK", "sip:b@y", inv.headers.copy())
    ack.headers.set("CSeq", "1 ACK")
    assert server_key(ack) == tx.key
    assert tx.receive(ack, 5.1) == [] and tx.state is State.CONFIRMED
    assert _run(tx, 5.1 + T.t4) == [] and tx.terminated  # Timer I


def test_invite_server_without_ack_times_out_with_h() -> None:
    inv = _req()
    tx = ServerTransaction(inv, timers=T)
    tx.start(0.0)
    tx.respond(response_to(inv, 603, to_tag="t"), 0.0)
    assert _run(tx, 100)[-1] == (32.0, TimedOut("H"))


def test_non_invite_server_absorbs_retransmissions_then_timer_j() -> None:
    req = _req("OPTIONS")
    tx = ServerTransaction(req, timers=T)
    assert tx.start(0.0) == [Deliver(req)]
    ok = response_to(req, 200, to_tag="t")
    assert tx.respond(ok, 0.1) == [Send(ok)]
    assert tx.receive(req, 0.5) == [Send(ok)]
    assert tx.respond(response_to(req, 500), 0.6) == []  # one final response only
    _run(tx, 0.1 + 64 * T.t1)
    assert tx.terminated


def test_keys_match_by_branch_and_method() -> None:
    inv = _req()
    cancel = _req("CANCEL")
    assert server_key(inv) != server_key(cancel)
    assert server_key(inv)[0] == server_key(cancel)[0]
    other = _req(branch="z9hG4bKother")
    assert server_key(inv) != server_key(other)
    assert isinstance(Response(200), Response)
