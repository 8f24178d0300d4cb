"""Calling windows in the contact's own time zone (DST edges), holidays, DNC, jobs."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autocall.campaign.model import CallingWindow, Campaign, CampaignState
from autocall.campaign.schedule import (
    DncList,
    is_open,
    is_open_all,
    make_scheduler,
    next_open,
    schedule_campaign,
    zone,
)
from autocall.campaign.store import Store

EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
LEGAL = CallingWindow(days=EVERY_DAY)
NY = "America/New_York"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(("now", "opens"), [
    # Spring forward (2026-03-08): 08:00 is EDT, 12:00 UTC; EST would say 13:00.
    (utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 12, 0)),
    # Fall back (2026-11-01): 08:00 is EST again, 13:00 UTC.
    (utc(2026, 11, 1, 12, 30), utc(2026, 11, 1, 13, 0)),
    # 21:00 EDT is 01:00 UTC next day: at 01:00 UTC the window is closed until 12:00 UTC.
    (utc(2026, 7, 2, 1, 0), utc(2026, 7, 2, 12, 0)),
    (utc(2026, 7, 2, 0, 59), utc(2026, 7, 2, 0, 59)),
])
def test_legal_window_in_contact_zone_across_dst(now: datetime, opens: datetime) -> None:
    assert next_open(LEGAL, [NY], now) == opens
    assert is_open(LEGAL, zone(NY), opens)
    assert not is_open(LEGAL, zone(NY), opens - timedelta(minutes=1)) or opens == now


def test_window_start_inside_dst_gap_opens_when_clocks_jump() -> None:
    w = CallingWindow(days=EVERY_DAY, start=time(2, 30), end=time(5, 0),
                      override_legal_hours=True)
    # 2026-03-08 01:00 EST (06:00 UTC): the clock jumps 02:00 -> 03:00 at 07:00 UTC.
    assert next_open(w, [NY], utc(2026, 3, 8, 6, 0)) == utc(2026, 3, 8, 7, 0)


def test_every_candidate_zone_must_be_open() -> None:
    zones = ["America/Anchorage", "America/Adak"]  # UTC-9 and UTC-10 in winter
    now = utc(2026, 1, 14, 17, 0)  # 08:00 Anchorage, 07:00 Adak
    assert is_open(LEGAL, zone("America/Anchorage"), now)
    assert not is_open_all(LEGAL, zones, now)
    assert next_open(LEGAL, zones, now) == utc(2026, 1, 14, 18, 0)


def test_weekdays_and_holidays_are_local() -> None:
    w = CallingWindow(days=["mon", "tue", "wed", "thu", "fri"], holidays=[date(2026, 12, 25)])
    # Thursday 2026-12-24 23:30 in New York is Friday 04:30 UTC: still Thursday there.
    late_thursday = utc(2026, 12, 25, 4, 30)
    assert not is_open(w, zone(NY), late_thursday)  # after 21:00
    # Christmas is a holiday, then a weekend: the next opening is Monday 28th 08:00 EST.
    assert next_open(w, [NY], late_thursday) == utc(2026, 12, 28, 13, 0)
    # In Tokyo, Christmas morning is already a holiday; Saturday follows.
    assert next_open(w, ["Asia/Tokyo"], utc(2026, 12, 24, 23, 0)) == utc(2026, 12, 27, 23, 0)


def test_campaign_may_narrow_but_not_widen_without_override() -> None:
    assert CallingWindow(start=time(10, 0), end=time(18, 0)).start == time(10, 0)
    with pytest.raises(ValueError, match="override_legal_hours"):
        CallingWindow(start=time(7, 0), end=time(18, 0))


def test_dnc_list_reloads_when_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "dnc.txt"
    path.write_text("# opt-outs\n(202) 555-0143\n", encoding="utf-8")
    dnc = DncList.from_files([path], "US")
    assert "+12025550143" in dnc and "+12025550144" not in dnc
    path.write_text("202 555 0143\n+1 202 555 0144  # called to complain\n", encoding="utf-8")
    assert dnc.refresh()
    assert "+12025550144" in dnc
    assert not dnc.refresh()  # unchanged file: no re-read


async def test_scheduler_jobs_persist_in_campaign_db_and_fire(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = Store(url)
    now = datetime.now(UTC)
    campaign = Campaign(name="timed", tree="t.yaml", caller_ids=["+12025550100"],
                        start_at=now + timedelta(seconds=1), end_at=now + timedelta(seconds=2))
    store.save_campaign(campaign, CampaignState.SCHEDULED)
    first = make_scheduler(url)
    first.start(paused=True)
    ids = schedule_campaign(first, url, campaign)
    first.shutdown(wait=False)
    assert ids == ["campaign:timed:start", "campaign:timed:stop"]

    second = make_scheduler(url)  # a restarted process finds the jobs in the database
    second.start()
    try:
        states = []
        for _ in range(60):
            states.append(store.state("timed")[0])
            if states[-1] is CampaignState.STOPPED:
                break
            await asyncio.sleep(0.05)
        assert CampaignState.RUNNING in states
        assert states[-1] is CampaignState.STOPPED
        assert store.state("timed")[1] == "end_at reached"
    finally:
        second.shutdown(wait=False)


ZONES = ["America/New_York", "America/Los_Angeles", "Europe/London", "Australia/Lord_Howe",
         "Asia/Kolkata", "Pacific/Chatham", "America/St_Johns", "Pacific/Apia"]


@settings(max_examples=60, deadline=None)
@given(
    now=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31),
                     timezones=st.just(UTC)),
    zones=st.lists(st.sampled_from(ZONES), min_size=1, max_size=2, unique=True),
    start=st.integers(0, 20), length=st.integers(1, 6),
    days=st.lists(st.sampled_from(EVERY_DAY), min_size=1, max_size=7, unique=True),
)
def test_next_open_is_open_and_nothing_earlier_is(now: datetime, zones: list[str], start: int,
                                                  length: int, days: list[str]) -> None:
    w = CallingWindow(days=days, start=time(start), end=time(min(start + length, 23)),
                      override_legal_hours=True)
    opens = next_open(w, zones, now)
    if opens is None:
        return
    assert opens >= now
    assert is_open_all(w, zones, opens)
    # No earlier instant (on a 15-minute grid, plus the minute before) is open everywhere.
    t = now
    while t < opens - timedelta(minutes=1):
        assert not is_open_all(w, zones, t), (t, opens)
        t += timedelta(minutes=15)
    assert not is_open_all(w, zones, opens - timedelta(minutes=1)) or opens == now
