"""Pacing clock arithmetic on a fake clock: no drift, late wake-ups do not accumulate."""

from __future__ import annotations

import asyncio
import logging
import random
import time

import pytest

from autocall.media.clock import Behind, LatenessWatch, MediaEngine, PacingClock


def test_no_drift_after_a_million_frames() -> None:
    clock = PacingClock(0.02)
    t0 = 1234.5678
    clock.add("a", t0)
    frames = 0
    rng = random.Random(5)
    now = t0
    while frames < 1_000_000:
        deadline = clock.next_deadline()
        assert deadline is not None
        # wake up late by up to 3 ms, as a busy event loop does
        now = max(now, deadline + rng.random() * 0.003)
        due = clock.due(now)
        assert due == [("a", frames)]
        frames += 1
    # frame n is due at t0 + n*20 ms exactly, however late each wake-up was
    assert clock.deadline("a") == pytest.approx(t0 + 1_000_000 * 0.02, abs=1e-6)
    assert clock.skipped == 0


def test_late_wakeup_delays_frames_but_not_the_schedule() -> None:
    clock = PacingClock(0.02, max_burst=5)
    clock.add("a", 0.0)
    assert clock.due(0.0) == [("a", 0)]
    assert clock.due(0.019) == []
    # 50 ms late: the owed frames go out together, the next one is still at 80 ms
    assert clock.due(0.07) == [("a", 1), ("a", 2), ("a", 3)]
    assert clock.next_deadline() == pytest.approx(0.08)


def test_a_long_stall_skips_frames_instead_of_bursting() -> None:
    clock = PacingClock(0.02, max_burst=3)
    clock.add("a", 0.0)
    clock.due(0.0)
    assert clock.due(1.0) == [("a", 48), ("a", 49), ("a", 50)]
    assert clock.skipped == 47
    assert clock.next_deadline() == pytest.approx(1.02)


def test_many_streams_one_deadline_order() -> None:
    clock = PacingClock(0.02)
    for i in range(500):
        clock.add(i, i * 0.00004)  # calls started at different moments
    assert len(clock) == 500
    first = clock.due(0.02)
    # every stream's frame 0 plus the early streams' frame 1, in deadline order
    assert [k for k, n in first if n == 0] == list(range(500))
    assert [k for k, n in first if n == 1] == [0]
    clock.remove(0)
    assert 0 not in clock
    nxt = clock.next_deadline()
    assert nxt == pytest.approx(0.02 + 0.00004)
    assert all(k != 0 for k, _ in clock.due(10.0))


def test_stream_can_resume_its_frame_count() -> None:
    clock = PacingClock(0.02)
    clock.add("a", 5.0, first_frame=100)
    assert clock.due(5.0) == [("a", 100)]
    assert clock.next_deadline() == pytest.approx(5.02)
    with pytest.raises(ValueError, match="already"):
        clock.add("a", 6.0)


def test_random_starts_share_one_wakeup_per_phase_slot() -> None:
    rng = random.Random(1)
    clock = PacingClock(0.02, phases=4)
    for i in range(300):
        clock.add(i, clock.quietest_start(1000 + rng.random() * 60))  # calls begin at random
    wakeups = 0
    now = 1061.0
    clock.due(now)
    while (when := clock.next_deadline()) is not None and when < now + 0.2:
        clock.due(when)
        wakeups += 1
    assert wakeups <= 4 * 10 + 1  # four phases per 20 ms frame over 200 ms


def test_calls_started_together_are_spread_evenly_over_the_frame() -> None:
    clock = PacingClock(0.02, phases=8)
    for i in range(500):
        clock.add(i, clock.quietest_start(1000.0003 + i * 1e-5))  # a burst of answers
    clock.due(1000.03)
    first_wakeup = clock.next_deadline()
    per_wakeup = []
    for _ in range(8):
        when = clock.next_deadline()
        assert when is not None
        per_wakeup.append(len(clock.due(when)))
    assert clock.next_deadline() == pytest.approx(first_wakeup + 0.02)  # 8 wake-ups a frame
    assert max(per_wakeup) - min(per_wakeup) <= 1  # 62 or 63 calls per slot, not 500 at once
    for i in range(0, 500, 2):
        clock.remove(i)  # calls that end free their slot for the next ones
    assert max(clock._per_phase) - min(clock._per_phase) <= 1
    first = clock.quietest_start(1000.0)
    assert 1000.0 <= first < 1000.02


def test_quietest_start_never_lies_in_the_past() -> None:
    clock = PacingClock(0.02, phases=8)
    for now in (0.0, 0.0024, 5.01999, 123.456789):
        t = clock.quietest_start(now)
        assert now - 1e-6 <= t < now + 0.02


def test_lateness_is_how_long_after_its_deadline_the_earliest_frame_was_served() -> None:
    clock = PacingClock(frame=0.02)
    clock.add("a", 0.0)
    clock.add("b", 0.005)
    assert clock.due(0.0) == [("a", 0)] and clock.lateness == 0.0
    assert clock.due(0.041) == [("b", 0), ("b", 1), ("a", 1), ("a", 2)]
    assert clock.lateness == pytest.approx(0.036)  # b's frame 0 waited since 0.005
    assert clock.due(0.06) == [("b", 2), ("a", 3)]
    assert clock.lateness == pytest.approx(0.015)
    assert clock.due(0.065) == [("b", 3)] and clock.lateness == pytest.approx(0.0)
    assert clock.due(0.07) == [] and clock.lateness == 0.0


def _wakeups(
    watch: LatenessWatch, start: float, seconds: float, late_every: int = 0,
    lateness: float = 0.015, skipped: int = 0,
) -> list[Behind]:
    """Wake-ups every 2.5 ms (8 phases of 20 ms); every ``late_every``-th one late."""
    reports = []
    for i in range(round(seconds / 0.0025)):
        late = lateness if late_every and i % late_every == 0 else 0.0001
        report = watch.observe(late, skipped, start + i * 0.0025)
        if report is not None:
            reports.append(report)
    return reports


def test_a_few_late_wakeups_are_no_news_a_late_share_is() -> None:
    watch = LatenessWatch(window=10.0, share=0.01, quiet=60.0)
    assert _wakeups(watch, 0.0, 20.0, late_every=200) == []  # 0.5 % late
    [report] = _wakeups(watch, 20.0, 10.01, late_every=50)  # 2 % late
    assert report.late == 80 and report.wakeups == 4000
    assert report.worst == pytest.approx(0.015) and report.skipped == 0
    assert report.window == pytest.approx(10.0)


def test_a_report_is_followed_by_a_quiet_minute_then_the_next() -> None:
    watch = LatenessWatch(window=10.0, share=0.01, quiet=60.0)
    reports = _wakeups(watch, 0.0, 100.0, late_every=10)
    assert [round(r.window) for r in reports] == [10, 10]
    assert [r.late / r.wakeups for r in reports] == pytest.approx([0.1, 0.1], abs=0.001)
    assert reports[1].window == pytest.approx(10.0)  # windows at 0-10 s and 70-80 s


def test_skipped_frames_are_reported_however_few_late_wakeups() -> None:
    watch = LatenessWatch(window=10.0)
    assert _wakeups(watch, 0.0, 10.01, skipped=0) == []
    [report] = _wakeups(watch, 10.01, 10.01, skipped=3)  # the count went from 0 to 3
    assert report.skipped == 3 and report.late == 0


def test_a_time_without_calls_starts_a_new_window_a_stall_does_not() -> None:
    watch = LatenessWatch(window=10.0, share=0.01)
    assert _wakeups(watch, 0.0, 5.0, late_every=10) == []  # 10 % late, window not over
    # No wake-ups for a minute (no calls), then on time again: the late ones are forgotten.
    assert _wakeups(watch, 65.0, 10.01) == []
    # A 30 s stall: its one wake-up comes 30 s late and the clock skipped frames. The
    # window it ends is reported at once.
    report = watch.observe(30.0, 1495, 105.0)
    assert report is not None and report.worst == 30.0 and report.skipped == 1495
    assert report.late == 1


def test_the_engine_warns_when_its_calls_cannot_be_paced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stream whose frames take 30 ms of every 20: the clock falls behind, skips, and
    the engine says so in its log with how many calls it carries."""

    async def run() -> None:
        engine = MediaEngine(lateness_watch=LatenessWatch(window=0.5, quiet=60.0))
        engine.add_stream(lambda n: time.sleep(0.03))
        engine.add_stream(lambda n: None)
        await asyncio.sleep(1.2)
        engine.close()

    with caplog.at_level(logging.WARNING, logger="autocall.media.clock"):
        asyncio.run(run())
    [warning] = [r.getMessage() for r in caplog.records if "media clock behind" in r.message]
    assert "(calls in this process: 2)" in warning
    assert "frames were skipped" in warning and "--workers" in warning
