"""kill -9 `autocall serve` during a call: the call's record was written at answer and
kept its digits so far, unfinished; the next start closes it (issue 14)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from autocall.campaign.store import Store
from autocall.telephony.record import StoredRecord
from tests.peers import SCENARIOS, Sipp
from tests.telephony.serving import serve

pytestmark = pytest.mark.peers

TREE = """\
name: crash-desk
start: welcome
nodes:
  welcome:
    menu: {prompt: "Welcome. For sales press 7.", items: {7: sales}, timeout: 5}
  sales:
    gather: {prompt: "Your order number?", variable: order, max_digits: 6,
             first_timeout: 60, inter_timeout: 60}
    next: thanks
  thanks: {say: "Thank you."}
"""


def _caller_that_stays(tmp: Path) -> Path:
    """uac_call.xml (7 as RFC 4733, 9 as SIP INFO) that then stays on the line."""
    text = (SCENARIOS / "uac_call.xml").read_text()
    cut = text.rindex('<pause milliseconds="300"/>')
    path = tmp / "uac_stays.xml"
    path.write_text(text[:cut] + '<pause milliseconds="30000"/>\n</scenario>\n')
    return path


def _calls(db: str) -> list[StoredRecord]:
    store = Store(db)
    try:
        return store.calls("inbound")
    finally:
        store.close()


def test_kill_9_during_a_call_leaves_an_unfinished_record_the_next_start_closes(
        tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'autocall.db'}"  # serve's default store, in its cwd
    caller = Sipp(_caller_that_stays(tmp_path), port=30471, media_port=30472,
                  remote="127.0.0.1:30470", service="frontdesk", timeout=40)
    with serve(tmp_path, 30470, tree=TREE) as proc, caller:
        deadline = time.monotonic() + 20
        rows: list[StoredRecord] = []
        while time.monotonic() < deadline:
            rows = _calls(db)
            if rows and rows[0].digits == "79":
                break
            time.sleep(0.2)
        (live,) = rows
        assert live.digits == "79", live  # written while the call goes on
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    (cut,) = _calls(db)
    assert cut.unfinished and cut.ended_at is None and cut.status == "in-progress"
    assert cut.answered_at is not None and cut.path == ["welcome", "sales"]
    assert cut.digits == "79" and cut.number == "sipp"
    with serve(tmp_path, 30470, tree=TREE):
        (closed,) = _calls(db)  # closed before the port was bound
    assert not closed.unfinished and closed.ended_at is not None
    assert closed.status == "failed" and "stopped" in closed.error
    assert closed.answered_at == cut.answered_at and closed.digits == "79"
    assert closed.path == ["welcome", "sales"] and closed.call_id == cut.call_id
