"""The schema as the home-made migrations left it at version 3.

Idempotent on purpose: a store those migrations made (version 1, 2 or 3) gets only the
tables and column it lacks, an empty database gets them all. Frozen: later changes are
later revisions.

Revision ID: 0001
"""

from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = "0001"
down_revision = None


def _outcome_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("started_at", sa.DateTime),
        sa.Column("answered_at", sa.DateTime),
        sa.Column("ended_at", sa.DateTime),
        sa.Column("duration", sa.Float),
        sa.Column("billable", sa.Float),
        sa.Column("digits", sa.String(200), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("variables", sa.Text, nullable=False),
        sa.Column("recording", sa.Text),
        sa.Column("error", sa.Text),
    ]


def _schema_3() -> sa.MetaData:
    meta = sa.MetaData()
    sa.Table("autocall_schema_version", meta,
             sa.Column("version", sa.Integer, nullable=False))
    sa.Table(
        "autocall_campaigns", meta,
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_reason", sa.Text),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False))
    sa.Table(
        "autocall_contacts", meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("campaign", sa.String(100), sa.ForeignKey("autocall_campaigns.name"),
                  nullable=False),
        sa.Column("number", sa.String(20), nullable=False),
        sa.Column("timezones", sa.String(200), nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", sa.DateTime),
        sa.Column("wait_kind", sa.String(12)),
        sa.Column("wait_reason", sa.Text),
        sa.Column("last_outcome", sa.String(20)),
        sa.Column("source", sa.Text),
        sa.Column("network_faults", sa.Integer, nullable=False, server_default="0"),
        sa.UniqueConstraint("campaign", "number", name="uq_autocall_contacts_number"),
        sa.Index("ix_autocall_contacts_due", "campaign", "state", "next_at"))
    sa.Table(
        "autocall_attempts", meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("campaign", sa.String(100), nullable=False),
        sa.Column("contact_id", sa.Integer, sa.ForeignKey("autocall_contacts.id"),
                  nullable=False),
        sa.Column("attempt_no", sa.Integer, nullable=False),
        sa.Column("number", sa.String(20), nullable=False),
        sa.Column("caller_id", sa.String(40), nullable=False),
        sa.Column("node", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(20)),
        sa.Column("sip_code", sa.Integer),
        sa.Column("q850", sa.Integer),
        sa.Column("created_at", sa.DateTime, nullable=False),
        *_outcome_columns(),
        sa.UniqueConstraint("contact_id", "attempt_no", name="uq_autocall_attempt_once"),
        sa.Index("ix_autocall_attempts_open", "campaign", "ended_at"))
    sa.Table(
        "autocall_nodes", meta,
        sa.Column("node", sa.String(100), primary_key=True),
        sa.Column("campaign", sa.String(100), nullable=False),
        sa.Column("heartbeat", sa.DateTime, nullable=False),
        sa.Column("in_flight", sa.Integer, nullable=False),
        sa.Column("status", sa.Text))
    sa.Table(
        "autocall_calls", meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("direction", sa.String(10), nullable=False),
        sa.Column("call_id", sa.String(200), nullable=False),
        sa.Column("number", sa.String(100)),
        sa.Column("caller", sa.Text),
        sa.Column("source", sa.String(100)),
        sa.Column("tree", sa.String(100)),
        sa.Column("status", sa.String(16)),
        sa.Column("outcome", sa.String(40)),
        sa.Column("sip_code", sa.Integer),
        sa.Column("q850", sa.Integer),
        *_outcome_columns(),
        sa.UniqueConstraint("call_id", "direction", name="uq_autocall_calls_once"))
    return meta


def upgrade() -> None:
    bind = op.get_bind()
    if context.is_offline_mode():  # an empty database: every table
        _schema_3().create_all(bind, checkfirst=False)
        return
    _schema_3().create_all(bind, checkfirst=True)
    # version 2 -> 3 of the home-made migrations
    if "network_faults" not in {c["name"] for c in sa.inspect(bind).get_columns(
            "autocall_contacts")}:
        op.add_column("autocall_contacts", sa.Column(
            "network_faults", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    _schema_3().drop_all(op.get_bind())
