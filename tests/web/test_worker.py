"""The dialer worker `autocall web` starts (issue 15): it places calls asked for by
POST /v1/calls through the one outbound service, writes their records, and never dials
a request twice, even when it is killed mid-call; real SIPp peers, real store."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from autocall.campaign.store import Store, call_requests
from tests.peers import SCENARIOS, Sipp

pytestmark = pytest.mark.peers

PORT = 43720


def _worker(url: str, tmp: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AUTOCALL_SIP_HOST": "127.0.0.1", "AUTOCALL_SIP_PORT": str(port),
           "AUTOCALL_BIND_HOST": "127.0.0.1", "AUTOCALL_BIND_PORT": str(port + 10),
           "AUTOCALL_TTS_CACHE": str(tmp / "tts"), "AUTOCALL_PROMPTS": str(tmp)}
    return subprocess.Popen([sys.executable, "-m", "autocall.web.worker", "--db", url],
                            cwd=tmp, env=env, stdout=open(tmp / "worker.out", "wb"),
                            stderr=open(tmp / "worker.err", "wb"))


def _queue(store: Store, request_id: str, definition: dict[str, object]) -> None:
    from datetime import UTC, datetime

    with store.engine.begin() as conn:
        conn.execute(insert(call_requests).values(
            id=request_id, created_at=datetime.now(UTC).replace(tzinfo=None),
            created_by="token:test", definition=json.dumps(definition), state="queued"))


def _row(store: Store, request_id: str) -> dict[str, object]:
    with store.engine.connect() as conn:
        return dict(conn.execute(select(call_requests).where(
            call_requests.c.id == request_id)).one()._mapping)


def _wait(store: Store, request_id: str, state: str, seconds: float) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = _row(store, request_id)
        if row["state"] == state:
            return row
        time.sleep(0.2)
    raise AssertionError(f"{request_id} not {state} after {seconds} s: {_row(store, request_id)}")


def test_the_worker_places_a_queued_call_and_records_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    store = Store(url)
    sipp = Sipp(SCENARIOS / "uas_answer.xml", port=PORT, media_port=PORT + 2, calls=10,
                timeout=60, cwd=tmp_path).start()
    worker = _worker(url, tmp_path, PORT)
    try:
        _queue(store, "CA1", {"to": "+12025550111", "say": "Your parcel arrives today."})
        row = _wait(store, "CA1", "done", 60)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        sipp.stop()
    record = json.loads(str(row["record"]))
    assert record["status"] == "completed" and record["answered_at"]
    assert record["path"] == ["message1"] and row["call_id"]
    (call,) = store.calls("outbound")
    assert call.call_id == row["call_id"] and not call.unfinished
    store.close()
    assert "Traceback" not in (tmp_path / "worker.err").read_text()


def test_a_worker_killed_mid_call_never_dials_that_request_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    store = Store(url)
    trace = tmp_path / "sipp-messages.log"
    sipp = Sipp(SCENARIOS / "uas_answer.xml", port=PORT + 30, media_port=PORT + 32,
                calls=10, timeout=90, cwd=tmp_path,
                extra=["-trace_msg", "-message_file", str(trace)]).start()
    long_say = "This is a long message. " * 40
    worker = _worker(url, tmp_path, PORT + 30)
    try:
        _queue(store, "CA2", {"to": "+12025550112", "say": long_say})
        _wait(store, "CA2", "dialing", 60)
        deadline = time.monotonic() + 60
        while not store.calls("outbound") and time.monotonic() < deadline:
            time.sleep(0.2)  # answered: the record written at answer is there
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        second = _worker(url, tmp_path, PORT + 30)
        row = _wait(store, "CA2", "done", 30)
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    finally:
        sipp.stop()
    invites = {re.search(r"Call-ID:\s*(\S+)", chunk, re.I).group(1)  # type: ignore[union-attr]
               for chunk in trace.read_text(errors="replace").split("INVITE sip:")[1:]}
    assert len(invites) == 1  # never dialed twice, whatever the retransmissions
    record = json.loads(str(row["record"]))
    assert record["status"] == "failed" and "stopped" in record["error"]
    store.close()


def test_post_v1_calls_three_times_rings_the_peer_once(tmp_path: Path) -> None:
    """The issue's proof of the Idempotency-Key: a CRM that retries the same POST after a
    timeout (here three times, two of them at once) places exactly one call at the SIPp
    peer, and reads its record back from GET /v1/calls/{id}."""
    from concurrent.futures import ThreadPoolExecutor

    from autocall.web.accounts import Role
    from tests.web.api_fixtures import Live

    live = Live(f"sqlite:///{tmp_path / 'api.db'}", tmp_path)
    trace = tmp_path / "sipp-messages.log"
    sipp = Sipp(SCENARIOS / "uas_answer.xml", port=PORT + 60, media_port=PORT + 62,
                calls=10, timeout=90, cwd=tmp_path,
                extra=["-trace_msg", "-message_file", str(trace)]).start()
    worker = _worker(live.url, tmp_path, PORT + 60)
    try:
        crm = live.client(Role.MARKETER, "crm")
        payload = {"to": "+12025550113", "say": "Your parcel arrives today.", "confirm": "1"}
        headers = {"Idempotency-Key": "order-4711-reminder"}
        first = crm.post("/v1/calls", json=payload, headers=headers)
        with ThreadPoolExecutor(2) as pool:
            again = list(pool.map(lambda _: crm.post("/v1/calls", json=payload,
                                                     headers=headers), range(2)))
        assert {r.json()["id"] for r in [first, *again]} == {first.json()["id"]}
        call_id = first.json()["id"]
        deadline = time.monotonic() + 60
        while (got := crm.get(f"/v1/calls/{call_id}").json())["state"] != "done":
            assert time.monotonic() < deadline, got
            time.sleep(0.3)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        sipp.stop()
        live.close()
    invites = {re.search(r"Call-ID:\s*(\S+)", chunk, re.I).group(1)  # type: ignore[union-attr]
               for chunk in trace.read_text(errors="replace").split("INVITE sip:")[1:]}
    assert len(invites) == 1
    assert got["status"] == "completed" and got["record"]["call_id"] in invites
    assert got["record"]["path"][0] == "message1"  # the message, then the confirm question
