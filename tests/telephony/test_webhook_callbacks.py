"""``autocall call --status-callback`` keeps its callbacks in the store's outbox (issue 15):
a receiver that is down, or a kill -9 of the calling process mid-call, loses none; a
later ``autocall webhooks deliver`` sends them in order, each once. Real SIPp callee,
real processes, a real HTTP receiver. Ports: 18300-18319."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "campaign"))  # clirun's own imports

from autocall.cli import app  # noqa: E402
from tests.campaign.clirun import CliProcess, wait_until  # noqa: E402
from tests.campaign.outbox_receiver import Receiver  # noqa: E402
from tests.peers import SCENARIOS, Sipp  # noqa: E402

pytestmark = pytest.mark.peers


def _outbox(db: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(db) as conn:
        return [(t, e, int(d is not None)) for t, e, d in conn.execute(
            "SELECT type, event_id, delivered_at FROM autocall_outbox ORDER BY id")]


def _deliver_all(tmp_path: Path, db: Path, receiver: Receiver, n: int) -> None:
    proc = CliProcess(["webhooks", "deliver", "--db", f"sqlite:///{db}"], cwd=tmp_path,
                      env={}, tag="deliver")
    wait_until(lambda: len({a.event_id for a in receiver.accepted()}) >= n, 30,
               "the waiting callbacks delivered")
    wait_until(lambda: all(d for _, _, d in _outbox(db)), 10, "marked delivered")
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, proc.stderr()


def test_callbacks_a_down_receiver_missed_are_delivered_later_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "calls.db"
    monkeypatch.setenv("AUTOCALL_DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.setenv("AUTOCALL_TTS_CACHE", str(tmp_path / "tts"))
    receiver = Receiver(secret=None, down_until=float("inf"))
    url = receiver.start()
    with Sipp(SCENARIOS / "uas_answer.xml", port=18300, media_port=18302, timeout=20) as peer:
        result = CliRunner().invoke(app, [
            "call", "sip:sipp@127.0.0.1:18300", "--say", "Your parcel arrives today.",
            "--bind", "127.0.0.1:18305", "--status-callback", url, "--json"])
        assert peer.wait(15) == 0, peer.errors()
    assert result.exit_code == 0, result.output
    kinds = ["call.initiated", "call.ringing", "call.answered", "call.completed"]
    assert [(t, d) for t, _, d in _outbox(db)] == [(k, 0) for k in kinds]
    assert {a.status for a in receiver.arrivals} == {500}  # tried, refused, kept
    listed = CliRunner().invoke(app, ["webhooks", "list", "--pending", "--json"])
    assert [r["type"] for r in json.loads(listed.stdout)] == kinds
    receiver.down_until = 0.0  # the CRM is back
    _deliver_all(tmp_path, db, receiver, 4)
    got = receiver.accepted()
    assert [a.type for a in got] == kinds  # in order, each once
    assert [a.event_id for a in got] == [e for _, e, _ in _outbox(db)]
    assert not any(a.signed for a in got)  # no secret configured: sent unsigned
    call_id = got[0].body["data"]["call_id"]  # type: ignore[index]
    assert all(a.subject == f"call:{call_id}" for a in got)
    receiver.stop()


def test_kill_9_of_a_call_mid_call_loses_no_callback(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    receiver = Receiver(secret=None, down_until=float("inf"))
    url = receiver.start()
    env = {"AUTOCALL_DATABASE_URL": f"sqlite:///{db}", "AUTOCALL_TTS_CACHE": str(tmp_path)}
    with Sipp(SCENARIOS / "uas_answer.xml", port=18310, media_port=18312, timeout=30):
        call = CliProcess(["call", "sip:sipp@127.0.0.1:18310", "--say",
                           "This message is long enough to be cut in the middle by a kill. "
                           * 3, "--bind", "127.0.0.1:18315", "--status-callback", url],
                          cwd=tmp_path, env=env, tag="call")
        def answered() -> bool:
            try:
                return db.exists() and any(t == "call.answered" for t, _, _ in _outbox(db))
            except sqlite3.OperationalError:  # the store is still being made
                return False

        wait_until(answered, 30, "the call answered")
        os.kill(call.proc.pid, signal.SIGKILL)
        call.proc.wait(10)
    kinds = ["call.initiated", "call.ringing", "call.answered"]
    assert [t for t, _, _ in _outbox(db)] == kinds
    receiver.down_until = 0.0
    time.sleep(0.1)
    _deliver_all(tmp_path, db, receiver, 3)
    assert [a.type for a in receiver.accepted()] == kinds
    receiver.stop()


def test_kill_9_of_serve_mid_call_loses_no_callback(tmp_path: Path) -> None:
    from tests.telephony.serving import serve

    receiver = Receiver(secret=None, down_until=float("inf"))
    url = receiver.start()
    db = tmp_path / "autocall.db"  # serve's default store, in its working directory

    def answered() -> bool:
        try:
            return db.exists() and any(t == "call.answered" for t, _, _ in _outbox(db))
        except sqlite3.OperationalError:
            return False

    with serve(tmp_path, 18360, "--status-callback", url) as proc:
        caller = Sipp(SCENARIOS / "uac_call.xml", port=18361, media_port=18362,
                      remote="127.0.0.1:18360", service="frontdesk", timeout=20)
        with caller:
            wait_until(answered, 20, "the inbound call answered")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    assert [t for t, _, _ in _outbox(db)] == ["call.ringing", "call.answered"]
    receiver.down_until = 0.0
    _deliver_all(tmp_path, db, receiver, 2)
    got = receiver.accepted()
    assert [a.type for a in got] == ["call.ringing", "call.answered"]
    assert got[0].subject == got[1].subject
    receiver.stop()
