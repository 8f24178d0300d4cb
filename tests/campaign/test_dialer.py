"""The dialer against a scripted far end: retries by outcome, limits, steering, DNC."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import us_number, write_campaign

from autocall.campaign.contacts import import_campaign
from autocall.campaign.dialer import Progress, run_campaign
from autocall.campaign.model import CampaignState, ContactState, Outcome, load_campaign
from autocall.campaign.store import Store


async def _until(condition: Callable[[], bool], timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def _setup(tmp_path: Path, url: str, n: int = 10, **overrides: object) -> tuple[Store, str]:
    campaign = load_campaign(write_campaign(tmp_path, n, **overrides))
    store = Store(url)
    import_campaign(store, campaign)
    return store, campaign.name


async def test_retry_by_outcome(tmp_path: Path, sqlite_url: str, farend) -> None:
    store, name = _setup(tmp_path, sqlite_url, n=8)
    scripts = {
        us_number(0): ["busy", "busy", "answer:2"],
        us_number(1): ["noanswer", "answer:1"],
        us_number(2): ["decline"],
        us_number(3): ["invalid"],
        us_number(4): ["busy", "busy", "busy", "answer:1"],
        us_number(5): ["answer:3"],
        us_number(6): ["early", "answer:1"],
        us_number(7): ["unreachable", "fail", "answer:1"],
    }
    far = farend(scripts)
    final = await run_campaign(name, store, far, poll=0.05)
    assert final.state is CampaignState.COMPLETED
    calls = Counter(r.number for r in far.placed)
    assert calls == {us_number(0): 3, us_number(1): 2, us_number(2): 1, us_number(3): 1,
                     us_number(4): 3, us_number(5): 1, us_number(6): 2, us_number(7): 3}
    by_number = {c.number: c for c in store.contacts(name)}
    assert by_number[us_number(2)].last_outcome is Outcome.DECLINED
    assert by_number[us_number(3)].last_outcome is Outcome.INVALID
    assert by_number[us_number(4)].last_outcome is Outcome.BUSY  # max_attempts = 3
    assert by_number[us_number(6)].last_outcome is Outcome.COMPLETED
    assert all(c.state is ContactState.DONE for c in by_number.values())
    rows = store.attempts(name)
    assert len(rows) == sum(calls.values())
    assert all(a.ended_at is not None for a in rows)
    assert sorted((a.contact_id, a.attempt_no) for a in rows) == sorted(
        set((a.contact_id, a.attempt_no) for a in rows))


async def test_channels_and_rate_bound(tmp_path: Path, sqlite_url: str, farend) -> None:
    store, name = _setup(tmp_path, sqlite_url, n=12, channels=3, calls_per_second=40)
    far = farend(talk=0.15)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await run_campaign(name, store, far, poll=0.05)
    elapsed = loop.time() - t0
    assert len(far.placed) == 12
    assert far.max_active == 3
    # 12 calls at 40/s: the 12th is due 11 intervals after the first (no burst at start).
    assert elapsed >= 11 / 40


async def test_pause_resume_stop_from_second_connection(tmp_path: Path, sqlite_url: str,
                                                        farend) -> None:
    store, name = _setup(tmp_path, sqlite_url, n=30, channels=1)
    far = farend(talk=0.05)
    other = Store(sqlite_url)  # "another terminal"
    seen: list[Progress] = []
    task = asyncio.create_task(run_campaign(name, store, far, poll=0.02,
                                            progress=seen.append))
    await _until(lambda: len(far.placed) >= 3)
    assert other.set_state(name, CampaignState.PAUSED, "supervisor")
    await _until(lambda: "paused (supervisor)" in (seen[-1].idle or ""))  # it says why
    paused_at = len(far.placed)
    await asyncio.sleep(0.4)
    assert len(far.placed) == paused_at  # nothing new dialed while paused
    other.set_state(name, CampaignState.RUNNING, "resumed")
    await _until(lambda: len(far.placed) >= paused_at + 3)
    other.set_state(name, CampaignState.STOPPED, "supervisor")
    final = await asyncio.wait_for(task, 5)
    assert final.state is CampaignState.STOPPED
    assert len(far.placed) < 30
    # Every call that was placed has a finished record.
    assert all(a.ended_at is not None for a in store.attempts(name))
    assert len(store.attempts(name)) == len(far.placed)


async def test_dnc_checked_at_dial_time(tmp_path: Path, sqlite_url: str, farend) -> None:
    store, name = _setup(tmp_path, sqlite_url, n=20, channels=1)
    dnc = tmp_path / "dnc.txt"
    late = us_number(19)
    far = farend(talk=0.03)
    task = asyncio.create_task(run_campaign(name, store, far, poll=0.02))
    await _until(lambda: len(far.placed) >= 2)
    dnc.write_text(f"{late}\n# added while the campaign runs\n", encoding="utf-8")
    await asyncio.wait_for(task, 10)
    assert late not in {r.number for r in far.placed}
    contact = store.contact_by_number(name, late)
    assert contact is not None and contact.last_outcome is Outcome.DNC
    assert len(far.placed) == 19


async def test_opt_out_joins_dnc_file(tmp_path: Path, sqlite_url: str, farend) -> None:
    store, name = _setup(tmp_path, sqlite_url, n=3)
    far = farend({us_number(1): ["optout"]})
    await run_campaign(name, store, far, poll=0.05)
    assert us_number(1) in (tmp_path / "dnc.txt").read_text()
    assert store.on_dnc(us_number(1)) and not store.on_dnc(us_number(0))
    contact = store.contact_by_number(name, us_number(1))
    assert contact is not None and contact.last_outcome is Outcome.OPTED_OUT


async def test_idle_reason_when_window_closed(tmp_path: Path, sqlite_url: str, farend) -> None:
    # Weekday-only window and a clock fixed on a Sunday: nothing may be dialed.
    store, name = _setup(tmp_path, sqlite_url, n=3,
                         window={"days": ["mon"], "start": "09:00", "end": "17:00"})
    sunday = datetime(2026, 3, 8, 15, 0, tzinfo=UTC)
    far = farend()
    seen: list[Progress] = []
    give_up = asyncio.get_running_loop().time() + 15

    def stop() -> bool:
        said_why = bool(seen) and "calling window" in (seen[-1].idle or "")
        return said_why or asyncio.get_running_loop().time() > give_up

    await run_campaign(name, store, far, poll=0.05, progress=seen.append, clock=lambda: sunday,
                       stop=stop)
    assert far.placed == []
    idle = [p.idle for p in seen if p.idle]
    assert idle and "calling window" in idle[-1]
    contact = store.contact_by_number(name, us_number(0))
    assert contact is not None and contact.next_at == datetime(2026, 3, 9, 13, 0, tzinfo=UTC)
    assert contact.wait_reason is not None and "America/New_York Sun 11:00 closed" in (
        contact.wait_reason)


async def test_start_and_end_dates_run_as_scheduler_jobs(tmp_path: Path, sqlite_url: str,
                                                         farend) -> None:
    from datetime import timedelta

    from sqlalchemy import inspect

    store, name = _setup(tmp_path, sqlite_url, n=200, channels=1)
    now = datetime.now(UTC)
    start, end = now + timedelta(seconds=1.5), now + timedelta(seconds=3.0)
    campaign = store.campaign(name)[0].model_copy(update={"start_at": start, "end_at": end})
    far = farend(talk=0.05)
    states: list[CampaignState] = []
    final = await asyncio.wait_for(
        run_campaign(campaign, store, far, poll=0.05,
                     progress=lambda p: states.append(p.state)), 30)
    assert states[0] is CampaignState.SCHEDULED
    assert final.state is CampaignState.STOPPED
    assert store.state(name) == (CampaignState.STOPPED, "end_at reached")
    attempts = store.attempts(name)
    assert 0 < len(attempts) < 200
    assert min(a.created_at for a in attempts) >= start
    assert max(a.created_at for a in attempts) <= end + timedelta(seconds=1)
    assert inspect(store.engine).has_table("autocall_scheduler_jobs")


def test_pacer_holds_rate_and_catches_up_at_most_burst() -> None:
    from autocall.campaign.dialer import Pacer

    pacer = Pacer(10.0, burst=2)
    starts = [max(pacer.slot(0.0), 0.0) for _ in range(30)]  # a past slot means "now"
    assert starts[:3] == pytest.approx([0.0, 0.1, 0.2])  # the first call at once, no burst
    assert starts[-1] == pytest.approx(2.9)  # 30 starts span 29 intervals
    # A dialer idle for 5 s gets one extra slot right away, not a burst of 50.
    pacer.idle()
    late = [pacer.slot(10.0) for _ in range(3)]
    assert late[0] == pytest.approx(9.9) and late[1] == pytest.approx(10.0)
    assert late[2] == pytest.approx(10.1)
    assert pacer.free(10.1, horizon=0.25) == 2


@pytest.mark.parametrize(("policy", "redialed"), [("retry", True), ("give-up", False)])
async def test_restart_resolves_in_flight_attempts_by_policy(
        tmp_path: Path, sqlite_url: str, farend, policy: str, redialed: bool) -> None:
    from autocall.campaign.model import Dial

    store, name = _setup(tmp_path, sqlite_url, n=2, on_restart=policy)
    # A dialer that claimed a contact and died before the call ended.
    store.heartbeat(name, "node-x", datetime.now(UTC), 1, "dialing")
    (lost,) = store.claim(name, "node-x", datetime.now(UTC), 1,
                          lambda c: Dial(c.id, "+12025550100"))
    far = farend()
    await run_campaign(name, store, far, node="node-x", poll=0.02)
    (first, *later) = store.attempts(name, lost.contact.id)
    assert first.outcome is Outcome.INTERRUPTED and first.ended_at is not None
    assert [a.attempt_no for a in later] == ([2] if redialed else [])
    contact = store.contact_by_number(name, lost.contact.number)
    assert contact is not None and contact.state is ContactState.DONE
    assert contact.last_outcome is (Outcome.COMPLETED if redialed else Outcome.INTERRUPTED)


async def test_dnc_added_after_claim_stops_the_dial(tmp_path: Path, sqlite_url: str,
                                                    farend) -> None:
    # Both contacts are claimed in one batch; while the first call starts, the second
    # number joins the DNC file. The check right before the INVITE must catch it.
    store, name = _setup(tmp_path, sqlite_url, n=2, channels=2, calls_per_second=100)
    dnc = tmp_path / "dnc.txt"
    base = farend(talk=0.05)

    class ComplainingCallee:
        async def place(self, request):  # noqa: ANN001, ANN202
            if request.number == us_number(0):
                dnc.write_text(us_number(1) + "\n", encoding="utf-8")
            return await base.place(request)

    await run_campaign(name, store, ComplainingCallee(), poll=0.02)
    assert [r.number for r in base.placed] == [us_number(0)]
    contact = store.contact_by_number(name, us_number(1))
    assert contact is not None
    (attempt,) = store.attempts(name, contact.id)  # claimed (row written), never dialed
    assert attempt.outcome is Outcome.DNC and attempt.status.value == "canceled"
