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
"""

from __future__ import annotations

import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from ruamel.yaml import YAML

from autocall.campaign.contacts import import_campaign
from autocall.campaign.model import load_campaign
from autocall.campaign.store import Store
from autocall.web import accounts
from autocall.web.accounts import Role
from autocall.web.app import create_app

sys.path.insert(0, str(Path(__file__).parent.parent / "campaign"))

from pgserver import pg_schema  # noqa: E402

ARTIFACTS = Path(__file__).parent.parent / "artifacts"

TREE = ("name: web-test\noutcomes: [done]\nstart: talk\nnodes:\n"
        "  talk: {pause: 1.0, next: bye}\n  bye: {hangup: done}\n")


def number(i: int) -> str:
    """A distinct valid New York number per index (E.164)."""
    return f"+1212{3000000 + i:07d}"


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


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> Store:
    name = "sqlite_store" if request.param == "sqlite" else "pg_store"
    found: Store = request.getfixturevalue(name)
    return found


@dataclass
class Served:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


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


CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF_INPUT.search(html)
    assert found, "the page has no CSRF token"
    return found.group(1)


@dataclass
class Console:
    """A logged-in browser-like client: cookies kept, redirects not followed."""

    client: httpx.Client
    csrf: str

    def post(self, path: str, data: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        return self.client.post(path, data={"csrf_token": self.csrf, **(data or {})}, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.get(path, **kw)


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


def write_campaign(folder: Path, n: int, **overrides: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tree.yaml").write_text(TREE, encoding="utf-8")
    lines = ["phone,first_name"] + [f"{number(i)},Name{i}" for i in range(n)]
    (folder / "contacts.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data: dict[str, Any] = {
        "name": "web-campaign",
        "tree": "tree.yaml",
        "contacts": ["contacts.csv"],
        "caller_ids": ["+12025550100"],
        "window": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                   "start": "00:00", "end": "23:59:59.999999", "override_legal_hours": True},
        "channels": 2,
        "calls_per_second": 2,
        "ring_timeout": 5,
        "retry": {"max_attempts": 1},
    }
    data.update(overrides)
    path = folder / "campaign.yaml"
    with open(path, "w", encoding="utf-8") as fh:
        YAML().dump(data, fh)
    return path


@pytest.fixture
def make_campaign(tmp_path: Path) -> Callable[..., str]:
    def make(store: Store, n: int = 5, **overrides: Any) -> str:
        folder = tmp_path / f"campaign-{secrets.token_hex(3)}"
        campaign = load_campaign(write_campaign(folder, n, **overrides))
        import_campaign(store, campaign)
        return campaign.name

    return make
