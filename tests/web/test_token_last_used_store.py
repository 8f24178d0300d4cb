"""A token's last_used_at is written at most once a minute (issue 15): a CRM polling the
API must not write, and so take the store's write lock, on every request."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from autocall.campaign.store import Store
from autocall.web import accounts
from autocall.web.accounts import Role

T0 = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)


def _last_used(store: Store) -> datetime | None:
    [row] = accounts.list_tokens(store.engine)
    return row.last_used_at


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_last_used_at_is_written_once_a_minute(backend: str, tmp_path: Path,
                                               request: pytest.FixtureRequest) -> None:
    url = (f"sqlite:///{tmp_path / 'db.sqlite'}" if backend == "sqlite"
           else request.getfixturevalue("pg_schema_url"))
    store = Store(url)
    try:
        token = accounts.create_token(store.engine, "crm", Role.MARKETER)
        assert _last_used(store) is None
        assert accounts.token_principal(store.engine, token, T0) is not None
        assert _last_used(store) == T0.replace(tzinfo=None)
        for later in (timedelta(seconds=1), timedelta(seconds=59)):
            who = accounts.token_principal(store.engine, token, T0 + later)
            assert who is not None and who.name == "crm" and who.role is Role.MARKETER
            assert _last_used(store) == T0.replace(tzinfo=None)
        accounts.token_principal(store.engine, token, T0 + timedelta(seconds=60))
        assert _last_used(store) == (T0 + timedelta(seconds=60)).replace(tzinfo=None)
        accounts.revoke_tokens(store.engine, "crm", "admin")
        assert accounts.token_principal(store.engine, token, T0 + timedelta(hours=1)) is None
        assert _last_used(store) == (T0 + timedelta(seconds=60)).replace(tzinfo=None)
        assert accounts.token_principal(store.engine, "ac_nonsense", T0) is None
    finally:
        store.close()


def test_a_recent_token_is_checked_while_a_writer_holds_the_sqlite_lock(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        token = accounts.create_token(store.engine, "crm", Role.MARKETER)
        accounts.token_principal(store.engine, token, T0)
        found: list[object] = []
        with store.engine.begin():  # the dialer writing (BEGIN IMMEDIATE: the lock, held)
            check = threading.Thread(target=lambda: found.append(accounts.token_principal(
                store.engine, token, T0 + timedelta(seconds=30))), daemon=True)
            check.start()
            check.join(3.0)  # the busy wait is 30 s: a request that writes would still wait
            assert not check.is_alive(), "the API request waited for the dialer's write lock"
        assert found and found[0] is not None
    finally:
        store.close()
