"""The console's contact import wizard (issue 15): an uploaded list waits here between
its preview and its confirmation, so the confirmation imports exactly the bytes that
were previewed (their SHA-256 is carried by the form) and only once (the row is marked
imported in the transaction that adds the contacts). The bytes are dropped at import;
unconfirmed uploads are purged after a day.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "autocall_imports",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("campaign", sa.String(100), nullable=False),
        sa.Column("created_by", sa.String(120), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("filename", sa.String(200), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary),  # NULL once imported
        sa.Column("imported_at", sa.DateTime),
        sa.Column("imported_by", sa.String(120)),
        sa.Column("result", sa.Text),  # JSON: what the import did, for the done page
    )
    op.create_index("ix_autocall_imports_created", "autocall_imports", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_autocall_imports_created", "autocall_imports")
    op.drop_table("autocall_imports")
