"""A store as the home-made migrations of autocall before alembic left it (schema 3).

The DDL is main's ``store.py`` at schema version 3, copied here on purpose: the alembic
baseline must meet exactly what those stores hold, so it must not check itself against
its own copy. :func:`make_legacy` fills it with rows of every kind.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    insert,
    text,
)

metadata = MetaData()
schema_version = Table(
    "autocall_schema_version", metadata, Column("version", Integer, nullable=False))
campaigns = Table(
    "autocall_campaigns", metadata,
    Column("name", String(100), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("state_reason", Text),
    Column("definition", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False))
contacts = Table(
    "autocall_contacts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign", String(100), ForeignKey("autocall_campaigns.name"), nullable=False),
    Column("number", String(20), nullable=False),
    Column("timezones", String(200), nullable=False),
    Column("fields", Text, nullable=False),
    Column("state", String(12), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_at", DateTime),
    Column("wait_kind", String(12)),
    Column("wait_reason", Text),
    Column("last_outcome", String(20)),
    Column("source", Text),
    Column("network_faults", Integer, nullable=False, default=0, server_default="0"),
    UniqueConstraint("campaign", "number", name="uq_autocall_contacts_number"),
    Index("ix_autocall_contacts_due", "campaign", "state", "next_at"))


def _outcome_columns() -> list[Column[Any]]:
    return [
        Column("started_at", DateTime), Column("answered_at", DateTime),
        Column("ended_at", DateTime), Column("duration", Float), Column("billable", Float),
        Column("digits", String(200), nullable=False, default=""),
        Column("path", Text, nullable=False, default="[]"),
        Column("variables", Text, nullable=False, default="{}"),
        Column("recording", Text), Column("error", Text),
    ]


attempts = Table(
    "autocall_attempts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign", String(100), nullable=False),
    Column("contact_id", Integer, ForeignKey("autocall_contacts.id"), nullable=False),
    Column("attempt_no", Integer, nullable=False),
    Column("number", String(20), nullable=False),
    Column("caller_id", String(40), nullable=False),
    Column("node", String(100), nullable=False),
    Column("status", String(16), nullable=False),
    Column("outcome", String(20)),
    Column("sip_code", Integer),
    Column("q850", Integer),
    Column("created_at", DateTime, nullable=False),
    *_outcome_columns(),
    UniqueConstraint("contact_id", "attempt_no", name="uq_autocall_attempt_once"),
    Index("ix_autocall_attempts_open", "campaign", "ended_at"))
nodes = Table(
    "autocall_nodes", metadata,
    Column("node", String(100), primary_key=True),
    Column("campaign", String(100), nullable=False),
    Column("heartbeat", DateTime, nullable=False),
    Column("in_flight", Integer, nullable=False, default=0),
    Column("status", Text))
calls = Table(
    "autocall_calls", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("direction", String(10), nullable=False),
    Column("call_id", String(200), nullable=False),
    Column("number", String(100)),
    Column("caller", Text),
    Column("source", String(100)),
    Column("tree", String(100)),
    Column("status", String(16)),
    Column("outcome", String(40)),
    Column("sip_code", Integer),
    Column("q850", Integer),
    *_outcome_columns(),
    UniqueConstraint("call_id", "direction", name="uq_autocall_calls_once"))

WHEN = datetime(2026, 3, 2, 15, 0)
CAMPAIGN = {"name": "legacy", "tree": "tree.yaml", "caller_ids": ["+12025550100"]}


def make_legacy(url: str, version: int = 3, contacts_n: int = 4) -> dict[str, int]:
    """A schema-``version`` store (1..3) with rows in every table; returns the counts."""
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = [schema_version, campaigns, contacts, attempts, nodes]
        if version >= 2:
            tables.append(calls)
        metadata.create_all(conn, tables=tables)
        conn.execute(insert(schema_version), [{"version": v} for v in range(1, version + 1)])
        conn.execute(insert(campaigns).values(
            name="legacy", state="running", definition=json.dumps(CAMPAIGN),
            created_at=WHEN, updated_at=WHEN))
        outcomes = ["opted-out", "completed", "busy", None]
        for i in range(contacts_n):
            outcome = outcomes[i % len(outcomes)]
            conn.execute(insert(contacts).values(
                campaign="legacy", number=f"+1212200000{i}", timezones="America/New_York",
                fields=json.dumps({"first_name": f"N{i}"}),
                state="pending" if outcome is None else "done", attempts=int(bool(outcome)),
                last_outcome=outcome, source=f"list.csv:{i + 2}"))
            if outcome is None:
                continue
            variables: dict[str, Any] = {"choice": str(i), "dialogue_outcome": (
                "opt-out" if outcome == "opted-out" else "done")}
            if i == 1:
                variables["answered_by"] = "human"
            conn.execute(insert(attempts).values(
                campaign="legacy", contact_id=i + 1, attempt_no=1, number=f"+1212200000{i}",
                caller_id="+12025550100", node="old-node", status="completed",
                outcome=outcome, sip_code=200, created_at=WHEN, started_at=WHEN,
                answered_at=WHEN, ended_at=WHEN, duration=3.0, billable=2.0, digits=str(i),
                path=json.dumps(["hello", "menu"]), variables=json.dumps(variables)))
        conn.execute(insert(nodes).values(node="old-node", campaign="legacy", heartbeat=WHEN,
                                          in_flight=0, status="exited"))
        if version >= 2:
            conn.execute(insert(calls).values(
                direction="inbound", call_id="legacy-call", number="alice",
                caller="sip:alice@127.0.0.1", tree="office", status="completed",
                outcome="transferred", sip_code=200, started_at=WHEN, ended_at=WHEN,
                digits="1", path='["welcome"]', variables='{"choice": "1"}'))
        if version < 3:  # version 3 added it
            conn.execute(text("ALTER TABLE autocall_contacts DROP COLUMN network_faults"))
    engine.dispose()
    counts = {"contacts": contacts_n, "campaigns": 1, "nodes": 1,
              "attempts": sum(1 for i in range(contacts_n) if outcomes[i % 4] is not None),
              "calls": int(version >= 2)}
    return counts
