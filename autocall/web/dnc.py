"""The store's do-not-call list (``autocall_dnc``): numbers added from the API and the
console, honoured by every dialer at claim time (``Store.claim`` reads the same table).

Numbers are E.164, normalised as the campaign DNC files are
(:func:`autocall.campaign.schedule.normalize_dnc`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from autocall.campaign.db import reading
from autocall.campaign.store import dnc


@dataclass(frozen=True)
class Entry:
    number: str
    added_at: datetime
    added_by: str | None
    source: str | None


def _insert(conn: Connection) -> Any:
    """INSERT … ON CONFLICT DO NOTHING in the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return pg_insert(dnc)
    return sqlite_insert(dnc)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def add_many(conn: Connection, numbers: Iterable[str], added_by: str, source: str | None
             ) -> int:
    """Add E.164 numbers not yet listed, in the caller's transaction; returns how many."""
    wanted = sorted(set(numbers))
    added = 0
    for i in range(0, len(wanted), 500):
        chunk = wanted[i:i + 500]
        have = set(conn.execute(select(dnc.c.number).where(dnc.c.number.in_(chunk))).scalars())
        new = [n for n in chunk if n not in have]
        if new:
            now = _now()
            # A concurrent request may list one of them meanwhile: skip it, never fail.
            conn.execute(_insert(conn).on_conflict_do_nothing(),
                         [{"number": n, "added_at": now, "added_by": added_by,
                           "source": source} for n in new])
            added += len(new)
    return added


def remove(conn: Connection, number: str) -> bool:
    return bool(conn.execute(delete(dnc).where(dnc.c.number == number)).rowcount)


def entry(engine: Engine, number: str) -> Entry | None:
    with reading(engine) as conn:
        row = conn.execute(select(dnc).where(dnc.c.number == number)).first()
    return None if row is None else Entry(row.number, row.added_at.replace(tzinfo=UTC),
                                          row.added_by, row.source)


def page(engine: Engine, after: str | None, limit: int) -> tuple[list[Entry], int]:
    """Entries by number after ``after`` (keyset paging), and the total."""
    query = select(dnc).order_by(dnc.c.number).limit(limit)
    if after is not None:
        query = query.where(dnc.c.number > after)
    with reading(engine) as conn:
        rows = conn.execute(query).all()
        total = conn.execute(select(func.count()).select_from(dnc)).scalar_one()
    return ([Entry(r.number, r.added_at.replace(tzinfo=UTC), r.added_by, r.source)
             for r in rows], int(total))
