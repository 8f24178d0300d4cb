"""``Idempotency-Key`` on every POST that dials or imports: a retried request is answered
with the first answer, never done twice.

Rows live in ``autocall_idempotency``, keyed by (principal, key). The request is named
by a SHA-256 of what it asks for (the route and its meaning: the JSON model or the
uploaded bytes, not a multipart boundary), so the same key with another request is a
422. Two ways to use it:

- :func:`once` when the effect fits in one transaction (a call request, a campaign, a
  DNC list): the key's row, with its answer, commits together with the effect. A
  concurrent duplicate waits on the row's lock (PostgreSQL) or the write lock (SQLite)
  and then replays; there is never a second effect.
- :func:`claim` / :func:`finish` / :func:`release` when the effect has transactions of
  its own (a contact import): the row is committed first with no status, and a
  duplicate arriving meanwhile gets 409.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.schema import Column, Table
from sqlalchemy.types import DateTime, Integer, String, Text

from autocall.campaign.db import metadata, reading
from autocall.web.accounts import Principal
from autocall.web.problems import Problem

STALE = timedelta(minutes=10)
"""A key still in progress after this long was left by a process that died between
:func:`claim` and :func:`finish` (the effect's own transaction decides whether it
happened): the next request with it takes it over instead of getting 409 forever."""
KEEP = timedelta(hours=24)
"""How long answers are kept for replay (Stripe keeps 24 hours too); :func:`purge`."""

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")  # visible ASCII: a UUID, a ULID, a CRM's id

idempotency = Table(
    "autocall_idempotency", metadata,
    Column("principal", String(120), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("request", String(64), nullable=False),
    Column("status", Integer),
    Column("response", Text),
    Column("created_at", DateTime, nullable=False),
)


@dataclass(frozen=True)
class Key:
    """One request's key: who sent it, the key, and what the request asks for."""

    principal: str
    key: str
    request: str


def key_of(request: Request, who: Principal, *meaning: str | bytes) -> Key | None:
    """The request's key (None without the header); ``meaning`` is what makes two
    requests the same request (route, body as the model read it, uploaded bytes)."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    if not _KEY.match(raw):
        raise Problem(400, "Bad Idempotency-Key",
                      "Idempotency-Key is 1 to 200 visible ASCII characters (a UUID is fine)",
                      errors=[{"loc": ["header", HEADER], "msg": "invalid key"}])
    return Key(who.actor, raw, fingerprint(request.method, request.url.path, *meaning))


def fingerprint(method: str, path: str, *meaning: str | bytes) -> str:
    """SHA-256 naming a request: method, path and its meaning, each length-prefixed."""
    digest = hashlib.sha256(method.encode() + b" " + path.encode())
    for part in meaning:
        chunk = part.encode() if isinstance(part, str) else part
        digest.update(len(chunk).to_bytes(8, "big"))
        digest.update(chunk)
    return digest.hexdigest()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _where(key: Key) -> Any:
    return (idempotency.c.principal == key.principal) & (idempotency.c.key == key.key)


def _answer_stored(engine: Engine, key: Key) -> JSONResponse:
    """What a repeat of ``key`` gets: the first answer, 409 while it is being made, 422
    for another request under the same key."""
    with reading(engine) as conn:
        row = conn.execute(select(idempotency).where(_where(key))).first()
    if row is None:  # the first request failed and let the key go: the client may retry
        raise Problem(409, "Conflict", "a request with this Idempotency-Key just failed; "
                      "retry it")
    if row.request != key.request:
        raise Problem(422, "Idempotency-Key reused",
                      "this Idempotency-Key was used for a different request; use a new key "
                      "for a new request",
                      errors=[{"loc": ["header", HEADER], "msg": "key reused"}])
    if row.status is None:
        raise Problem(409, "Conflict", "a request with this Idempotency-Key is still in "
                      "progress; retry later", headers={"Retry-After": "1"})
    return JSONResponse(json.loads(row.response), status_code=row.status,
                        headers={REPLAYED: "true"})


class _Taken(Exception):
    """The key's row exists already (a twin committed it while we waited)."""


def once(engine: Engine, key: Key | None,
         effect: Callable[[Connection], tuple[int, Any]]) -> JSONResponse:
    """Run ``effect`` (returning status and a JSON-able body) in one transaction with
    the key's row, or replay the first answer."""
    if key is None:
        with engine.begin() as conn:
            status, body = effect(conn)
        return JSONResponse(body, status_code=status)
    try:
        with engine.begin() as conn:
            if conn.execute(select(idempotency.c.key).where(_where(key))).first() is not None:
                raise _Taken
            try:
                # A concurrent twin blocks here until the first commits, then fails on
                # the primary key and replays.
                conn.execute(insert(idempotency).values(
                    principal=key.principal, key=key.key, request=key.request,
                    created_at=_now()))
            except IntegrityError as exc:
                raise _Taken from exc
            status, body = effect(conn)
            conn.execute(update(idempotency).where(_where(key)).values(
                status=status, response=json.dumps(body)))
    except _Taken:
        return _answer_stored(engine, key)
    return JSONResponse(body, status_code=status)


def claim(engine: Engine, key: Key | None) -> JSONResponse | None:
    """Take ``key`` for a long effect: None to go ahead, or the answer for a repeat."""
    if key is None:
        return None
    try:
        with engine.begin() as conn:
            conn.execute(insert(idempotency).values(
                principal=key.principal, key=key.key, request=key.request,
                created_at=_now()))
    except IntegrityError:
        with engine.begin() as conn:
            taken = conn.execute(update(idempotency).where(
                _where(key), idempotency.c.request == key.request,
                idempotency.c.status.is_(None), idempotency.c.created_at < _now() - STALE)
                .values(created_at=_now())).rowcount
        return None if taken else _answer_stored(engine, key)
    return None


def finish(engine: Engine, key: Key | None, status: int, body: Any) -> JSONResponse:
    """Store the answer of a claimed key and give it."""
    if key is not None:
        with engine.begin() as conn:
            conn.execute(update(idempotency).where(_where(key)).values(
                status=status, response=json.dumps(body)))
    return JSONResponse(body, status_code=status)


def release(engine: Engine, key: Key | None) -> None:
    """The effect failed and did nothing: let the key go so a retry does it."""
    if key is not None:
        with engine.begin() as conn:
            conn.execute(delete(idempotency).where(_where(key), idempotency.c.status.is_(None)))


def purge(engine: Engine, keep: timedelta = KEEP) -> int:
    """Forget answers older than ``keep`` (a worker calls this now and then)."""
    with engine.begin() as conn:
        return int(conn.execute(delete(idempotency).where(
            idempotency.c.created_at < _now() - keep)).rowcount)
