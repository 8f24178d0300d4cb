"""The console while its PostgreSQL restarts: 503 with Retry-After (never a 500 or a
traceback), and pages again once the server is back."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from consoletest import Console, Served
from pgserver import OwnPostgres

from autocall.campaign.store import Store
from autocall.web import accounts
from autocall.web.accounts import Role

pytestmark = pytest.mark.postgres

PG_PORT = 18190  # this file's own server, in the console tests' port range


@pytest.fixture
def own_pg() -> Iterator[OwnPostgres]:
    server = OwnPostgres(PG_PORT).start()
    try:
        yield server
    finally:
        server.stop()


def test_store_down_is_503_then_pages_come_back(
        own_pg: OwnPostgres, serve: Callable[..., Served],
        login: Callable[[str, str, str], Console]) -> None:
    store = Store(own_pg.url)
    try:
        accounts.add_user(store.engine, "ann", Role.ADMIN, "ann-password-1")
        served = serve(store)
        console = login(served.url, "ann", "ann-password-1")
        own_pg.down()
        for path in ("/campaigns", "/metrics"):
            answer = console.get(path)
            assert answer.status_code == 503, (path, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.headers["retry-after"] == "5"
            assert "Traceback" not in answer.text
        own_pg.start()
        assert console.get("/campaigns").status_code == 200
    finally:
        store.close()
