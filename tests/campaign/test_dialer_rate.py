"""The dialer delivers the calls/second it is asked for.

The pacing core is pure (:class:`Pacer`, given ``now``), so most of this file drives it
through simulated time: 10,000 calls with random per-call latencies, stalls, bursts. No
test here depends on how fast the machine is; the one dialer run at the end checks the
guarantees the pacing must keep (attempt row committed before the call, channels, no
attempt placed twice, no call before its slot), not its speed.
"""

from __future__ import annotations

import asyncio
import bisect
import copy
import itertools
import random
from collections import Counter
from pathlib import Path

import pytest
from conftest import write_campaign

from autocall.campaign import dialer
from autocall.campaign.contacts import import_campaign
from autocall.campaign.dialer import (
    CATCH_UP,
    CallRequest,
    CallResult,
    Pacer,
    default_burst,
    run_campaign,
)
from autocall.campaign.model import CallStatus, load_campaign
from autocall.campaign.store import Store

RATE = 50.0
N = 10_000
EPS = 1e-9


def loop_lag(rng: random.Random, worst: float) -> float:
    """How late a sleeping dialer wakes for a slot: mostly a millisecond or two, now and
    then ``worst`` at most (a burst of SIP traffic or a GC pause holding the loop)."""
    if rng.random() < 0.08:
        return rng.uniform(0.005, worst)
    return rng.uniform(0.0, 0.002)


BATCH = 12  # calls claimed per transaction (CLAIM_AHEAD at 50/s)


def drive(pacer: Pacer, lags: list[float], stalls: dict[int, float] | None = None,
          claim: float = 0.0, t0: float = 1000.0) -> tuple[list[float], list[float]]:
    """Run the dialer's loop on simulated time, as ``_Driver`` does it.

    Every ``BATCH`` calls a claim transaction takes ``claim`` seconds. Each call then
    reserves a slot; a slot in the future is slept for and the loop wakes ``lags[k]``
    late; a slot already past starts at once (the driver does not yield). ``stalls[k]``
    is idle time before call ``k`` (nothing due, channels full). Returns (due times,
    actual starts).
    """
    now = t0
    dues: list[float] = []
    starts: list[float] = []
    for k, lag in enumerate(lags):
        now += (stalls or {}).get(k, 0.0)
        if k % BATCH == 0:
            now += claim
        due = pacer.slot(now)
        if due > now:
            now = due + lag
        dues.append(due)
        starts.append(now)
    return dues, starts


def busiest_second(starts: list[float]) -> int:
    """The most starts in any one-second window [t, t + 1)."""
    return max(bisect.bisect_left(starts, t + 1.0) - i for i, t in enumerate(starts))


def test_due_times_stay_on_the_grid_whatever_each_call_costs() -> None:
    rng = random.Random(50)
    pacer = Pacer(RATE)
    lags = [loop_lag(rng, worst=0.06) for _ in range(N)]
    dues, starts = drive(pacer, lags, claim=0.02)
    t0 = dues[0]
    assert starts[0] == t0 == 1000.02  # the first call is due when reserved, no burst
    worst = max(abs(d - (t0 + k / RATE)) for k, d in enumerate(dues))
    assert worst < EPS  # call k due at t0 + k / rate: no drift over 10,000 calls
    assert all(s >= d for s, d in zip(starts, dues, strict=True))  # never early
    rate = (N - 1) / (starts[-1] - starts[0])
    assert rate == pytest.approx(RATE, rel=0.01)
    assert (starts[-1] - t0) - (N - 1) / RATE <= CATCH_UP + EPS  # 10,000 calls, ≤ 0.1 s late
    assert busiest_second(starts) <= RATE + pacer.burst - 1


def test_a_one_slot_catch_up_loses_the_time_the_loop_is_late() -> None:
    # What the dialer did before: a late start could be caught up by one slot only, so
    # every lag beyond one interval moved all later calls back. Same lags as above.
    rng = random.Random(50)
    lags = [loop_lag(rng, worst=0.06) for _ in range(N)]
    _, starts = drive(Pacer(RATE, burst=2), lags, claim=0.02)
    assert (N - 1) / (starts[-1] - starts[0]) < 0.99 * RATE


def test_a_stall_releases_at_most_burst_calls_then_the_grid_resumes() -> None:
    pacer = Pacer(RATE)
    b = pacer.burst
    quiet = [0.0] * 3000
    dues, starts = drive(pacer, quiet, stalls={1000: 5.0})
    before, after = dues[:1000], dues[1000:]
    resumed = before[-1] + 5.0  # when the loop came back after the stall
    # burst calls are due at once (their slots at or before `resumed`), then one per slot
    assert [s for s in starts[1000:] if s <= resumed + EPS] == [resumed] * b
    assert after[0] == pytest.approx(resumed - (b - 1) / RATE)
    worst = max(abs(d - (after[0] + k / RATE)) for k, d in enumerate(after))
    assert worst < EPS  # the new grid is drift-free too
    assert busiest_second(starts) <= RATE + b - 1
    # the credit is bounded: the 5 s stall bought burst - 1 slots back, not 250
    assert starts[-1] == pytest.approx(resumed + (len(after) - 1 - (b - 1)) / RATE)


def test_stalls_and_long_lags_never_make_calls_early_or_crowded() -> None:
    rng = random.Random(7)
    pacer = Pacer(RATE)
    lags = [loop_lag(rng, worst=0.5) for _ in range(N)]  # some far beyond CATCH_UP
    stalls = {k: rng.uniform(0.0, 3.0) for k in rng.sample(range(N), 100)}
    dues, starts = drive(pacer, lags, stalls, claim=0.02)
    gaps = [b - a for a, b in itertools.pairwise(dues)]
    assert min(gaps) >= 1 / RATE - EPS  # due times never closer than one interval
    assert all(s >= d for s, d in zip(starts, dues, strict=True))
    # burst - 1 slots caught up, plus one call whose sleep overshot into the window
    assert busiest_second(starts) <= RATE + pacer.burst
    # A call reserved late is released at most burst - 1 slots after its due time.
    assert max(s - d for s, d in zip(starts, dues, strict=True)) <= (
        (pacer.burst - 1) / RATE + 0.5 + EPS)  # + the worst wake-up lag


def test_free_counts_the_slots_slot_would_hand_out() -> None:
    rng = random.Random(3)
    pacer = Pacer(RATE)
    now = 0.0
    for _ in range(2000):
        now += rng.choice([0.0, 0.001, 0.02, 0.05, 0.3, 2.0])
        horizon = rng.choice([0.0, 0.01, 0.25, 1.0])
        trial = copy.deepcopy(pacer)
        fits = 0
        while trial.slot(now) <= now + horizon + EPS:
            fits += 1
        assert pacer.free(now, horizon) == fits
        assert pacer.due(now) == copy.deepcopy(pacer).slot(now)
        for _ in range(rng.randint(0, fits)):
            pacer.slot(now)


@pytest.mark.parametrize("rate", [0.5, 1, 5, 10, 50, 60, 200, 1000])
def test_default_burst_absorbs_catch_up_seconds_of_lateness(rate: float) -> None:
    burst = default_burst(rate)
    assert burst >= 2
    assert (burst - 1) / rate >= CATCH_UP - EPS
    assert burst - 1 <= rate * CATCH_UP + 1  # and not more than that


def test_pacer_rejects_a_rate_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Pacer(0.0)


async def test_dialer_keeps_its_guarantees_while_catching_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A placer that holds the loop now and then makes the dialer start calls late and
    catch up; it must still commit each attempt row before its call, keep to the
    channels, place each attempt once, and start no call before its slot."""
    url = f"sqlite:///{tmp_path / 'campaign.db'}"
    n, channels = 120, 6
    campaign = load_campaign(write_campaign(tmp_path, n, channels=channels,
                                            calls_per_second=100))
    store = Store(url)
    import_campaign(store, campaign)
    reader = Store(url)  # a second connection: sees only committed rows

    dues: list[float] = []

    class RecordingPacer(Pacer):
        def slot(self, now: float) -> float:
            due = super().slot(now)
            dues.append(due)
            return due

    monkeypatch.setattr(dialer, "Pacer", RecordingPacer)
    loop = asyncio.get_running_loop()
    rng = random.Random(11)
    starts: list[float] = []
    placed: list[CallRequest] = []
    committed: list[bool] = []
    active = peak = 0

    class LaggyCallee:
        async def place(self, request: CallRequest) -> CallResult:
            nonlocal active, peak
            starts.append(loop.time())
            placed.append(request)
            ids = {a.id for a in reader.attempts(campaign.name, request.contact_id)}
            committed.append(request.attempt_id in ids)
            active += 1
            peak = max(peak, active)
            try:
                if rng.random() < 0.1:
                    block_until = loop.time() + rng.uniform(0.005, 0.03)
                    while loop.time() < block_until:  # the loop is held: later calls lag
                        pass
                await asyncio.sleep(rng.uniform(0.01, 0.08))
            finally:
                active -= 1
            return CallResult(CallStatus.COMPLETED, 200)

    try:
        await asyncio.wait_for(run_campaign(campaign.name, store, LaggyCallee(), poll=0.05), 60)
    finally:
        reader.close()
    assert len(placed) == n and all(committed)
    assert peak <= channels
    assert max(Counter((r.contact_id, r.attempt_no) for r in placed).values()) == 1
    assert len(set(r.attempt_id for r in placed)) == n
    assert len(dues) == n
    assert all(s >= d - 1e-6 for s, d in zip(starts, dues, strict=True))
    assert all(b - a >= 1 / 100 - 1e-6 for a, b in itertools.pairwise(dues))
    store.close()
