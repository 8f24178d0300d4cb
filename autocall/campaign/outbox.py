"""The outbox: webhook events committed with the change that caused them, then delivered.

An event is a row of ``autocall_outbox`` INSERTED by :func:`enqueue` on the connection of
the transaction that changes the state (an attempt finished, a campaign paused), so the
event exists exactly when the change does: a kill -9 before the commit loses both, after
it loses neither. One row per event and target URL, each with a stable ``event_id``
(``evt_`` + 32 hex) that is the Standard Webhooks ``webhook-id``: a receiver
de-duplicates by it, since a delivery cut by a crash is sent again.

:func:`deliver` is the one driver: it leases due rows (``locked_by``/``locked_until``, so
two processes never send the same row at once and a dead one's lease runs out), POSTs
them signed with the ``standardwebhooks`` package (the secret is read from the
environment variable the row names; a row without one is sent unsigned), and writes the
answer. Only the oldest undelivered row of each (subject, url) is eligible, so a receiver
gets a call's events in order. What to do after a try (:func:`after_try`) and when
(:func:`backoff`) is decided sans-I/O, from a ``now`` the caller passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeVar, cast, get_args
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import and_, exists, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import Column, Table
from sqlalchemy.types import DateTime, Integer, String, Text
from standardwebhooks import Webhook

from autocall.campaign.db import metadata, reading
from autocall.signals import cancelled

__all__ = ["EVENT_TYPES", "STATUS_SECRET_ENV", "Delivered", "EventType", "GiveUp",
           "Policy", "Retry", "Sink", "WebhookTarget", "after_try", "backlog", "backoff",
           "callback_target", "deliver", "enqueue", "new_event_id", "secret_problem"]

log = logging.getLogger(__name__)

T = TypeVar("T")

EventType = Literal["call.initiated", "call.ringing", "call.answered", "call.completed",
                    "attempt.finished", "campaign.started", "campaign.paused",
                    "campaign.completed", "recording.ready", "opt-out"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


class WebhookTarget(BaseModel):
    """Where a campaign's (or an API call's) events go: ``{url, secret_env, events}``.

    ``secret_env`` names the environment variable holding the Standard Webhooks secret
    (``whsec_`` + base64); the secret itself never enters the YAML or the store.
    ``events`` empty means every event.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(max_length=2000)
    secret_env: str | None = Field(default=None, pattern=_ENV_NAME)
    events: tuple[EventType, ...] = ()

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or re.search(
                r"\s", value):
            raise ValueError(f"{value!r} is not an http(s) URL such as "
                             "https://crm.example.com/hooks/autocall")
        return value

    def wants(self, event_type: str) -> bool:
        return not self.events or event_type in self.events


# Status callbacks (POST /v1/calls ``status_callback``, ``autocall call|serve
# --status-callback``) name a URL only: they are signed with this one secret.
STATUS_SECRET_ENV = "AUTOCALL_WEBHOOK_SECRET"


def callback_target(url: str, environ: Mapping[str, str] | None = None) -> WebhookTarget:
    """The target of a status callback URL: signed with ``AUTOCALL_WEBHOOK_SECRET`` when
    the process that makes the event has it set (the row keeps the variable's name; the
    process that delivers it must have it too, or the event waits, never sent unsigned),
    unsigned otherwise. Raises ``ValueError`` for a URL that is not http(s)."""
    env = os.environ if environ is None else environ
    return WebhookTarget(url=url, secret_env=STATUS_SECRET_ENV if env.get(STATUS_SECRET_ENV)
                         else None)


def secret_problem(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """What is wrong with the signing secret in environment variable ``name``, if it is
    set (None: unset, or a usable ``whsec_`` + base64 secret). For a check at start-up,
    so a bad secret is one clear error, not every event retried for a day."""
    value = (os.environ if environ is None else environ).get(name)
    if not value:
        return None
    try:
        Webhook(value)
    except Exception as exc:  # noqa: BLE001 - the library raises several kinds
        return (f"environment variable {name} is not a Standard Webhooks secret "
                f"(whsec_ followed by base64, e.g. from openssl rand -base64 32): {exc}")
    return None


# The table as migration 0003 makes it (the schema itself is made by migrations only).
outbox = Table(
    "autocall_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(40), nullable=False, unique=True),
    Column("type", String(60), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("url", Text, nullable=False),
    Column("secret_env", String(200)),
    Column("payload", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("next_at", DateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("delivered_at", DateTime),
    Column("given_up_at", DateTime),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("locked_by", String(100)),
    Column("locked_until", DateTime),
)


def _naive(dt: datetime) -> datetime:
    return dt if dt.tzinfo is None else dt.astimezone(UTC).replace(tzinfo=None)


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(16)


def enqueue(conn: Connection, targets: Iterable[WebhookTarget], type: EventType,
            subject: str, data: Mapping[str, object], *,
            now: datetime | None = None) -> list[str]:
    """Add one event for each target that wants ``type``, on ``conn``'s transaction.

    ``subject`` is what the event is about (``call:<id>``, ``campaign:<name>``): events
    of one subject reach a URL in the order they were enqueued. Returns the event ids.
    """
    when = _naive(now or datetime.now(UTC))
    rows: list[dict[str, object]] = []
    ids: list[str] = []
    for target in targets:
        if not target.wants(type):
            continue
        event_id = new_event_id()
        ids.append(event_id)
        body = {"type": type, "timestamp": when.replace(tzinfo=UTC).isoformat(),
                "event_id": event_id, "subject": subject, "data": dict(data)}
        rows.append({"event_id": event_id, "type": type, "subject": subject[:200],
                     "url": target.url, "secret_env": target.secret_env,
                     "payload": json.dumps(body, default=str, ensure_ascii=False),
                     "created_at": when, "next_at": when, "attempts": 0})
    if rows:
        conn.execute(insert(outbox), rows)
    return ids


class Sink:
    """Enqueues events in a transaction of their own: for changes that are not rows of
    the store themselves (a call ringing, a status callback of ``autocall call``)."""

    def __init__(self, engine: Engine, targets: Sequence[WebhookTarget]) -> None:
        self.engine = engine
        self.targets = tuple(targets)

    def add(self, type: str, subject: str, data: Mapping[str, object]) -> list[str]:
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type!r}")
        if not any(t.wants(type) for t in self.targets):
            return []
        with self.engine.begin() as conn:
            return enqueue(conn, self.targets, cast(EventType, type), subject, data)


# --- what to do after a try (sans-I/O) -------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """Backoff from ``first`` doubling to ``cap``, with jitter; give up at ``max_age``."""

    first: timedelta = timedelta(seconds=1)
    cap: timedelta = timedelta(minutes=10)
    max_age: timedelta = timedelta(hours=24)
    timeout: float = 10.0  # seconds for one POST
    lease: timedelta = timedelta(seconds=60)  # longer than a POST can take

    def __post_init__(self) -> None:
        if self.lease.total_seconds() <= self.timeout:
            raise ValueError("the lease must outlast a POST's timeout, or two processes "
                             "could send one event at once")


@dataclass(frozen=True)
class Delivered:
    at: datetime


@dataclass(frozen=True)
class Retry:
    at: datetime
    error: str


@dataclass(frozen=True)
class GiveUp:
    at: datetime
    reason: str


Decision = Delivered | Retry | GiveUp


def backoff(tries: int, policy: Policy, rand: Callable[[], float] = random.random
            ) -> timedelta:
    """The wait after the ``tries``-th failed try: ``first * 2**(tries-1)`` capped, then
    between half and all of it (jitter, so receivers coming back are not stampeded)."""
    base = policy.first.total_seconds() * 2 ** min(max(tries - 1, 0), 40)
    full = min(base, policy.cap.total_seconds())
    return timedelta(seconds=full * (0.5 + 0.5 * rand()))


def after_try(*, created_at: datetime, tries: int, status: int | None, error: str | None,
              now: datetime, policy: Policy,
              rand: Callable[[], float] = random.random) -> Decision:
    """Decide from one try's answer: delivered on 2xx; 410 Gone gives up at once (the
    receiver says the endpoint is no more); otherwise retry with backoff until the
    event is ``max_age`` old."""
    if status is not None and 200 <= status < 300:
        return Delivered(now)
    why = error or f"answered HTTP {status}"
    if status == 410:
        return GiveUp(now, f"{why}: the receiver says this endpoint is gone")
    nxt = now + backoff(tries, policy, rand)
    if nxt - created_at > policy.max_age:
        hours = policy.max_age.total_seconds() / 3600
        return GiveUp(now, f"{why}; still undelivered after {tries} tries over {hours:g} h")
    return Retry(nxt, why)


# --- the store side ---------------------------------------------------------------------


@dataclass(frozen=True)
class Leased:
    id: int
    event_id: str
    type: str
    subject: str
    url: str
    secret_env: str | None
    payload: str
    created_at: datetime
    tries: int  # including this one


def lease(engine: Engine, node: str, now: datetime, limit: int, policy: Policy
          ) -> list[Leased]:
    """Lease up to ``limit`` due rows, each the oldest undelivered of its subject and URL."""
    nnow = _naive(now)
    older = outbox.alias("older")
    open_ = and_(outbox.c.delivered_at.is_(None), outbox.c.given_up_at.is_(None))
    stmt = (select(outbox).where(
        open_, outbox.c.next_at <= nnow,
        or_(outbox.c.locked_until.is_(None), outbox.c.locked_until <= nnow),
        ~exists().where(older.c.subject == outbox.c.subject, older.c.url == outbox.c.url,
                        older.c.id < outbox.c.id, older.c.delivered_at.is_(None),
                        older.c.given_up_at.is_(None)))
        .order_by(outbox.c.next_at, outbox.c.id).limit(limit))
    if engine.dialect.name != "sqlite":
        stmt = stmt.with_for_update(skip_locked=True, of=outbox)
    with engine.begin() as conn:
        rows = conn.execute(stmt).all()
        if not rows:
            return []
        conn.execute(update(outbox).where(outbox.c.id.in_([r.id for r in rows])).values(
            locked_by=node, locked_until=nnow + policy.lease,
            attempts=outbox.c.attempts + 1))
    return [Leased(r.id, r.event_id, r.type, r.subject, r.url, r.secret_env, r.payload,
                   r.created_at, r.attempts + 1) for r in rows]


def settle(engine: Engine, node: str, results: Sequence[tuple[Leased, int | None, Decision]]
           ) -> None:
    """Write each try's decision, if this node still holds the lease."""
    with engine.begin() as conn:
        for row, status, decision in results:
            values: dict[str, object] = {"locked_by": None, "locked_until": None,
                                         "last_status": status}
            if isinstance(decision, Delivered):
                values.update(delivered_at=_naive(decision.at), last_error=None)
            elif isinstance(decision, Retry):
                values.update(next_at=_naive(decision.at), last_error=decision.error[:2000])
            else:
                values.update(given_up_at=_naive(decision.at),
                              last_error=decision.reason[:2000])
            conn.execute(update(outbox).where(outbox.c.id == row.id,
                                              outbox.c.locked_by == node).values(values))


def free_dead_leases(engine: Engine, now: datetime, gone: Callable[[str], bool]) -> int:
    """Release leases held by nodes ``gone`` says are dead (a process of this host that
    is no more): their rows are sent again now, not when the lease runs out a minute
    later. A dead process sends nothing, so no row is sent twice at once. Returns how
    many rows were released."""
    nnow = _naive(now)
    open_ = and_(outbox.c.delivered_at.is_(None), outbox.c.given_up_at.is_(None),
                 outbox.c.locked_until > nnow)
    with reading(engine) as conn:
        holders = conn.execute(select(outbox.c.locked_by).where(
            open_, outbox.c.locked_by.is_not(None)).distinct()).scalars().all()
    dead = [h for h in holders if gone(h)]
    if not dead:
        return 0
    with engine.begin() as conn:
        released = conn.execute(update(outbox).where(open_, outbox.c.locked_by.in_(dead))
                                .values(locked_by=None, locked_until=None)).rowcount
    log.warning("webhook delivery: %d event(s) leased by stopped process(es) %s sent again "
                "now", released, ", ".join(dead))
    return int(released)


def backlog(engine: Engine, *, pending: bool = False, limit: int = 1000
            ) -> list[dict[str, object]]:
    """Rows for ``autocall webhooks list``, oldest first (``pending``: not delivered
    and not given up)."""
    cols = [c for c in outbox.c if c.name != "payload"]
    stmt = select(*cols).order_by(outbox.c.id).limit(limit)
    if pending:
        stmt = stmt.where(outbox.c.delivered_at.is_(None), outbox.c.given_up_at.is_(None))
    with reading(engine) as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


def pending_count(engine: Engine) -> int:
    """Events not yet delivered nor given up (the /metrics webhook backlog)."""
    with reading(engine) as conn:
        return int(conn.execute(select(func.count()).where(
            outbox.c.delivered_at.is_(None), outbox.c.given_up_at.is_(None))).scalar_one())


# --- the driver -------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


DEAD_LEASE_CHECK = 5.0  # seconds between looks for leases of dead processes


class _Unsendable(Exception):
    """This process cannot sign the event (its secret is missing or malformed)."""


def _headers(row: Leased, now: datetime) -> dict[str, str]:
    headers = {"content-type": "application/json", "user-agent": "autocall-webhooks",
               "webhook-id": row.event_id, "webhook-timestamp": str(int(now.timestamp()))}
    if row.secret_env is None:
        return headers
    secret = os.environ.get(row.secret_env)
    if not secret:
        raise _Unsendable(f"environment variable {row.secret_env} (the signing secret) "
                          "is not set in this process")
    if (problem := secret_problem(row.secret_env)) is not None:
        raise _Unsendable(problem)
    signer = Webhook(secret)
    headers["webhook-signature"] = signer.sign(row.event_id, now, row.payload.encode())
    return headers


async def _post(client: httpx.AsyncClient, row: Leased, now: datetime, timeout: float
                ) -> tuple[int | None, str | None]:
    try:
        headers = _headers(row, now)
    except _Unsendable as exc:
        return None, str(exc)
    try:
        response = await client.post(row.url, content=row.payload.encode(), headers=headers,
                                     timeout=timeout)
    except (httpx.HTTPError, OSError) as exc:
        return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return response.status_code, None


async def deliver(engine: Engine, *, stop: asyncio.Event, node: str,
                  policy: Policy = Policy(), batch: int = 50, idle: float = 0.5,
                  clock: Callable[[], datetime] = _utcnow,
                  client: httpx.AsyncClient | None = None,
                  gone: Callable[[str], bool] | None = None) -> int:
    """Deliver due events until ``stop`` is set; returns how many were delivered.

    One process or many (each its own ``node`` name) may run this on one store. A batch
    already sent when ``stop`` is set is still written; one cut by cancellation keeps its
    lease until it runs out and is sent again then (same event id). Leases of nodes
    ``gone`` says are dead (default: a process of this host that is no more, as the
    dialer judges nodes) are released every :data:`DEAD_LEASE_CHECK` seconds, so a
    restart after a kill -9 resends them at once.
    """
    async def db(fn: Callable[..., object], *args: object) -> object:
        # a thread, SQLite too: this loop may be a dialer's, pacing RTP (issue 15)
        return await asyncio.to_thread(fn, *args)

    if gone is None:  # here, not at the top: the dialer imports the store, which imports us
        from autocall.campaign.dialer import node_process_gone as gone
    delivered = 0
    down = False  # the store is unreachable: say so once, not every poll
    own = client is None
    http = client or httpx.AsyncClient(follow_redirects=False)
    loop = asyncio.get_running_loop()
    next_check = loop.time()
    try:
        while not stop.is_set():
            try:
                if loop.time() >= next_check:
                    next_check = loop.time() + DEAD_LEASE_CHECK
                    await db(free_dead_leases, engine, clock(), gone)
                leased = await db(lease, engine, node, clock(), batch, policy)
            except DBAPIError as exc:  # the store restarting or gone: a line, no traceback
                if not down:
                    log.warning("webhook delivery: store unreachable (%s); retrying",
                                str(exc.orig or exc).splitlines()[0])
                down, leased = True, []
            except Exception:  # noqa: BLE001 - anything else: say it in full, try again
                log.exception("webhook delivery: leasing events failed; retrying")
                leased = []
            else:
                if down:
                    log.warning("webhook delivery: store reachable again")
                down = False
            assert isinstance(leased, list)
            if not leased:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(idle):
                        await stop.wait()
                continue
            now = clock()
            answers = await asyncio.gather(*(_post(http, r, now, policy.timeout)
                                             for r in leased))
            done = clock()
            results = []
            for row, (status, error) in zip(leased, answers, strict=True):
                decision = after_try(created_at=row.created_at.replace(tzinfo=UTC),
                                     tries=row.tries, status=status, error=error, now=done,
                                     policy=policy)
                results.append((row, status, decision))
                if isinstance(decision, Delivered):
                    delivered += 1
                elif isinstance(decision, GiveUp):
                    log.error("webhook %s %s (%s) to %s given up: %s", row.type, row.event_id,
                              row.subject, row.url, decision.reason)
                elif row.tries == 1:
                    log.warning("webhook %s %s to %s not delivered (%s); retrying with "
                                "backoff", row.type, row.event_id, row.url, decision.error)
            try:
                await db(settle, engine, node, results)
            except DBAPIError as exc:  # unwritten: the leases run out, sent again
                log.warning("webhook delivery: %d result(s) not written, the store is "
                            "unreachable (%s)", len(results), str(exc.orig or exc).splitlines()[0])
            except Exception:  # noqa: BLE001 - unwritten: the leases run out, sent again
                log.exception("webhook delivery: writing %d results failed", len(results))
    finally:
        if own:
            await http.aclose()
    return delivered


async def alongside(engine: Engine, node: str, work: Awaitable[T], *,
                       grace: float = 5.0, policy: Policy = Policy()) -> T:
    """Run ``work`` (a dialer) with :func:`deliver` beside it as a task of its own; when
    the work ends, delivery goes on for up to ``grace`` seconds while events are due,
    then stops (what is left stays in the outbox for the next run or
    ``autocall webhooks deliver``)."""
    stop = asyncio.Event()
    task = asyncio.create_task(deliver(engine, stop=stop, node=node, policy=policy))
    try:
        result = await work
        loop = asyncio.get_running_loop()
        until = loop.time() + grace
        while loop.time() < until and not task.done() and _due_now(engine):
            await asyncio.sleep(0.1)
        return result
    finally:
        stop.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await asyncio.shield(task)
        if not task.done():  # a POST still waiting: its lease runs out, it is sent again
            await cancelled(task)
        elif not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery stopped on an error", exc_info=task.exception())
        with contextlib.suppress(Exception):
            left = pending_count(engine)
            if left:
                log.warning("%d webhook event(s) not delivered yet wait in the outbox; "
                            "the next run or 'autocall webhooks deliver' sends them", left)


def _due_now(engine: Engine) -> bool:
    """Any event that could be sent right now (not waiting for a backoff)?"""
    nnow = _naive(datetime.now(UTC))
    with reading(engine) as conn:
        return conn.execute(select(outbox.c.id).where(
            outbox.c.delivered_at.is_(None), outbox.c.given_up_at.is_(None),
            outbox.c.next_at <= nnow).limit(1)).first() is not None
