"""The schema as alembic migrations: fresh stores, stores of autocall before alembic
(schema 3, built with that version's own DDL), nodes starting at once, SQL for a DBA."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from legacy_schema import make_legacy
from pgserver import pg_schema
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from autocall.campaign import migrations
from autocall.campaign.model import Outcome
from autocall.campaign.store import Store, StoreError
from autocall.cli import app

TABLES = {"autocall_campaigns", "autocall_contacts", "autocall_attempts", "autocall_nodes",
          "autocall_calls"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    with pg_schema(request.getfixturevalue("postgres_url")) as pg:
        yield pg


def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return migrations.current(conn)
    finally:
        engine.dispose()


def _count(url: str, table: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def test_a_fresh_store_is_created_at_the_newest_revision(url: str) -> None:
    assert _revision(url) is None
    store = Store(url)
    with store.engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) >= TABLES
    assert store.migrate() == migrations.head()  # again: nothing to do
    store.close()
    assert _revision(url) == migrations.head()


def test_a_schema_3_store_is_upgraded_in_place_keeping_every_row(url: str) -> None:
    counts = make_legacy(url, 3)
    assert _revision(url) == migrations.BASELINE
    store = Store(url)
    try:
        assert _revision(url) == migrations.head()
        for table, n in counts.items():
            assert _count(url, f"autocall_{table}") == n, table
        (campaign,) = store.campaign_names()
        contacts = store.contacts(campaign)
        assert [c.number for c in contacts] == [f"+1212200000{i}" for i in range(4)]
        assert [c.fields["first_name"] for c in contacts] == ["N0", "N1", "N2", "N3"]
        attempts = store.attempts(campaign)
        assert [a.digits for a in attempts] == ["0", "1", "2"]
        assert all(a.path == ["hello", "menu"] and a.billable == 2.0 for a in attempts)
        assert [a.variables["choice"] for a in attempts] == ["0", "1", "2"]
        (call,) = store.calls()
        assert call.call_id == "legacy-call" and call.variables == {"choice": "1"}
        # 0002: the dialogue's outcome out of variables, one spelling of the opt-out
        assert call.dialogue_outcome == "transferred"
        assert [a.dialogue_outcome for a in attempts] == ["opt-out", "done", "done"]
        assert all("dialogue_outcome" not in a.variables for a in attempts)
        assert [a.answered_by for a in attempts] == [None, "human", None]
        assert attempts[0].outcome is Outcome.OPTED_OUT and contacts[0].last_outcome is (
            Outcome.OPTED_OUT)
        assert _count(url, "autocall_attempts WHERE outcome = 'opted-out'") == 0
        assert _count(url, "autocall_contacts WHERE last_outcome = 'opt-out'") == 1
        # an autocall from before alembic refuses the store instead of writing old shapes
        assert _count(url, "autocall_schema_version WHERE version = 4") == 1
    finally:
        store.close()


@pytest.mark.parametrize("version", [1, 2])
def test_older_home_made_versions_are_upgraded_too(tmp_path: Path, version: int) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    counts = make_legacy(url, version)
    Store(url).close()
    assert _revision(url) == migrations.head()
    for table, n in counts.items():
        assert _count(url, f"autocall_{table}") == n, table
    assert _count(url, "autocall_calls") == counts["calls"]


@pytest.mark.parametrize("start", ["fresh", "schema-3"])
def test_nodes_starting_at_once_migrate_once(url: str, start: str) -> None:
    if start == "schema-3":
        make_legacy(url, 3)
    go = time.time() + 3.0  # the interpreters start first, then open the store together
    code = ("import sys, time\n"
            "from autocall.campaign.store import Store\n"
            "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
            "Store(sys.argv[1]).close()\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, url, str(go)],
                              stderr=subprocess.PIPE, text=True, env=dict(os.environ))
             for _ in range(6)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert _revision(url) == migrations.head()
    assert _count(url, "alembic_version") == 1
    if start == "schema-3":
        assert _count(url, "autocall_attempts") == 3


def test_a_store_of_a_newer_autocall_is_refused(url: str) -> None:
    Store(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff9999'"))
    engine.dispose()
    with pytest.raises(StoreError, match="upgrade autocall"):
        Store(url)


def _sql(url: str) -> str:
    result = CliRunner().invoke(app, ["campaign", "db", "upgrade", "--sql", "--db", url])
    assert result.exit_code == 0, result.output
    return result.stdout


def _run_script(url: str, sql: str) -> None:
    """What a DBA does with the SQL: run it as it is."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            db.executescript(sql)
        return
    engine = create_engine(url)
    with engine.connect() as conn:
        conn.exec_driver_sql(sql)
        conn.commit()
    engine.dispose()


def test_offline_sql_creates_a_fresh_sqlite_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dba.db'}"
    sql = _sql(url)
    assert "CREATE TABLE autocall_contacts" in sql and "alembic_version" in sql
    _run_script(url, sql)
    assert _revision(url) == migrations.head()
    Store(url).close()  # autocall finds it at the newest revision


def test_offline_sql_upgrades_a_schema_3_store(url: str) -> None:
    counts = make_legacy(url, 3)
    sql = _sql(url)
    assert "CREATE TABLE autocall_contacts" not in sql  # only what schema 3 lacks
    assert _revision(url) == migrations.BASELINE  # --sql changed nothing
    _run_script(url, sql)
    assert _revision(url) == migrations.head()
    for table, n in counts.items():
        assert _count(url, f"autocall_{table}") == n, table
    store = Store(url)
    assert store.calls()[0].variables == {"choice": "1"}
    store.close()
