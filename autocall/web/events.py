"""A campaign's live counters, pushed to the console by Server-Sent Events.

Every second the counters are read from the store (``Store.summary`` and two small
queries on the attempts), never from a dialer's memory: any number of dialer nodes on
PostgreSQL and any number of web nodes see the same figures. Calls per second is the
attempts created in the last ``RATE_WINDOW`` seconds, so a web node needs no state of
its own to compute it. Pages showing the same campaign share one read per second
(:class:`Sampler`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from autocall.campaign.control import allowed_verbs
from autocall.campaign.db import reading
from autocall.campaign.store import Store, StoreError, attempts
from autocall.web.accounts import Principal
from autocall.web.auth import principal, store_of
from autocall.web.problems import Problem

PERIOD = 1.0  # seconds between two pushes
RATE_WINDOW = 10.0  # calls/s is measured over this many seconds
NODE_STALE = 30.0  # a dialer node silent this long is not counted (as `campaign status`)


@dataclass(frozen=True)
class Counters:
    """What the campaign page shows live; the SSE event's JSON body."""

    name: str
    state: str
    state_reason: str | None
    verbs: list[str]  # the steering verbs its state allows now
    contacts: int
    done: int
    pending: int
    progress: float  # done / contacts, 0..100
    dialed: int  # attempts made
    in_flight: int  # calls placed and not ended: ringing + talking
    ringing: int
    talking: int
    answered: int
    outcomes: dict[str, int]
    calls_per_second: float
    channels_busy: int
    channels: int  # channels of the live dialer nodes together
    dialers: int  # live dialer nodes
    at: str


def counters(store: Store, name: str, now: datetime) -> Counters:
    """The counters as the store has them at ``now`` (raises StoreError if no campaign)."""
    summary = store.summary(name, now)
    campaign, _, _ = store.campaign(name)
    naive = now.astimezone(UTC).replace(tzinfo=None)
    with reading(store.engine) as conn:
        ringing, talking = conn.execute(
            select(func.count() - func.count(attempts.c.answered_at),
                   func.count(attempts.c.answered_at))
            .where(attempts.c.campaign == name, attempts.c.ended_at.is_(None))).one()
        recent = conn.execute(select(func.count()).where(
            attempts.c.campaign == name,
            attempts.c.created_at >= naive - timedelta(seconds=RATE_WINDOW))).scalar_one()
    live = [n for n in summary.nodes
            if (now - n["heartbeat"]).total_seconds() <= NODE_STALE and n["status"] != "exited"]
    return Counters(
        name=name, state=summary.state.value, state_reason=summary.state_reason,
        verbs=[v.value for v in allowed_verbs(summary.state)],
        contacts=summary.total, done=summary.done, pending=summary.pending,
        progress=round(100.0 * summary.done / summary.total, 1) if summary.total else 0.0,
        dialed=summary.attempts, in_flight=int(ringing) + int(talking),
        ringing=int(ringing), talking=int(talking), answered=summary.answered,
        outcomes=dict(sorted(summary.outcomes.items())),
        calls_per_second=round(recent / RATE_WINDOW, 2),
        channels_busy=sum(int(n["in_flight"]) for n in live),
        channels=campaign.channels * len(live), dialers=len(live),
        at=now.isoformat(timespec="seconds"))


class Sampler:
    """One store read per campaign per period, shared by every page that shows it: fifty
    open tabs cost the database what one does."""

    def __init__(self, store: Store, period: float = PERIOD) -> None:
        self.store = store
        self.period = period
        self._last: dict[str, tuple[float, Counters]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def counters(self, name: str, since: float = 0.0) -> Counters:
        """The campaign's counters, read at most ``period`` ago and not before ``since``
        (``time.monotonic()``: a new page must not be shown older figures than it has)."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            hit = self._last.get(name)
            now = time.monotonic()
            if hit is not None and hit[0] >= since and now - hit[0] < 0.9 * self.period:
                return hit[1]
            data = await asyncio.to_thread(counters, self.store, name, datetime.now(UTC))
            self._last[name] = (time.monotonic(), data)
            return data

    def forget(self, name: str) -> None:
        """Drop what was read: the campaign just changed through this process (a page
        loaded now must not be shown the state from before the click)."""
        self._last.pop(name, None)


router = APIRouter(include_in_schema=False)


async def existing_campaign(name: str, request: Request) -> str:
    """The path's campaign name, or 404 (checked before a stream starts)."""
    try:
        await asyncio.to_thread(store_of(request).state, name)
    except StoreError:
        raise Problem(404, "Not Found", f"no campaign {name!r}") from None
    return name


@router.get("/campaigns/{name}/events", response_class=EventSourceResponse)
async def campaign_events(who: Annotated[Principal, Depends(principal)],
                          name: Annotated[str, Depends(existing_campaign)], request: Request
                          ) -> AsyncIterator[ServerSentEvent]:
    """``counters`` events every second until the client goes away."""
    sampler: Sampler = request.app.state.sampler
    since = time.monotonic()  # the page was drawn from the store just now
    while not await request.is_disconnected():
        try:
            data = await sampler.counters(name, since)
            since = 0.0
        except StoreError as exc:  # deleted meanwhile
            yield ServerSentEvent(event="problem", data={"detail": str(exc)}, retry=5000)
        except SQLAlchemyError:  # the database is restarting: say so, try again
            yield ServerSentEvent(event="problem", data={"detail": "the store does not "
                                                         "answer; retrying"}, retry=5000)
        else:
            yield ServerSentEvent(event="counters", data=asdict(data), retry=2000)
        await asyncio.sleep(PERIOD)
