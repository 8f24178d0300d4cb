"""kill -9 `autocall call` running a tree during a real SIP call: its record was written at
answer and kept the digits and path so far, unfinished; the next `autocall call` closes it
before it dials, and keeps what it knew (issue 14)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from autocall.campaign.store import Store
from autocall.telephony.record import StoredRecord
from tests.peers import SCENARIOS, Sipp

pytestmark = pytest.mark.peers

ROOT = Path(__file__).parents[2]
TREE = """\
name: code-check
outcomes: [done]
start: ask
nodes:
  ask:
    gather: {prompt: "Your code?", variable: code, max_digits: 6, first_timeout: 60,
             inter_timeout: 60}
    next: bye
    on_failure: bye
  bye: {hangup: done}
"""
SIPP = 18600  # the callee (SIPp, media 18602); our UA binds 18610 then 18620
RTP = "18640-18699"


@contextmanager
def autocall_call(tmp: Path, db: str, bind: int, tag: str) -> Iterator[subprocess.Popen[bytes]]:
    """`autocall call --tree` as a child process; SIGKILLed (by pid) if still running."""
    cmd = [sys.executable, "-c", "from autocall.cli import main; main()", "call",
           f"sip:sipp@127.0.0.1:{SIPP}", "--tree", str(tmp / "tree.yaml"), "--db", db,
           "--bind", f"127.0.0.1:{bind}", "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AUTOCALL_TTS_CACHE": str(tmp / "tts"),
           "AUTOCALL_RTP_PORTS": RTP}
    with (tmp / f"{tag}.log").open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=log, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _calls(db: str) -> list[StoredRecord]:
    store = Store(db)
    try:
        return store.calls("outbound")
    finally:
        store.close()


def _wait(db: str, done: Callable[[list[StoredRecord]], bool], what: str,
          proc: subprocess.Popen[bytes], log: Path) -> list[StoredRecord]:
    deadline = time.monotonic() + 60  # a cold interpreter and TTS on a loaded machine
    rows: list[StoredRecord] = []
    while time.monotonic() < deadline:
        rows = _calls(db)
        if done(rows):
            return rows
        assert proc.poll() is None, f"autocall call exited before {what}: {log.read_text()}"
        time.sleep(0.2)
    raise AssertionError(f"no {what} after 60 s: {rows}\n{log.read_text()[-3000:]}")


def test_kill_9_during_a_tree_call_leaves_answer_and_digits_the_next_call_closes_it(
        tmp_path: Path) -> None:
    (tmp_path / "tree.yaml").write_text(TREE)
    db = f"sqlite:///{tmp_path / 'calls.db'}"
    # answers, sends 1 and 5 as RFC 4733, then waits for a BYE that the kill never sends
    with Sipp(SCENARIOS / "uas_answer_rfc4733.xml", port=SIPP, media_port=SIPP + 2,
              calls=10, timeout=120, cwd=tmp_path):
        with autocall_call(tmp_path, db, SIPP + 10, "first") as first:
            (live,) = _wait(db, lambda rows: bool(rows) and rows[0].digits == "15",
                            "the digits 15 in the record", first, tmp_path / "first.log")
            assert live.unfinished  # written while the call goes on
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
        (cut,) = _calls(db)
        assert cut.unfinished and cut.ended_at is None
        assert cut.status == "in-progress" and cut.answered_at is not None
        assert cut.digits == "15" and cut.path == ["ask"]
        assert cut.variables.get("code") is None  # the gather had not ended

        with autocall_call(tmp_path, db, SIPP + 20, "second") as second:
            # the next start closes the cut record before it dials (then it is cut short)
            rows = _wait(db, lambda rows: len(rows) == 2, "the second call's record",
                         second, tmp_path / "second.log")
    closed = rows[0]
    assert closed.id == cut.id and closed.call_id == cut.call_id
    assert not closed.unfinished and closed.ended_at is not None
    assert closed.status == "failed" and "stopped" in closed.error
    assert closed.answered_at == cut.answered_at and closed.digits == "15"
    assert closed.path == ["ask"]
