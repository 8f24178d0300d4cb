"""RFC 4733 sender and receiver state machines: one key press is one digit, whatever is lost."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autocall.media.telephone_event import (
    EventPacket,
    TelephoneEvent,
    TelephoneEventReceiver,
    TelephoneEventSender,
    event_code,
)


@settings(deadline=None)  # a shared, loaded machine: judge results, not speed
@given(st.integers(0, 255), st.booleans(), st.integers(0, 63), st.integers(0, 65535))
def test_payload_round_trip(event: int, end: bool, volume: int, duration: int) -> None:
    ev = TelephoneEvent(event, end, volume, duration)
    assert TelephoneEvent.parse(bytes(ev)) == ev


def test_payload_layout_and_errors() -> None:
    # event 11 (#), E=1, R=0, volume 10, duration 800 (RFC 4733 §2.3)
    assert bytes(TelephoneEvent(11, True, 10, 800)) == b"\x0b\x8a\x03\x20"
    with pytest.raises(ValueError, match="needs 4"):
        TelephoneEvent.parse(b"\x01\x02")
    with pytest.raises(ValueError, match="volume"):
        bytes(TelephoneEvent(1, volume=64))
    with pytest.raises(ValueError, match="not a DTMF digit"):
        event_code("x")
    assert [event_code(d) for d in "09*#ad!"] == [0, 9, 10, 11, 12, 15, 16]


def run_sender(digits: str, duration_ms: int = 100, gap_ms: int = 100) -> list[list[EventPacket]]:
    tx = TelephoneEventSender()
    tx.queue(digits, duration_ms, gap_ms)
    ticks = []
    n = 0
    while tx.busy:
        ticks.append(tx.tick(n * 160))
        n += 1
    return ticks


def test_sender_marker_growing_duration_and_three_end_packets() -> None:
    ticks = run_sender("5", duration_ms=100)
    packets = [p for t in ticks for p in t]
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert {p.timestamp for p in packets} == {0}
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.event for e in events} == {5}
    # 100 ms gap counted from the first end packet: 5 frames, 2 spent on retransmissions
    assert [len(t) for t in ticks] == [1] * 7 + [0] * 3


def test_sender_digits_get_distinct_timestamps_and_flash_is_legal() -> None:
    packets = [p for t in run_sender("1!", 40, 60) for p in t]
    starts = [p for p in packets if p.marker]
    assert [TelephoneEvent.parse(p.payload).event for p in starts] == [1, 16]
    assert starts[0].timestamp != starts[1].timestamp


def test_sender_cancel_still_ends_the_current_event() -> None:
    tx = TelephoneEventSender()
    tx.queue("123", 200, 100)
    first = tx.tick(0)
    tx.cancel()
    rest = []
    n = 1
    while tx.busy:
        rest += tx.tick(n * 160)
        n += 1
    evs = [TelephoneEvent.parse(p.payload) for p in first + rest]
    assert {e.event for e in evs} == {1}
    assert [e.end for e in evs].count(True) == 3


def feed(rx: TelephoneEventReceiver, packets: list[EventPacket], t0: float = 0.0) -> list[str]:
    out = []
    for i, p in enumerate(packets):
        out += [e.digit for e in rx.receive(p.payload, p.timestamp, t0 + i * 0.02)]
    return out


def test_receiver_reports_once_despite_retransmitted_end_packets() -> None:
    packets = [p for t in run_sender("7") for p in t]
    rx = TelephoneEventReceiver()
    assert feed(rx, packets + packets[-3:]) == ["7"]
    assert rx.duplicates == 5
    assert rx.poll(100.0) == []


def test_receiver_ends_by_timeout_when_all_end_packets_are_lost() -> None:
    packets = [p for t in run_sender("9") for p in t]
    rx = TelephoneEventReceiver(timeout=0.25)
    without_end = [p for p in packets if not TelephoneEvent.parse(p.payload).end]
    assert feed(rx, without_end) == []
    last = (len(without_end) - 1) * 0.02
    assert rx.next_deadline() == pytest.approx(last + 0.25)
    assert rx.poll(last + 0.2) == []
    (ev,) = rx.poll(last + 0.25)
    assert (ev.digit, ev.ended_by, ev.duration) == ("9", "timeout", 640)
    assert rx.poll(last + 1) == []
    # end packets arriving after the timeout do not report the digit again
    assert feed(rx, packets[-3:], t0=last + 1) == []


def test_receiver_new_event_supersedes_one_without_end() -> None:
    first = [p for t in run_sender("1") for p in t][:3]
    second = [
        EventPacket(p.payload, p.timestamp + 2000, p.marker) for t in run_sender("2") for p in t
    ]
    rx = TelephoneEventReceiver()
    got = [
        (e.digit, e.ended_by) for p in first + second for e in rx.receive(p.payload, p.timestamp, 0)
    ]
    assert got == [("1", "superseded"), ("2", "end")]


def test_receiver_flash_and_ignores_non_dtmf_events() -> None:
    rx = TelephoneEventReceiver()
    assert [e.digit for e in rx.receive(bytes(TelephoneEvent(16, True, 10, 800)), 100, 0)] == ["!"]
    assert rx.receive(bytes(TelephoneEvent(32, True, 10, 800)), 900, 0) == []  # fax ANS, not a key


@settings(deadline=None)  # a shared, loaded machine: judge results, not speed
@given(
    digits=st.text(alphabet="0123456789*#ABCD!", min_size=1, max_size=6),
    data=st.data(),
)
def test_any_loss_pattern_reports_each_digit_at_most_once_and_in_order(
    digits: str, data: st.DataObject
) -> None:
    ticks = run_sender(digits, 60, 60)
    packets = [p for t in ticks for p in t]
    keep = data.draw(st.lists(st.booleans(), min_size=len(packets), max_size=len(packets)))
    rx = TelephoneEventReceiver()
    got: list[str] = []
    t = 0.0
    for p, k in zip(packets, keep, strict=True):
        t += 0.02
        got += [e.digit for e in rx.poll(t)]
        if k:
            got += [e.digit for e in rx.receive(p.payload, p.timestamp, t)]
    got += [e.digit for e in rx.poll(t + 1)]
    # a digit is reported iff at least one of its packets arrived
    arrived: list[tuple[int, str | None]] = []
    for p, k in zip(packets, keep, strict=True):
        if k and (not arrived or arrived[-1][0] != p.timestamp):
            arrived.append((p.timestamp, TelephoneEvent.parse(p.payload).digit))
    assert got == [d for _, d in arrived]
