"""When a contact may be called, and the jobs that start and stop campaigns.

Calling hours are judged in each contact's own time zone (TCPA: 08:00–21:00 where the
callee is). A number whose zone is ambiguous (e.g. a country spanning several zones)
carries every candidate zone, and the window must be open in all of them: the safe
reading. The window math is pure (a ``now`` in, a decision out); APScheduler only
handles whole-campaign start/stop dates, with its job store in the campaign database.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import phonenumbers

from autocall.campaign.model import WEEKDAYS, CallingWindow, Campaign, CampaignState

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)

_SEARCH_DAYS = 400


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """First UTC instant at which the wall clock in ``tz`` reads ``at`` or later on ``day``.

    Ambiguous times (autumn) take the first occurrence; a time inside a spring-forward gap
    becomes the end of the gap, when the clock jumps past it (PEP 495 fold semantics).
    """
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == naive:
        return first
    # In a gap: fold=1 lands before it, fold=0 after it; find the jump to the minute.
    t = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    while t < first and t.astimezone(tz).replace(tzinfo=None) < naive:
        t += timedelta(minutes=1)
    return min(t, first)


def is_open(window: CallingWindow, tz: ZoneInfo, now: datetime) -> bool:
    """Whether ``now`` falls inside the window on the contact's wall clock."""
    local = now.astimezone(tz)
    if WEEKDAYS[local.weekday()] not in window.days or local.date() in window.holidays:
        return False
    return window.start <= local.time().replace(tzinfo=None) < window.end


def next_open_in(window: CallingWindow, tz: ZoneInfo, now: datetime) -> datetime | None:
    """Earliest instant ≥ ``now`` at which the window is open in ``tz``."""
    if is_open(window, tz, now):
        return now
    local_day = now.astimezone(tz).date()
    for offset in range(_SEARCH_DAYS):
        day = local_day + timedelta(days=offset)
        if WEEKDAYS[day.weekday()] not in window.days or day in window.holidays:
            continue
        opens = _local_instant(day, window.start, tz)
        closes = _local_instant(day, window.end, tz)
        if closes <= now:
            continue
        candidate = max(opens, now)
        if is_open(window, tz, candidate):
            return candidate
    return None


def is_open_all(window: CallingWindow, zones: Iterable[str], now: datetime) -> bool:
    return all(is_open(window, zone(z), now) for z in zones)


def next_open(window: CallingWindow, zones: Sequence[str], now: datetime) -> datetime | None:
    """Earliest instant ≥ ``now`` at which the window is open in every zone; None: never."""
    t = now
    for _ in range(4 * _SEARCH_DAYS):
        later = t
        for name in zones:
            nxt = next_open_in(window, zone(name), t)
            if nxt is None:
                return None
            later = max(later, nxt)
        if later == t and is_open_all(window, zones, t):
            return t
        if later == t:
            # Open in each zone alone at t but not together cannot happen; step to be safe.
            later = t + timedelta(minutes=1)
        t = later
    return None


def explain_window(window: CallingWindow, zones: Sequence[str], now: datetime) -> str:
    """One line saying why the window is open or closed for these zones."""
    parts = []
    for name in zones:
        local = now.astimezone(zone(name))
        day = WEEKDAYS[local.weekday()]
        state = "open" if is_open(window, zone(name), now) else "closed"
        why = ""
        if day not in window.days:
            why = f" ({day} is not a calling day)"
        elif local.date() in window.holidays:
            why = f" ({local.date()} is a holiday)"
        elif state == "closed":
            why = f" (outside {window.start:%H:%M}-{window.end:%H:%M})"
        parts.append(f"{name} {local:%a %H:%M} {state}{why}")
    return "; ".join(parts)


DNC_MISSING = "do-not-call file not found"
_CELL_SEP = re.compile(r"[,;\t|]")


@dataclass(frozen=True)
class DncProblem:
    """A do-not-call line that blocks nobody because it is not understood."""

    source: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column}: error: {self.message}"


@dataclass
class DncList:
    """Do-not-call numbers from files, re-read when a file changes (checked at dial time).

    Every line that is not understood is kept in ``problems`` (file:line), never dropped
    in silence: a DNC entry we cannot read is a person we might call against their wish.
    """

    paths: list[Path]
    region: str = "US"
    numbers: set[str] = field(default_factory=set)
    problems: list[DncProblem] = field(default_factory=list)
    _stamp: tuple[tuple[str, float, int], ...] = ()

    @classmethod
    def from_files(cls, paths: Iterable[str | Path], region: str = "US") -> DncList:
        dnc = cls([Path(p) for p in paths], region)
        dnc.refresh()
        return dnc

    def _stamps(self) -> tuple[tuple[str, float, int], ...]:
        out = []
        for p in self.paths:
            try:
                st = p.stat()
                out.append((str(p), st.st_mtime, st.st_size))
            except OSError:
                out.append((str(p), 0.0, -1))
        return tuple(out)

    def refresh(self) -> bool:
        """Re-read the files if any changed; True if the list was reloaded."""
        from autocall.campaign.contacts import ContactsError, read_text_file

        stamp = self._stamps()
        if stamp == self._stamp:
            return False
        numbers: set[str] = set()
        problems: list[DncProblem] = []
        for p in self.paths:
            if not p.exists():
                problems.append(DncProblem(str(p), 1, 1, DNC_MISSING))
                continue
            try:
                text, _ = read_text_file(p)
            except ContactsError as exc:
                problems.append(DncProblem(exc.source, exc.row, exc.column, exc.message))
                continue
            found, bad = parse_dnc_text(text, str(p), self.region)
            numbers |= found
            problems.extend(bad)
        self.numbers = numbers
        self.problems = problems
        self._stamp = stamp
        return True

    def __contains__(self, number: object) -> bool:
        return number in self.numbers

    def add(self, number: str) -> None:
        """Opt-out: append to the first file so every node sees it at its next dial."""
        if not self.paths:
            raise ValueError("campaign has no dnc: file to add opt-outs to")
        with open(self.paths[0], "a", encoding="utf-8") as fh:
            fh.write(number + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.numbers.add(number)


class DncCheck(Container[str]):
    """The campaign's DNC files and the store's list (``autocall_dnc``, which the dialer
    reads when it claims), as one ``in``: what explain and status must agree with."""

    def __init__(self, files: DncList, listed: Callable[[str], bool]) -> None:
        self.files = files
        self.listed = listed

    def __contains__(self, number: object) -> bool:
        return number in self.files or (isinstance(number, str) and self.listed(number))


def parse_dnc_text(text: str, source: str, region: str
                   ) -> tuple[set[str], list[DncProblem]]:
    """Numbers of a do-not-call list (one a line, ``#`` comments, or a CSV export whose
    cells hold the number) and every line not understood, by line and column."""
    numbers: set[str] = set()
    problems: list[DncProblem] = []
    first = True
    for line_no, raw in enumerate(text.splitlines(), start=1):
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        number = normalize_dnc(entry, region)
        if number is None and _CELL_SEP.search(entry):
            # A CSV export: the number is one of the cells.
            cells = (normalize_dnc(c, region) for c in _CELL_SEP.split(entry))
            number = next((n for n in cells if n is not None), None)
            if number is None and first and not any(ch.isdigit() for ch in entry):
                first = False
                continue  # its header line
        first = False
        if number is None:
            col = raw.index(entry[0]) + 1
            problems.append(DncProblem(
                source, line_no, col,
                f"{entry!r} is not a phone number valid in region {region} "
                "or in international form; write it as +<country> <number>"))
            continue
        numbers.add(number)
    return numbers, problems


def normalize(raw: str, region: str) -> str | None:
    """E.164 form of a valid number, else None."""
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalize_dnc(raw: str, region: str) -> str | None:
    """E.164 of a DNC entry: national for ``region``, ``+CC …``, or with an international
    prefix. ``00`` is the ITU-T E.164 Annex recommended international prefix used in most
    of the world, so ``0049 171 1234567`` means +49 even in a list whose region is US
    (whose own prefix, 011, phonenumbers already understands)."""
    found = normalize(raw, region)
    if found is not None:
        return found
    digits = raw.lstrip()
    if digits.startswith("00"):
        return normalize("+" + digits[2:], region)
    return None


# --- APScheduler: campaign start/stop dates ------------------------------------------

JOB_TABLE = "autocall_scheduler_jobs"


def start_job(store_url: str, name: str) -> None:
    """Scheduler job: a scheduled campaign becomes running at its start date."""
    from autocall.campaign.store import Store

    with Store(store_url) as store:
        store.set_state(name, CampaignState.RUNNING, "start_at reached",
                        only_from=(CampaignState.SCHEDULED, CampaignState.DRAFT))


def stop_job(store_url: str, name: str) -> None:
    """Scheduler job: a campaign stops dialing at its end date."""
    from autocall.campaign.store import Store

    with Store(store_url) as store:
        store.set_state(name, CampaignState.STOPPED, "end_at reached",
                        only_from=(CampaignState.SCHEDULED, CampaignState.RUNNING,
                                   CampaignState.PAUSED, CampaignState.DRAFT))


def make_scheduler(store_url: str) -> AsyncIOScheduler:
    """An asyncio APScheduler whose jobs live in the campaign database (survive restarts)."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    store = SQLAlchemyJobStore(url=store_url, tablename=JOB_TABLE)
    return AsyncIOScheduler(jobstores={"default": store}, timezone=UTC,
                            job_defaults={"misfire_grace_time": None, "coalesce": True})


def schedule_campaign(scheduler: AsyncIOScheduler, store_url: str, campaign: Campaign) -> list[str]:
    """Add (or replace) the campaign's start/stop jobs; returns the job ids."""
    ids = []
    for when, func, suffix in ((campaign.start_at, start_job, "start"),
                               (campaign.end_at, stop_job, "stop")):
        if when is None:
            continue
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        job_id = f"campaign:{campaign.name}:{suffix}"
        scheduler.add_job(
            f"{__name__}:{func.__name__}", "date", run_date=when, id=job_id,
            args=[store_url, campaign.name], replace_existing=True,
        )
        ids.append(job_id)
    return ids
