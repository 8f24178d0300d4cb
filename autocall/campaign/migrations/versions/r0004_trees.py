"""Prompt trees in the store, as versions (issue 17): the YAML text byte for byte, who
saved it, when and why, and whether it validated. A campaign pins one version
(``tree: store:NAME@N``), so changing a tree never changes a running campaign.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "autocall_tree_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tree", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("cases", sa.Text),  # the tree's cases file, if it has one
        sa.Column("author", sa.String(120), nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),  # 0: clean, may be published
        sa.Column("published_at", sa.DateTime),
        sa.Column("published_by", sa.String(120)),
        sa.UniqueConstraint("tree", "version", name="uq_autocall_tree_version"),
    )


def downgrade() -> None:
    op.drop_table("autocall_tree_versions")
