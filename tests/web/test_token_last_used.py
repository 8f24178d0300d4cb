"""A token's last use is recorded, but not on every request: reads by a polling CRM stay
reads (on SQLite a write per request queues behind the dialer's writes)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
from consoletest import Served
from sqlalchemy import select, update

from autocall.campaign.store import Store
from autocall.web import accounts
from autocall.web.accounts import Role, tokens


def _last_used(store: Store) -> datetime | None:
    with store.engine.connect() as conn:
        found: datetime | None = conn.execute(select(tokens.c.last_used_at)).scalar_one()
    return found


def test_last_use_written_at_most_once_a_minute(
        store: Store, served: Served, make_token: Callable[..., str]) -> None:
    token = make_token(Role.VIEWER, "crm")
    assert _last_used(store) is None
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=served.url, headers=headers, timeout=10) as client:
        assert client.get("/v1/dnc").status_code == 200
        first = _last_used(store)
        assert first is not None  # the first use is recorded
        for _ in range(5):
            assert client.get("/v1/dnc").status_code == 200
        assert _last_used(store) == first  # no write per request

        earlier = first - accounts.LAST_USED_EVERY - timedelta(seconds=1)
        with store.engine.begin() as conn:
            conn.execute(update(tokens).values(last_used_at=earlier))
        assert client.get("/v1/dnc").status_code == 200
        later = _last_used(store)
        assert later is not None and later > first  # a minute on, it is written again

        accounts.revoke_tokens(store.engine, "crm", "test")
        assert client.get("/v1/dnc").status_code == 401
