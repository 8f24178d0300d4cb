"""Schema 2 -> 3 (contacts.network_faults) on SQLite and PostgreSQL, with data in it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import us_number
from legacy_schema import make_legacy
from sqlalchemy import create_engine, text

from autocall.campaign import migrations
from autocall.campaign.dialer import next_attempt_at, outcome_of
from autocall.campaign.model import CallStatus, ContactState, Dial, Outcome
from autocall.campaign.store import Store
from autocall.telephony.record import CallRecord

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def _make_v2(url: str, tmp_path: Path) -> str:
    """A store as schema 2 left it: no network_faults column, version rows 1 and 2."""
    make_legacy(url, 2, contacts_n=0)
    engine = create_engine(url)
    with engine.begin() as conn:
        for i in range(3):
            conn.execute(text(
                "INSERT INTO autocall_contacts (campaign, number, timezones, fields, state, "
                "attempts) VALUES ('legacy', :n, 'America/New_York', '{}', 'pending', 0)"),
                {"n": us_number(i)})
    engine.dispose()
    return "legacy"


def _upgrade_and_use(url: str, tmp_path: Path) -> None:
    name = _make_v2(url, tmp_path)
    store = Store(url)  # migrates
    try:
        with store.engine.connect() as conn:  # the schema is alembic's now
            assert migrations.current(conn) == migrations.head()
        contacts = store.contacts(name)
        assert len(contacts) == 3 and all(c.network_faults == 0 for c in contacts)
        (claim,) = store.claim(name, "n1", NOW, 1, lambda c: Dial(c.id, "+12025550100"))
        result = CallRecord(CallStatus.FAILED, 503, ended_by="local")
        outcome = outcome_of(result)
        assert outcome is Outcome.NETWORK_FAULT
        campaign, _, _ = store.campaign(name)
        nxt = next_attempt_at(campaign, claim.attempt_no, outcome, NOW, 1)
        assert store.finish(
            claim.attempt_id, CallRecord(CallStatus.FAILED, 503, ended_at=NOW, outcome=outcome), nxt
        )
        after = store.contact_by_number(name, claim.contact.number)
        assert after is not None and after.network_faults == 1
        assert after.state is ContactState.PENDING and after.attempts == 1
    finally:
        store.close()
    Store(url).close()  # a second start finds the newest revision: nothing to do


def test_migrate_v2_to_v3_sqlite(tmp_path: Path) -> None:
    _upgrade_and_use(f"sqlite:///{tmp_path / 'v2.db'}", tmp_path)


@pytest.mark.postgres
def test_migrate_v2_to_v3_postgres(tmp_path: Path, pg_schema_url: str) -> None:
    _upgrade_and_use(pg_schema_url, tmp_path)
