"""The web console and HTTP API (issue 15): who may do what, what they did, what the API
was asked to dial, and the events that leave for CRMs.

- ``autocall_users`` and ``autocall_tokens``: console logins (argon2 hashes) and API
  tokens (only a SHA-256 of the token is kept; it is printed once), each with one role
  of DESIGN.md §4.
- ``autocall_audit``: who started, paused, stopped, imported what.
- ``autocall_idempotency``: a POST that dials or imports, by its ``Idempotency-Key``,
  with the answer it got, so a retried request is answered, not done again.
- ``autocall_dnc``: the do-not-call numbers managed from the API and console (the
  campaign's own DNC files still apply).
- ``autocall_call_requests``: calls asked for by ``POST /v1/calls``; the web process
  never dials (media never shares its process), a dialer claims and places them.
- ``autocall_outbox``: webhook events committed with the change that caused them and
  delivered, signed, by a worker (Standard Webhooks), in order per ``subject``.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "autocall_users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("disabled_at", sa.DateTime),
    )
    op.create_table(
        "autocall_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(100)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("last_used_at", sa.DateTime),
        sa.Column("revoked_at", sa.DateTime),
    )
    op.create_table(
        "autocall_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("subject", sa.String(200)),
        sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
    )
    op.create_index("ix_autocall_audit_at", "autocall_audit", ["at"])
    op.create_table(
        "autocall_idempotency",
        sa.Column("principal", sa.String(120), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request", sa.String(64), nullable=False),  # SHA-256 of method, path, body
        sa.Column("status", sa.Integer),  # None while the first request is being done
        sa.Column("response", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "autocall_dnc",
        sa.Column("number", sa.String(20), primary_key=True),
        sa.Column("added_at", sa.DateTime, nullable=False),
        sa.Column("added_by", sa.String(120)),
        sa.Column("source", sa.String(200)),
    )
    op.create_table(
        "autocall_call_requests",
        sa.Column("id", sa.String(40), primary_key=True),  # the public call id
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("created_by", sa.String(120)),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),  # queued, dialing, done
        sa.Column("node", sa.String(100)),
        sa.Column("claimed_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("call_id", sa.String(200)),  # SIP Call-ID: the record in autocall_calls
        sa.Column("record", sa.Text),  # the final call record (JSON), same shape as the CDR
    )
    op.create_index("ix_autocall_call_requests_state", "autocall_call_requests",
                    ["state", "created_at"])
    op.create_table(
        "autocall_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(40), nullable=False, unique=True),
        sa.Column("type", sa.String(60), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),  # order is kept per subject
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret_env", sa.String(200)),  # the NAME of the env var holding the key
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("next_at", sa.DateTime, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("delivered_at", sa.DateTime),
        sa.Column("given_up_at", sa.DateTime),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("locked_by", sa.String(100)),
        sa.Column("locked_until", sa.DateTime),
    )
    op.create_index("ix_autocall_outbox_due", "autocall_outbox",
                    ["delivered_at", "given_up_at", "next_at"])
    # "the oldest undelivered event of this subject and URL" (order per call)
    op.create_index("ix_autocall_outbox_subject", "autocall_outbox", ["subject", "id"])


def downgrade() -> None:
    for table in ("autocall_outbox", "autocall_call_requests", "autocall_dnc",
                  "autocall_idempotency", "autocall_audit", "autocall_tokens",
                  "autocall_users"):
        op.drop_table(table)
