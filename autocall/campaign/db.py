"""Read and write transactions, kept apart.

Writes open with ``engine.begin()``; on SQLite that is ``BEGIN IMMEDIATE``, the write lock
taken at once, so two writers never both read and then both try to upgrade (SQLITE_BUSY,
which the busy wait cannot cure). Reads open with :func:`reading`: on SQLite a deferred
``BEGIN``, a WAL snapshot that neither waits for the writer nor holds it up, so a console
page or an SSE counter never stalls a dialer's write. A write through a reading connection
is refused (:class:`ReadOnlyError`), on PostgreSQL as on SQLite, so a write path cannot
quietly lose its lock.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import MetaData

READ_ONLY = "autocall_read_only"  # the execution option that marks a reading connection

metadata = MetaData()
"""The store's tables, whichever module defines them: one database, one schema (made by
the migrations only; the tables are what queries are built on)."""


class ReadOnlyError(RuntimeError):
    """A write was attempted through a connection opened for reads."""


# One reader per engine, kept for the process's life (a reader refers to its engine, so a
# weak map would not free either; a process makes one engine per Store, a handful).
_readers: dict[Engine, Engine] = {}


def reading(engine: Engine) -> Connection:
    """A connection for reads only (use it as ``with reading(engine) as conn:``)."""
    reader = _readers.get(engine)
    if reader is None:  # made once per engine: making one costs as much as a small query
        reader = _readers[engine] = engine.execution_options(**{READ_ONLY: True})
    return reader.connect()


def is_reading(conn: Connection) -> bool:
    return bool(conn.get_execution_options().get(READ_ONLY))


def _refuse(conn: Connection, _cursor: Any, statement: str, _params: Any, context: Any,
            _many: bool) -> None:
    if is_reading(conn) and context is not None and (
            context.isinsert or context.isupdate or context.isdelete or context.isddl):
        raise ReadOnlyError(f"a write through a reading connection: {statement[:80]!r}; "
                            "open writes with engine.begin()")


def guard_reads(engine: Engine) -> None:
    """Refuse INSERT/UPDATE/DELETE (and DDL) through a reading connection of ``engine``."""
    if not event.contains(engine, "before_cursor_execute", _refuse):
        event.listen(engine, "before_cursor_execute", _refuse)
