"""Reads and writes kept apart (issue 15): on SQLite a read is a WAL snapshot that neither
waits for the write lock nor holds it, so the console cannot stall a dialer's write; a write
through a reading connection is refused on SQLite and PostgreSQL alike."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text, update

from autocall.campaign.db import ReadOnlyError, reading
from autocall.campaign.model import Campaign, CampaignState, NewContact
from autocall.campaign.store import Store, campaigns

NOW = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)


def _store(url: str) -> Store:
    store = Store(url)
    store.save_campaign(Campaign(name="c", tree="t.yaml", caller_ids=["+12025550100"]))
    store.add_contacts("c", [NewContact(f"+1212200000{i}", ("America/New_York",), {},
                                        "list.csv", i + 2) for i in range(3)])
    return store


def _within(seconds: float, work: Callable[[], object]) -> float:
    """Run ``work`` in a thread; how long it took, failing if it is not done in time (the
    busy wait is 30 s, so a call queued behind a lock does not finish in time)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s (queued behind a lock)"
    assert not errors, errors
    return time.monotonic() - started


def test_sqlite_reads_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    store = _store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with store.engine.begin() as writer:  # the write lock, held (a dialer's claim, say)
        writer.execute(update(campaigns).where(campaigns.c.name == "c")
                       .values(state_reason="being written"))
        _within(3.0, lambda: store.summary("c", NOW))
        _within(3.0, lambda: store.contacts("c"))
        _within(3.0, lambda: store.state("c"))
        # a snapshot: the uncommitted write is not seen
        assert store.state("c")[1] is None
    assert store.state("c")[1] == "being written"


def test_sqlite_an_open_read_does_not_hold_up_a_write(tmp_path: Path) -> None:
    store = _store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with reading(store.engine) as reader:  # a console page in the middle of its queries
        assert reader.execute(select(campaigns.c.state)).scalar_one() == "draft"
        _within(3.0, lambda: store.heartbeat("c", "n1", NOW, 0, "running"))
        _within(3.0, lambda: store.set_state("c", CampaignState.RUNNING, "go"))


def test_sqlite_writes_still_take_the_lock_first(tmp_path: Path) -> None:
    """engine.begin() is BEGIN IMMEDIATE: a second writer waits instead of reading and then
    failing to upgrade (SQLITE_BUSY)."""
    store = _store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    other = sqlite3.connect(tmp_path / "db.sqlite", timeout=0.2, isolation_level=None)
    with store.engine.begin() as writer:
        writer.execute(text("SELECT 1"))  # no write yet: the lock is taken at BEGIN anyway
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")  # free again once the writer commits
    other.execute("ROLLBACK")
    other.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_write_through_a_reading_connection_is_refused(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = (f"sqlite:///{tmp_path / 'db.sqlite'}" if backend == "sqlite"
           else request.getfixturevalue("pg_schema_url"))
    store = _store(url)
    try:
        with reading(store.engine) as conn, pytest.raises(ReadOnlyError, match="engine.begin"):
            conn.execute(insert(campaigns).values(
                name="x", state="draft", definition="{}", created_at=NOW.replace(tzinfo=None),
                updated_at=NOW.replace(tzinfo=None)))
        assert store.campaign_names() == ["c"]
        # every read the console makes goes through the reading path without tripping it
        assert store.summary("c", NOW).total == 3
        assert len(store.contacts_page("c", 0, 10)) == 3
        assert store.attempts_page("c", 0, 10) == []
    finally:
        store.close()
