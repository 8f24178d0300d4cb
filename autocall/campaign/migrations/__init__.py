"""The store's schema history as alembic revisions, shipped with the package.

:func:`upgrade` runs them on a connection the store holds (inside its transaction and
lock, so nodes starting at once migrate one after the other); :func:`offline_sql` prints
them as SQL for a DBA. ``alembic -c`` is not needed: the config is built here.
"""

from __future__ import annotations

import io
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection

HERE = Path(__file__).parent
# The revision that stands for the home-made ``autocall_schema_version`` 1..3: a store
# that has that table but no ``alembic_version`` is brought to schema 3 by it.
BASELINE = "0001"


class MigrationError(RuntimeError):
    """The database is at a revision this autocall does not know (a newer autocall)."""


def config(connection: Connection | None = None, url: str | None = None,
           output: io.StringIO | None = None) -> Config:
    cfg = Config(output_buffer=output)
    cfg.set_main_option("script_location", str(HERE))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    return str(ScriptDirectory.from_config(config()).get_current_head())


def upgrade(connection: Connection) -> str:
    """Bring the schema to the newest revision; returns it. The caller holds the lock."""
    try:
        command.upgrade(config(connection), "head")
    except CommandError as exc:
        raise MigrationError(
            f"database schema is at a revision this autocall does not know ({exc}): "
            "upgrade autocall") from exc
    return head()


def current(connection: Connection) -> str | None:
    """The database's revision: ``alembic_version``'s, the baseline's for a store the
    home-made migrations left at version 3, None for an empty database."""
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" in tables:
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    if "autocall_schema_version" in tables:
        version = connection.execute(
            text("SELECT max(version) FROM autocall_schema_version")).scalar()
        if (version or 0) < 3:
            raise MigrationError(f"schema version {version} is older than 3: let autocall "
                                 "upgrade it online (it starts any command), not as SQL")
        return BASELINE
    return None


def offline_sql(url: str) -> str:
    """The SQL that brings the database at ``url`` from its revision (read, nothing is
    changed) to the newest, for a DBA to review and run."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            start = current(conn)
            stamped = "alembic_version" in inspect(conn).get_table_names()
    finally:
        engine.dispose()
    out = io.StringIO()
    cfg = config(url=url, output=out)
    if start is not None and not stamped:  # a store from before alembic: say where it is
        command.stamp(cfg, start, sql=True)
    command.upgrade(cfg, f"{start}:head" if start else "head", sql=True)
    return out.getvalue()
