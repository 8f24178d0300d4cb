"""Recordings as the console and the API see them: the file a record names, only when it
lies inside the recordings folder, and deletion (one, or every one older than the
retention setting), audited in the store.

A recording is named by the record that made it: ``attempt-<id>`` (a campaign attempt)
or ``call-<id>`` (an informer or inbound call; inbound ones are voicemail). The path
comes from the store, never from a request; one that resolves outside
``settings.recordings_dir`` (``..``, a symlink, an absolute path elsewhere) counts as
no file at all, so it is neither served nor deleted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.engine import Engine, Row

from autocall.campaign.db import reading
from autocall.campaign.store import attempts, calls
from autocall.config import Settings
from autocall.web import accounts
from autocall.web.accounts import Principal

Kind = Literal["attempt", "call"]
ID = re.compile(r"^(attempt|call)-([0-9]{1,18})$")
MAX_ID = 2**31 - 1  # the ids' column type (INTEGER): a larger one names no record


def inside(settings: Settings, stored: str | None) -> Path | None:
    """The stored path if it is a file inside the recordings folder, else None."""
    if not stored:
        return None
    root = settings.recordings_dir.resolve()
    try:
        path = Path(stored).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


@dataclass(frozen=True)
class Recording:
    """One record that names a recording, and whether its file is there."""

    id: str
    kind: Kind
    voicemail: bool
    campaign: str | None
    number: str | None
    started_at: datetime | None
    duration: float | None
    answered_by: str | None
    path: Path | None  # None: the file is gone (deleted) or outside the folder

    @property
    def available(self) -> bool:
        return self.path is not None

    @property
    def size(self) -> int | None:
        try:
            return self.path.stat().st_size if self.path is not None else None
        except OSError:
            return None

    def older_than(self, days: int | None, now: datetime) -> bool:
        return (days is not None and self.started_at is not None
                and self.started_at < now - timedelta(days=days))


def _utc(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def listing(engine: Engine, settings: Settings, kind: Kind, *, campaign: str | None = None,
            after: int = 0, newest: bool = False, before: int | None = None,
            limit: int = 100) -> list[Recording]:
    """Records with a recording: ids above ``after`` ascending, or (``newest``) newest
    first, below ``before`` if given; ``campaign`` narrows attempts."""
    table = attempts if kind == "attempt" else calls
    query = select(table).where(table.c.recording.is_not(None)).limit(limit)
    if newest:
        query = query.order_by(table.c.id.desc())
        if before is not None and before <= MAX_ID:
            query = query.where(table.c.id < before)
    elif after >= MAX_ID:
        return []
    else:
        query = query.where(table.c.id > after).order_by(table.c.id)
    if kind == "attempt" and campaign is not None:
        query = query.where(attempts.c.campaign == campaign)
    with reading(engine) as conn:
        rows = conn.execute(query).all()
    return [_of(settings, kind, r) for r in rows]


def _of(settings: Settings, kind: Kind, row: Row[Any]) -> Recording:
    m = row._mapping
    return Recording(
        id=f"{kind}-{m['id']}", kind=kind,
        voicemail=kind == "call" and m["direction"] == "inbound",
        campaign=m["campaign"] if kind == "attempt" else None, number=m["number"],
        started_at=_utc(m["started_at"]), duration=m["duration"],
        answered_by=m["answered_by"], path=inside(settings, m["recording"]))


def one(engine: Engine, settings: Settings, rid: str) -> Recording | None:
    """The recording ``rid`` names (``attempt-12``, ``call-3``), or None."""
    match = ID.match(rid)
    if match is None or int(match.group(2)) > MAX_ID:
        return None
    kind: Kind = "attempt" if match.group(1) == "attempt" else "call"
    table = attempts if kind == "attempt" else calls
    with reading(engine) as conn:
        row = conn.execute(select(table).where(table.c.id == int(match.group(2)))).first()
    if row is None or not row.recording:
        return None
    return _of(settings, kind, row)


def delete(engine: Engine, recording: Recording, who: Principal, reason: str) -> bool:
    """Remove the recording's file (the record stays, its file shown as gone) and audit
    it; False when there was no file to remove."""
    if recording.path is None:
        return False
    try:
        recording.path.unlink()
    except FileNotFoundError:
        return False
    with engine.begin() as conn:
        accounts.audit(conn, who, "recording.delete", recording.id, reason=reason,
                       campaign=recording.campaign, number=recording.number)
    return True


def expired(engine: Engine, settings: Settings, now: datetime) -> list[Recording]:
    """Recordings with a file that are older than the retention setting (none if unset)."""
    days = settings.recording_retention_days
    if days is None:
        return []
    found: list[Recording] = []
    kinds: tuple[Kind, ...] = ("attempt", "call")
    for kind in kinds:
        after = 0
        while True:
            batch = listing(engine, settings, kind, after=after, limit=500)
            found += [r for r in batch if r.available and r.older_than(days, now)]
            if len(batch) < 500:
                break
            after = int(batch[-1].id.split("-")[1])
    return found
