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
from farend import ScriptedFarEnd

from autocall.campaign import dialer
from autocall.campaign.contacts import import_campaign
from autocall.campaign.dialer import CATCH_UP, CallRequest, Pacer, run_campaign
from autocall.campaign.model import CallStatus, CampaignState, load_campaign
from autocall.campaign.store import Store
from autocall.telephony.record import CallRecord

RATE = 50.0
N = 10_000
EPS = 1e-9


def loop_lag(rng: random.Random, worst: float = 0.06, freeze: float = 0.4) -> float:
    """How late a sleeping dialer wakes for a slot: mostly a millisecond or two, now and
    then up to ``worst`` (a burst of SIP traffic), rarely up to ``freeze`` (a full
    garbage collection, the process descheduled)."""
    x = rng.random()
    if x < 0.003:
        return rng.uniform(0.1, freeze)
    if x < 0.08:
        return rng.uniform(0.005, worst)
    return rng.uniform(0.0, 0.002)


BATCH = 12  # calls claimed per transaction (CLAIM_AHEAD at 50/s)


def drive(pacer: Pacer, lags: list[float], stalls: dict[int, float] | None = None,
          claim: float = 0.0, idle: bool = True, t0: float = 1000.0
          ) -> tuple[list[float], list[float]]:
    """Run the dialer's loop on simulated time, as ``_Driver`` does it.

    Every ``BATCH`` calls a claim transaction takes ``claim`` seconds. Each call then
    reserves a slot; a slot in the future is slept for and the loop wakes ``lags[k]``
    late; a slot already past starts at once (the driver does not yield). ``stalls[k]``
    is time with nothing to dial before call ``k`` (told to the pacer when ``idle``).
    Returns (due times, actual starts).
    """
    now = t0
    dues: list[float] = []
    starts: list[float] = []
    for k, lag in enumerate(lags):
        if stalls and k in stalls:
            if idle:
                pacer.idle()
            now += stalls[k]
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


def at_once(starts: list[float], k: int) -> int:
    """How many calls from call ``k`` on start at the same instant as it."""
    return sum(1 for s in starts[k:k + 1000] if s <= starts[k] + EPS)


def test_due_times_stay_on_the_grid_whatever_each_call_costs() -> None:
    rng = random.Random(50)
    pacer = Pacer(RATE)
    lags = [loop_lag(rng) for _ in range(N)]
    assert max(lags) > 0.3  # the loop froze now and then
    dues, starts = drive(pacer, lags, claim=0.02)
    t0 = dues[0]
    assert starts[0] == t0 == 1000.02  # the first call is due when reserved, no burst
    worst = max(abs(d - (t0 + k / RATE)) for k, d in enumerate(dues))
    assert worst < EPS  # call k due at t0 + k / rate: no drift over 10,000 calls
    assert all(s >= d for s, d in zip(starts, dues, strict=True))  # never early
    rate = (N - 1) / (starts[-1] - starts[0])
    assert rate == pytest.approx(RATE, rel=0.001)
    # What a late loop owes goes at once when it is back, never more than catch_up's worth.
    assert busiest_second(starts) <= RATE * (1 + CATCH_UP) + 2


def test_catching_up_one_slot_only_loses_the_time_the_loop_is_late() -> None:
    # What the dialer did before: a late start could be caught up by one slot only, so
    # every lag beyond one interval moved all later calls back. Same lags as above.
    rng = random.Random(50)
    lags = [loop_lag(rng) for _ in range(N)]
    _, starts = drive(Pacer(RATE, burst=2, catch_up=1 / RATE), lags, claim=0.02)
    assert (N - 1) / (starts[-1] - starts[0]) < 0.99 * RATE


@pytest.mark.parametrize("burst", [1, 2, 5])
def test_after_idle_time_at_most_burst_calls_go_at_once(burst: int) -> None:
    pacer = Pacer(RATE, burst=burst)
    dues, starts = drive(pacer, [0.0] * 3000, stalls={1000: 5.0})
    resumed = dues[999] + 5.0  # when there was work again
    assert at_once(starts, 1000) == burst
    assert starts[1000] == resumed
    after = dues[1000:]
    assert after[0] == pytest.approx(resumed - (burst - 1) / RATE)
    worst = max(abs(d - (after[0] + k / RATE)) for k, d in enumerate(after))
    assert worst < EPS  # the grid goes on from there, drift-free
    assert busiest_second(starts) <= RATE + burst - 1
    # the 5 s without work bought burst - 1 slots back, not 250
    assert starts[-1] == pytest.approx(resumed + (len(after) - burst) / RATE)


def test_a_busy_loop_frozen_for_long_owes_at_most_catch_up() -> None:
    pacer = Pacer(RATE)
    dues, starts = drive(pacer, [0.0] * 3000, stalls={1000: 5.0}, idle=False)
    owed = int(CATCH_UP * RATE) + 1
    assert at_once(starts, 1000) == owed
    assert busiest_second(starts) <= RATE + owed
    assert all(b - a >= 1 / RATE - EPS for a, b in itertools.pairwise(dues))


def test_stalls_and_long_lags_never_make_calls_early_or_crowded() -> None:
    rng = random.Random(7)
    pacer = Pacer(RATE)
    lags = [loop_lag(rng, worst=0.1, freeze=2.0) for _ in range(N)]  # some beyond CATCH_UP
    stalls = {k: rng.uniform(0.0, 3.0) for k in rng.sample(range(N), 100)}
    dues, starts = drive(pacer, lags, stalls, claim=0.02)
    assert all(b - a >= 1 / RATE - EPS for a, b in itertools.pairwise(dues))
    assert all(s >= d for s, d in zip(starts, dues, strict=True))
    assert busiest_second(starts) <= RATE * (1 + CATCH_UP) + 2
    assert max(at_once(starts, k) for k in stalls) <= pacer.burst


def test_free_counts_the_slots_slot_would_hand_out() -> None:
    rng = random.Random(3)
    pacer = Pacer(RATE)
    now = 0.0
    for _ in range(2000):
        now += rng.choice([0.0, 0.001, 0.02, 0.05, 0.3, 2.0])
        if rng.random() < 0.2:
            pacer.idle()
        horizon = rng.choice([0.0, 0.01, 0.25, 1.0])
        trial = copy.deepcopy(pacer)
        fits = 0
        while trial.slot(now) <= now + horizon + EPS:
            fits += 1
        assert pacer.free(now, horizon) == fits
        assert pacer.due(now) == copy.deepcopy(pacer).slot(now)
        for _ in range(rng.randint(0, fits)):
            pacer.slot(now)


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
        async def place(self, request: CallRequest) -> CallRecord:
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
            return CallRecord(CallStatus.COMPLETED, 200)

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


async def test_a_resumed_campaign_starts_with_at_most_burst_calls(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dialer tells the pacer when it has nothing to dial: a pause longer than
    CATCH_UP is not owed, so the resume opens with ``burst`` calls, not a second's
    worth."""
    url = f"sqlite:///{tmp_path / 'campaign.db'}"
    campaign = load_campaign(write_campaign(tmp_path, 60, channels=30, calls_per_second=20))
    store = Store(url)
    import_campaign(store, campaign)
    other = Store(url)
    slots: list[tuple[float, float]] = []  # (when reserved, due)
    pacers: list[Pacer] = []

    class RecordingPacer(Pacer):
        def __init__(self, *args: float, **kw: float) -> None:
            super().__init__(*args, **kw)
            pacers.append(self)

        def slot(self, now: float) -> float:
            due = super().slot(now)
            slots.append((now, due))
            return due

    monkeypatch.setattr(dialer, "Pacer", RecordingPacer)
    far = ScriptedFarEnd(talk=0.01)
    task = asyncio.create_task(run_campaign(campaign.name, store, far, poll=0.02))
    try:
        async with asyncio.timeout(30):
            while len(far.placed) < 5:
                await asyncio.sleep(0.005)
            other.set_state(campaign.name, CampaignState.PAUSED, "test")
            await asyncio.sleep(CATCH_UP + 0.7)
            before = len(slots)
            other.set_state(campaign.name, CampaignState.RUNNING, "test")
            await task
    finally:
        other.close()
        task.cancel()
    assert len(far.placed) == 60
    (pacer,) = pacers
    reserved, due = slots[before]  # the first call after the resume
    assert reserved - slots[before - 1][0] > CATCH_UP  # the pause lasted longer than that
    assert due >= reserved - (pacer.burst - 1) / 20 - EPS
    assert sum(1 for _, d in slots[before:] if d <= reserved + EPS) <= pacer.burst
    store.close()
