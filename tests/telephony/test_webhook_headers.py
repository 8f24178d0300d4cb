"""Tree webhook nodes with ``headers``: secrets come from the environment at call time
(``${ENV:NAME}``), never from the YAML in clear; checked at load with line and column,
and sent for real to a local HTTP server by the call runner."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from autocall.dialogue.loader import TreeError, load_text
from autocall.dialogue.schema import resolve_headers
from autocall.media.clock import MediaEngine
from autocall.media.session import MediaSession
from autocall.telephony.runner import AudioCache, CallRunner
from tests.telephony.legs import MediaLeg


def tree_text(url: str, headers: str) -> str:
    return f"""start: lookup
nodes:
  lookup:
    webhook:
      url: {url}
      payload: {{number: "{{number}}"}}
      timeout: 1
      retries: 0
      save: {{plan: plan}}
      headers:
{headers}
    next: hello
    on_failure: fallback
  hello: {{say: "Welcome, {{plan}} member.", next: null}}
  fallback: {{say: Welcome., next: null}}
"""


GOOD = ('        Authorization: "Bearer ${ENV:CRM_TOKEN}"\n'
        '        X-Tenant: acme\n'
        '        X-Api-Key: "${ENV:CRM_KEY}"\n')


def test_env_references_load_and_resolve_at_call_time() -> None:
    tree = load_text(tree_text("https://crm.example.com/x", GOOD))
    headers = tree.nodes["lookup"].webhook.headers  # type: ignore[union-attr]
    assert headers["Authorization"] == "Bearer ${ENV:CRM_TOKEN}"  # stored unresolved
    env = {"CRM_TOKEN": "t0k", "CRM_KEY": "k3y"}
    assert resolve_headers(headers, env) == {"Authorization": "Bearer t0k",
                                             "X-Tenant": "acme", "X-Api-Key": "k3y"}
    with pytest.raises(KeyError, match="CRM_KEY"):
        resolve_headers(headers, {"CRM_TOKEN": "t0k"})


@pytest.mark.parametrize(("header", "needle"), [
    ('        Authorization: "Bearer abc123"\n', "looks like a secret"),
    ('        X-Api-Key: abc123\n', "looks like a secret"),
    ('        x-auth-token: "${ENV:T}x"\n', "looks like a secret"),
    ('        Cookie: "session=1"\n', "looks like a secret"),
    ('        "Bad Name": x\n', "not a valid HTTP field name"),
    ('        Host: evil.example\n', "set by autocall itself"),
    ('        X-Ref: "${ENV:lower-case}"\n', "malformed reference"),
    ('        X-Ref: "${CRM_TOKEN}"\n', "malformed reference"),
])
def test_literal_secrets_and_bad_headers_are_errors_with_the_place(header: str,
                                                                  needle: str) -> None:
    with pytest.raises(TreeError) as info:
        load_text(tree_text("https://crm.example.com/x", header), file="hook.yaml")
    [problem] = info.value.problems
    assert problem.severity == "error" and needle in problem.message
    assert problem.file == "hook.yaml" and problem.line >= 4, problem
    if "secret" in needle:
        assert "${ENV:" in problem.message  # tells the designer what to write


class _Crm(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers["Content-Length"]))
        _Crm.seen.append({k.lower(): v for k, v in self.headers.items()})
        ok = self.headers.get("Authorization") == "Bearer s3cret"
        reply = json.dumps({"plan": "gold"}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def crm() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Crm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Crm.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/lookup"
    server.shutdown()
    server.server_close()


async def _run(tree_yaml: str, tmp_path: Path) -> list[str]:
    engine = MediaEngine()
    robot = await MediaSession.open(engine)
    caller = await MediaSession.open(engine)
    robot.start(caller.local_addr, 0, 101)
    caller.start(robot.local_addr, 0, 101)
    runner = CallRunner(MediaLeg(robot), load_text(tree_yaml), {"number": "+12025550123"},
                        audio=AudioCache(tmp_path / "tts"))
    result = await asyncio.wait_for(runner.run(), 30)
    await caller.close()
    return list(result.path)


async def test_a_call_sends_the_resolved_header(crm: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_TOKEN", "s3cret")
    monkeypatch.setenv("CRM_KEY", "k3y")
    assert await _run(tree_text(crm, GOOD), tmp_path) == ["lookup", "hello"]
    [sent] = _Crm.seen
    assert sent["authorization"] == "Bearer s3cret" and sent["x-api-key"] == "k3y"
    assert sent["x-tenant"] == "acme"


async def test_an_unset_variable_sends_nothing_and_takes_on_failure(
        crm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("CRM_TOKEN", "s3cret")
    monkeypatch.delenv("CRM_KEY", raising=False)
    assert await _run(tree_text(crm, GOOD), tmp_path) == ["lookup", "fallback"]
    assert _Crm.seen == []  # never sent with the placeholder or without the key
    assert any("CRM_KEY" in r.getMessage() for r in caplog.records)
