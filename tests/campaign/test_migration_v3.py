"""Schema 2 -> 3 (contacts.network_faults) on SQLite and PostgreSQL, with data in it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import write_campaign
from sqlalchemy import create_engine, func, select, text

from autocall.campaign.contacts import import_campaign
from autocall.campaign.dialer import CallResult, next_attempt_at, outcome_of
from autocall.campaign.model import CallStatus, ContactState, Dial, Outcome, load_campaign
from autocall.campaign.store import SCHEMA_VERSION, CallRecord, Store, schema_version

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def _make_v2(url: str, tmp_path: Path) -> str:
    """A store as schema 2 left it: no network_faults column, version rows 1 and 2."""
    store = Store(url)
    campaign = load_campaign(write_campaign(tmp_path, 3))
    import_campaign(store, campaign)
    store.close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE autocall_contacts DROP COLUMN network_faults"))
        conn.execute(text("DELETE FROM autocall_schema_version WHERE version = 3"))
    engine.dispose()
    return campaign.name


def _upgrade_and_use(url: str, tmp_path: Path) -> None:
    name = _make_v2(url, tmp_path)
    store = Store(url)  # migrates
    try:
        with store.engine.connect() as conn:
            assert conn.execute(select(func.max(schema_version.c.version))).scalar() == 3
        assert SCHEMA_VERSION == 3
        contacts = store.contacts(name)
        assert len(contacts) == 3 and all(c.network_faults == 0 for c in contacts)
        (claim,) = store.claim(name, "n1", NOW, 1, lambda c: Dial(c.id, "+12025550100"))
        result = CallResult(CallStatus.FAILED, 503, ended_by="local")
        outcome = outcome_of(result)
        assert outcome is Outcome.NETWORK_FAULT
        campaign, _, _ = store.campaign(name)
        nxt = next_attempt_at(campaign, claim.attempt_no, outcome, NOW, 1)
        assert store.finish(
            claim.attempt_id, CallRecord(CallStatus.FAILED, outcome, 503, ended_at=NOW), nxt
        )
        after = store.contact_by_number(name, claim.contact.number)
        assert after is not None and after.network_faults == 1
        assert after.state is ContactState.PENDING and after.attempts == 1
    finally:
        store.close()
    Store(url).close()  # a second start finds version 3: nothing to do


def test_migrate_v2_to_v3_sqlite(tmp_path: Path) -> None:
    _upgrade_and_use(f"sqlite:///{tmp_path / 'v2.db'}", tmp_path)


@pytest.mark.postgres
def test_migrate_v2_to_v3_postgres(tmp_path: Path, postgres_url: str) -> None:
    schema = f"autocall_h4_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in postgres_url else "?"
    try:
        _upgrade_and_use(f"{postgres_url}{sep}options=-csearch_path%3D{schema}", tmp_path)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
