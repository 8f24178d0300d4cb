"""One call record (issue 14): explicit ``dialogue_outcome`` and ``answered_by``, one
spelling of the opt-out, the node that writes a call's record at answer.

Campaign attempts kept the dialogue's outcome inside ``variables``: it moves to its own
column; AMD's verdict is copied to ``answered_by`` (the tree sees it as a variable too).
``autocall_calls.outcome`` always meant the dialogue's outcome: renamed, so ``outcome``
means the retry outcome wherever it is. Stored
``opted-out`` becomes ``opt-out``, the trees' spelling. Version 4 in the old
``autocall_schema_version`` table makes an autocall from before alembic refuse this
store instead of writing the old shapes into it.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"



def _from_variables(key: str, remove: bool) -> None:
    """variables[key] -> the column ``key`` (SQL, not Python, so --sql has it too)."""
    if op.get_context().dialect.name == "postgresql":
        get = f"CAST(variables AS jsonb) ->> '{key}'"
        rest = f"CAST(CAST(variables AS jsonb) - '{key}' AS text)"
        has = f"strpos(variables, '\"{key}\"') > 0"
    else:  # SQLite's JSON1
        get = f"json_extract(variables, '$.{key}')"
        rest = f"json_remove(variables, '$.{key}')"
        has = f"instr(variables, '\"{key}\"') > 0"
    moved = f", variables = {rest}" if remove else ""
    # no LIKE '%…%': a % would be a placeholder to some of the tools a DBA runs this with
    op.execute(f"UPDATE autocall_attempts SET {key} = {get}{moved} WHERE {has}")


def upgrade() -> None:
    op.add_column("autocall_attempts", sa.Column("dialogue_outcome", sa.String(40)))
    op.add_column("autocall_attempts", sa.Column("answered_by", sa.String(16)))
    op.execute("ALTER TABLE autocall_calls RENAME COLUMN outcome TO dialogue_outcome")
    op.add_column("autocall_calls", sa.Column("answered_by", sa.String(16)))
    # written at answer by this process, closed by its next start if a crash cut it
    op.add_column("autocall_calls", sa.Column("node", sa.String(100)))
    _from_variables("dialogue_outcome", remove=True)
    _from_variables("answered_by", remove=False)
    op.execute("UPDATE autocall_attempts SET outcome = 'opt-out' WHERE outcome = 'opted-out'")
    op.execute("UPDATE autocall_contacts SET last_outcome = 'opt-out' "
               "WHERE last_outcome = 'opted-out'")
    op.execute("INSERT INTO autocall_schema_version (version) VALUES (4)")


def downgrade() -> None:
    op.execute("DELETE FROM autocall_schema_version WHERE version = 4")
    op.execute("UPDATE autocall_contacts SET last_outcome = 'opted-out' "
               "WHERE last_outcome = 'opt-out'")
    op.execute("UPDATE autocall_attempts SET outcome = 'opted-out' WHERE outcome = 'opt-out'")
    op.drop_column("autocall_calls", "node")
    op.drop_column("autocall_calls", "answered_by")
    op.execute("ALTER TABLE autocall_calls RENAME COLUMN dialogue_outcome TO outcome")
    op.drop_column("autocall_attempts", "answered_by")
    op.drop_column("autocall_attempts", "dialogue_outcome")
