"""Fixtures for the console and API tests: a real store (SQLite file or a private
PostgreSQL schema), a real uvicorn server on 127.0.0.1, users and tokens, a campaign.

- ``store``: parametrized over ``sqlite`` and ``postgres`` (a test that takes it runs on
  both); ``sqlite_store`` / ``pg_store`` for one of them.
- ``serve(store, **create_app_options) -> Served``: the app on a free loopback port;
  ``served``: the same on ``store`` with default options.
- ``make_user(role) -> (name, password)`` and ``make_token(role) -> token`` on ``store``.
- ``login(base_url, name, password) -> Console``: an httpx client logged in through the
  login form, with the session's CSRF token at hand.
- ``make_campaign(store, n=…, **yaml_overrides) -> name``: a campaign imported as a user
  would (YAML + CSV through ``import_campaign``), in state draft.

Helpers (``Console``, ``Served``, ``csrf_of``, ``number``…) are in ``consoletest.py``:
``from consoletest import …``.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "campaign"))

from consoletest import Console, Served, csrf_of, free_socket, write_campaign  # noqa: E402
from pgserver import pg_schema  # noqa: E402

from autocall.campaign.contacts import import_campaign  # noqa: E402
from autocall.campaign.model import load_campaign  # noqa: E402
from autocall.campaign.store import Store  # noqa: E402
from autocall.web import accounts  # noqa: E402
from autocall.web.accounts import Role  # noqa: E402
from autocall.web.app import create_app  # noqa: E402


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'web.db'}")
    yield store
    store.close()


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[Store]:
    with pg_schema(postgres_url) as url:
        store = Store(url)
        yield store
        store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Store:
    name = "sqlite_store" if request.param == "sqlite" else "pg_store"
    found: Store = request.getfixturevalue(name)
    return found


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(store: Store, **options: Any) -> Served:
        options.setdefault("secret_key", secrets.token_urlsafe(32))
        app = create_app(store, **options)
        sock = free_socket()
        port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1,
                                lifespan="off")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "uvicorn did not start"
            assert time.monotonic() < deadline, "uvicorn did not start in 10 s"
            time.sleep(0.01)
        served = Served(f"http://127.0.0.1:{port}", server, thread)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


@pytest.fixture
def served(serve: Callable[..., Served], store: Store) -> Served:
    return serve(store)


@pytest.fixture
def make_user(store: Store) -> Callable[..., tuple[str, str]]:
    def make(role: Role | str, name: str | None = None) -> tuple[str, str]:
        role = Role(role)
        name = name or f"{role.value}-{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(12)
        accounts.add_user(store.engine, name, role, password)
        return name, password

    return make


@pytest.fixture
def make_token(store: Store) -> Callable[..., str]:
    def make(role: Role | str, name: str = "test-token") -> str:
        return accounts.create_token(store.engine, name, Role(role), created_by="test")

    return make


@pytest.fixture
def login() -> Iterator[Callable[[str, str, str], Console]]:
    clients: list[httpx.Client] = []

    def log_in(base_url: str, name: str, password: str) -> Console:
        client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=10)
        clients.append(client)
        form = client.get("/login")
        assert form.status_code == 200, form.text
        answer = client.post("/login", data={"username": name, "password": password,
                                             "csrf_token": csrf_of(form.text)})
        assert answer.status_code == 303, answer.text
        page = client.get("/campaigns")
        assert page.status_code == 200, page.text
        return Console(client, csrf_of(page.text))

    yield log_in
    for client in clients:
        client.close()


@pytest.fixture
def make_campaign(tmp_path: Path) -> Callable[..., str]:
    def make(store: Store, n: int = 5, **overrides: Any) -> str:
        folder = tmp_path / f"campaign-{secrets.token_hex(3)}"
        campaign = load_campaign(write_campaign(folder, n, **overrides))
        import_campaign(store, campaign)
        return campaign.name

    return make

