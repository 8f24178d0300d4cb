"""Issue 12, small items: an engine error fills the record's ``error``; no status callback
is dropped without a log line (since issue 15 it waits in the outbox).

A real SIPp callee refuses our REFER with 403: the tree goes on (its ``on_failure``) and
the call is completed, but the record says the transfer was refused. A status-callback
receiver that accepts the connection and never answers (a real local HTTP server) must
cost the call nothing, and each callback left undelivered waits in the store's outbox.
Ports: 44150-44169.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from autocall.cli import app
from tests.peers import SCENARIOS, Sipp
from tests.telephony.serving import records, serve
from tests.telephony.sipp import _ACK, _ANSWER_BYE, _INVITE

pytestmark = pytest.mark.peers

TRANSFER_TREE = """\
name: transfer-refused
transfer_targets: ["+12025550199"]
start: agent
nodes:
  agent:
    transfer: "+12025550199"
    on_failure: sorry
  sorry:
    say: "Sorry, nobody can take your call."
    next: null
"""


def _refusing_callee(tmp_path: Path) -> Path:
    """uas_answer.xml, but a REFER in the call is refused with 403 Forbidden."""
    text = (SCENARIOS / "uas_answer.xml").read_text()
    marker = '<recv request="BYE"/>'
    assert text.count(marker) == 1
    refuse = """<recv request="REFER"/>
  <send>
    <![CDATA[
      SIP/2.0 403 Forbidden
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  """
    path = tmp_path / "uas_refuse_refer.xml"
    path.write_text(text.replace(marker, refuse + marker))
    return path


def test_a_refused_transfer_is_in_the_records_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOCALL_DATABASE_URL", f"sqlite:///{tmp_path / 'calls.db'}")
    monkeypatch.setenv("AUTOCALL_TTS_CACHE", str(tmp_path / "tts"))
    tree = tmp_path / "tree.yaml"
    tree.write_text(TRANSFER_TREE)
    with Sipp(_refusing_callee(tmp_path), port=44150, media_port=44152, timeout=30) as callee:
        result = CliRunner().invoke(
            app,
            [
                "call",
                "sip:sipp@127.0.0.1:44150",
                "--tree",
                str(tree),
                "--bind",
                "127.0.0.1:44155",
                "--json",
            ],
        )
        assert callee.wait(15) == 0, callee.errors()
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.exit_code == 0, result.output
    assert summary["status"] == "completed" and summary["path"] == ["agent", "sorry"]
    assert summary["error"] is not None
    assert "+12025550199" in summary["error"] and "403" in summary["error"]
    with sqlite3.connect(tmp_path / "calls.db") as conn:
        ((error,),) = conn.execute("SELECT error FROM autocall_calls")
    assert error == summary["error"]


class _Hanging(BaseHTTPRequestHandler):
    """Reads the request, then never answers until the test ends (a stuck receiver)."""

    release = threading.Event()
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.release.wait(60)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def hanging_receiver() -> Iterator[str]:
    _Hanging.release.clear()
    _Hanging.received.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 44160), _Hanging)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:44160/status"
    finally:
        _Hanging.release.set()
        server.shutdown()
        server.server_close()


def test_a_hanging_status_receiver_costs_the_call_nothing_and_every_loss_is_logged(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    hanging_receiver: str,
) -> None:
    monkeypatch.setenv("AUTOCALL_DATABASE_URL", f"sqlite:///{tmp_path / 'calls.db'}")
    monkeypatch.setenv("AUTOCALL_TTS_CACHE", str(tmp_path / "tts"))
    with (
        Sipp(SCENARIOS / "uas_answer.xml", port=44165, media_port=44167, timeout=30) as callee,
        caplog.at_level(logging.WARNING),
    ):
        started = time.monotonic()
        result = CliRunner().invoke(
            app,
            [
                "call",
                "sip:sipp@127.0.0.1:44165",
                "--say",
                "Your parcel arrives today.",
                "--status-callback",
                hanging_receiver,
                "--bind",
                "127.0.0.1:44168",
                "--json",
            ],
        )
        elapsed = time.monotonic() - started
        assert callee.wait(15) == 0, callee.errors()
    assert result.exit_code == 0, result.output
    assert elapsed < 20  # the call waited for no receiver; the delivery grace is bounded
    assert [r["data"]["status"] for r in _Hanging.received][:1] == ["initiated"]
    # Not lost: each one waits in the store's outbox (issue 15), in order, for the next
    # delivery process, and the log says so.
    with sqlite3.connect(tmp_path / "calls.db") as conn:
        waiting = conn.execute(
            "SELECT type, url FROM autocall_outbox WHERE delivered_at IS NULL "
            "AND given_up_at IS NULL ORDER BY id").fetchall()
    assert waiting == [(f"call.{s}", hanging_receiver)
                       for s in ("initiated", "ringing", "answered", "completed")]
    assert any(re.search(r"4 webhook event\(s\) not delivered yet wait in the outbox",
                         r.getMessage()) for r in caplog.records), caplog.text


SERVE_TREE = """\
name: front-desk
transfer_targets: ["101"]
start: agent
nodes:
  agent:
    transfer: "101"
    on_failure: sorry
  sorry:
    say: "Sorry, nobody can take your call."
    next: null
"""

_REFUSE_REFER = """
  <recv request="REFER"/>
  <send>
    <![CDATA[
      SIP/2.0 403 Forbidden
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
"""


def test_serve_keeps_the_refused_transfer_in_its_record(tmp_path: Path) -> None:
    """A caller (SIPp) refuses to be transferred: serve's record (JSONL, made 0600) says so."""
    body = (
        _INVITE.format(rtp_port=44172, codec=0)
        + '  <recv response="200" rtd="true"/>\n'
        + _ACK
        + _REFUSE_REFER
        + _ANSWER_BYE
    )
    scenario = tmp_path / "uac_refuses_refer.xml"
    scenario.write_text(
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
        f'<scenario name="refuses-refer">\n{body}</scenario>\n'
    )
    with serve(tmp_path, 44170, tree=SERVE_TREE):
        caller = Sipp(
            scenario,
            port=44171,
            media_port=44172,
            remote="127.0.0.1:44170",
            service="frontdesk",
            timeout=20,
        )
        with caller:
            assert caller.wait(15) == 0, caller.errors()
        deadline = time.monotonic() + 10
        while not records(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)  # the record is written just after the BYE
    (record,) = records(tmp_path)
    assert record["path"] == ["agent", "sorry"] and record["status"] == "completed"
    assert record["error"] is not None and "101" in record["error"] and "403" in record["error"]
    assert (tmp_path / "calls.jsonl").stat().st_mode & 0o777 == 0o600
