"""Helpers the console and API tests share (imported by name: tests/web is on sys.path,
put there by conftest.py)."""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from ruamel.yaml import YAML

ARTIFACTS = Path(__file__).parent.parent / "artifacts"

TREE = ("name: web-test\noutcomes: [done]\nstart: talk\nnodes:\n"
        "  talk: {pause: 1.0, next: bye}\n  bye: {hangup: done}\n")


def number(i: int) -> str:
    """A distinct valid New York number per index (E.164)."""
    return f"+1212{3000000 + i:07d}"


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
