"""Issue 12 item 11: a campaign, an inbound server or a one-off call whose tree is broken
never reaches the phone network. The trunk here is a raw UDP socket: any INVITE that
leaves lands in it, and the test asserts none did."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autocall.cli import app

TRUNK_PORT = 44910
BIND_PORT = 44912

GOOD = """\
name: hello
start: hello
nodes:
  hello:
    say: "Hello, this is a test."
    next: bye
  bye:
    hangup: completed
"""
BROKEN = GOOD.replace("next: bye", "next: byee")

CAMPAIGN = """\
name: refused
tree: tree.yaml
contacts: [contacts.csv]
default_region: US
caller_ids: ["+12025550100"]
window:
  days: [mon, tue, wed, thu, fri, sat, sun]
  start: "00:00"
  end: "23:59:59.999999"
  override_legal_hours: true
channels: 1
calls_per_second: 10
"""


@pytest.fixture
def trunk(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A UDP socket standing where the trunk would be; it records what reaches it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", TRUNK_PORT))
    sock.setblocking(False)
    monkeypatch.setenv("AUTOCALL_SIP_HOST", "127.0.0.1")
    monkeypatch.setenv("AUTOCALL_SIP_PORT", str(TRUNK_PORT))
    monkeypatch.setenv("AUTOCALL_SIP_TRANSPORT", "udp")
    yield sock
    sock.close()


def _received(sock: socket.socket) -> list[bytes]:
    out: list[bytes] = []
    while True:
        try:
            out.append(sock.recv(65536))
        except BlockingIOError:
            return out


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback: {result.exception!r}\n{result.output}"
    )
    return result.exit_code, result.output


def _files(tmp: Path, tree: str) -> Path:
    (tmp / "tree.yaml").write_text(tree, encoding="utf-8")
    (tmp / "contacts.csv").write_text("phone\n+12025550143\n+12025550144\n", encoding="utf-8")
    path = tmp / "campaign.yaml"
    path.write_text(CAMPAIGN, encoding="utf-8")
    return path


def test_run_refuses_a_campaign_file_whose_tree_is_broken(
    tmp_path: Path, trunk: socket.socket
) -> None:
    yaml = _files(tmp_path, BROKEN)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    code, out = _run("campaign", "run", str(yaml), "--db", db, "--json")
    assert code == 1, out
    assert "tree.yaml:6:11: error: target 'byee' is not a node" in out
    assert "not dialing" in out
    assert _received(trunk) == []
    code, out = _run("campaign", "list", "--db", db, "--json")
    assert json.loads(out) == []  # nothing imported either


def test_run_refuses_a_stored_campaign_whose_tree_broke_after_import(
    tmp_path: Path, trunk: socket.socket
) -> None:
    yaml = _files(tmp_path, GOOD)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    code, out = _run("campaign", "import", str(yaml), "--db", db)
    assert code == 0, out
    (tmp_path / "tree.yaml").write_text(BROKEN, encoding="utf-8")
    code, out = _run("campaign", "run", "refused", "--db", db)
    assert code == 1, out
    assert "target 'byee' is not a node" in out
    assert _received(trunk) == []
    code, out = _run("campaign", "status", "refused", "--db", db, "--json")
    status = json.loads(out)
    assert status["attempts"] == 0 and status["pending"] == 2, out


def test_call_and_serve_refuse_a_broken_tree(tmp_path: Path, trunk: socket.socket) -> None:
    tree = tmp_path / "tree.yaml"
    tree.write_text(BROKEN.replace("hangup: completed", "hangup: optout"), encoding="utf-8")
    code, out = _run("call", "+12025550143", "--tree", str(tree))
    assert code == 2, out
    assert "did you mean 'opt-out'" in out and "byee" in out
    assert _received(trunk) == []
    code, out = _run("serve", "--tree", str(tree), "--bind", f"127.0.0.1:{BIND_PORT}")
    assert code == 2, out
    assert "2 error(s)" in out
