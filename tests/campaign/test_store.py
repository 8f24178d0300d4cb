"""The store: migrations, one attempt row per claim, idempotent finish, recovery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from autocall.campaign.migrations import head
from autocall.campaign.model import (
    CallStatus,
    Campaign,
    ContactState,
    Defer,
    Dial,
    NewContact,
    Outcome,
)
from autocall.campaign.store import Store, StoreError
from autocall.telephony.record import CallRecord

SCHEMA_VERSION = head()  # the schema is alembic's now; its newest revision

NOW = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)


def _store(tmp_path: Path, n: int = 3) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.save_campaign(Campaign(name="c", tree="t.yaml", caller_ids=["+12025550100"]))
    store.add_contacts("c", [NewContact(f"+1212200000{i}", ("America/New_York",), {"i": str(i)},
                                        "list.csv", i + 2) for i in range(n)])
    return store


def test_schema_version_recorded_and_newer_schema_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")
                            ).scalar() == SCHEMA_VERSION
    assert Store(store.url).migrate() == SCHEMA_VERSION  # idempotent
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff9999'"))
    with pytest.raises(StoreError, match="upgrade autocall"):
        Store(store.url)


def test_claim_writes_attempt_rows_and_applies_plans(tmp_path: Path) -> None:
    store = _store(tmp_path, 3)
    ids = [c.id for c in store.contacts("c")]

    def plan(contact):  # noqa: ANN001, ANN202
        if contact.id == ids[1]:
            return Defer(contact.id, NOW + timedelta(hours=2), "window", "closed there")
        return Dial(contact.id, "+12025550100")

    claims = store.claim("c", "n1", NOW, 10, plan)
    assert [c.contact.id for c in claims] == [ids[0], ids[2]]
    rows = store.attempts("c")
    assert [(a.contact_id, a.attempt_no, a.status) for a in rows] == [
        (ids[0], 1, CallStatus.QUEUED), (ids[2], 1, CallStatus.QUEUED)]
    # Nothing is due any more: two in flight, one deferred.
    assert store.claim("c", "n1", NOW, 10, plan) == []
    waiting = store.contact_by_number("c", "+12122000001")
    assert waiting is not None and waiting.next_at == NOW + timedelta(hours=2)
    s = store.summary("c", NOW)
    assert (s.in_flight, s.pending, s.due, s.waiting) == (2, 1, 0, {"window": 1})


def test_finish_is_once_and_moves_contact(tmp_path: Path) -> None:
    store = _store(tmp_path, 1)
    (claim,) = store.claim("c", "n1", NOW, 1, lambda c: Dial(c.id, "+12025550100"))
    busy = CallRecord(CallStatus.BUSY, outcome=Outcome.BUSY, sip_code=486, started_at=NOW,
                      ended_at=NOW + timedelta(seconds=3))
    assert store.finish(claim.attempt_id, busy, NOW + timedelta(minutes=10))
    late = CallRecord(CallStatus.COMPLETED, outcome=Outcome.COMPLETED)
    assert not store.finish(claim.attempt_id, late, None)  # a finished record never changes
    (a,) = store.attempts("c")
    assert (a.outcome, a.sip_code, a.duration) == (Outcome.BUSY, 486, 3.0)
    c = store.contacts("c")[0]
    assert (c.state, c.attempts, c.next_at) == (
        ContactState.PENDING, 1, NOW + timedelta(minutes=10))
    # Next claim is attempt 2, never attempt 1 again.
    assert store.claim("c", "n1", NOW, 1, lambda c: Dial(c.id, "x")) == []
    (again,) = store.claim("c", "n1", NOW + timedelta(minutes=11), 1,
                           lambda c: Dial(c.id, "x"))
    assert again.attempt_no == 2


def test_recover_only_own_or_dead_nodes(tmp_path: Path) -> None:
    store = _store(tmp_path, 2)
    a, b = store.contacts("c")
    store.heartbeat("c", "alive", NOW, 1, "dialing")
    store.heartbeat("c", "dead", NOW - timedelta(minutes=5), 1, "dialing")
    store.claim("c", "alive", NOW, 1, lambda c: Dial(c.id, "x"))
    store.claim("c", "dead", NOW, 1, lambda c: Dial(c.id, "x"))
    resolved = store.recover("c", "me", NOW, lambda n: NOW)
    assert len(resolved) == 1
    by_node = {x.node: x for x in store.attempts("c")}
    assert by_node["dead"].outcome is Outcome.INTERRUPTED
    assert by_node["alive"].ended_at is None  # a live node's call is left alone


def test_unique_attempt_per_contact_is_enforced_by_the_database(tmp_path: Path) -> None:
    store = _store(tmp_path, 1)
    (claim,) = store.claim("c", "n1", NOW, 1, lambda c: Dial(c.id, "x"))
    engine = create_engine(store.url)
    with pytest.raises(Exception, match="UNIQUE"), engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO autocall_attempts (campaign, contact_id, attempt_no, number, "
            "caller_id, node, status, created_at, digits, path, variables) VALUES "
            "('c', :cid, 1, '+1', 'x', 'n2', 'queued', '2026-01-01', '', '[]', '{}')"),
            {"cid": claim.contact.id})
    engine.dispose()
