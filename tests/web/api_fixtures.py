"""Fixtures for the /v1 API tests: a real uvicorn server on 127.0.0.1 in a thread, on
a real store (SQLite file or a PostgreSQL schema of the test's own), with its own
prompts and recordings folders, and tokens per role."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from autocall.campaign.store import Store
from autocall.config import Settings
from autocall.web import accounts
from autocall.web.accounts import Role
from autocall.web.app import create_app

# The robot holds the line 1.2 s, then hangs up (a tree the campaign tests use too).
TREE = ("name: hold\noutcomes: [done]\nstart: talk\nnodes:\n"
        "  talk: {pause: 1.2, next: bye}\n  bye: {hangup: done}\n")

WINDOW = {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00",
          "end": "23:59:59.999999", "override_legal_hours": True}


def campaign_body(name: str = "spring", **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {"name": name, "tree": "hold", "caller_ids": ["+12025550100"],
                               "window": WINDOW, "channels": 4, "calls_per_second": 50,
                               "ring_timeout": 2, "retry": {"max_attempts": 1}}
    body.update(overrides)
    return body


def us_number(i: int) -> str:
    return f"+1212{2000000 + i:07d}"


class Live:
    """A uvicorn server in a thread on the store at ``url``."""

    def __init__(self, url: str, root: Path, port: int = 0) -> None:
        self.url = url
        self.store = Store(url)
        self.prompts = root / "prompts"
        self.recordings = root / "recordings"
        self.prompts.mkdir(exist_ok=True)
        self.recordings.mkdir(exist_ok=True)
        (self.prompts / "hold.yaml").write_text(TREE, encoding="utf-8")
        settings = Settings(database_url=url, prompts_dir=self.prompts,
                            recordings_dir=self.recordings)
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(create_app(self.store, settings=settings), host="127.0.0.1",
                                port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        self._clients: list[httpx.Client] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, role: Role | None, name: str | None = None) -> httpx.Client:
        """A client with a fresh token of ``role`` (None: no token at all)."""
        headers = {}
        if role is not None:
            token = accounts.create_token(self.store.engine, name or f"t-{role.value}", role)
            headers["Authorization"] = f"Bearer {token}"
        client = httpx.Client(base_url=self.base, timeout=30, headers=headers)
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self.server.should_exit = True
        self.thread.join(10)
        self.store.close()


@pytest.fixture(name="live", params=["sqlite", "postgres"])
def live_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Live]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'web.db'}"
    else:
        url = request.getfixturevalue("pg_schema_url")
    server = Live(url, tmp_path)
    yield server
    server.close()


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    """The response is a problem document (RFC 9457) with ``status``; its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, object] = response.json()
    assert body["status"] == status and body["title"]
    return body
