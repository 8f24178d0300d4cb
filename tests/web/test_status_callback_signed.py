"""Status callbacks of API calls (issue 15): POST /v1/calls with a ``status_callback``
makes the call's events reach that URL through the outbox, signed with the server's
``AUTOCALL_WEBHOOK_SECRET`` (Standard Webhooks), verified at a real HTTP receiver on
127.0.0.1; the call itself is placed by the real worker process against a SIPp peer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from api_fixtures import Live
from outbox_receiver import SECRET, Receiver
from typer.testing import CliRunner

from autocall.campaign import outbox
from autocall.cli import app
from autocall.web.accounts import Role
from tests.peers import SCENARIOS, Sipp

PORT = 19040  # SIPp; the worker's own SIP port is PORT + 10 (range 19000-19099)
OTHER_SECRET = "whsec_c2VjcmV0LW9mLWFub3RoZXItc2VydmVyLTEyMzQ1Ng=="


def test_a_callback_is_signed_only_when_the_secret_is_set() -> None:
    url = "http://127.0.0.1:19099/hooks"
    signed = outbox.callback_target(url, {"AUTOCALL_WEBHOOK_SECRET": SECRET})
    assert signed.secret_env == "AUTOCALL_WEBHOOK_SECRET" and signed.url == url
    assert outbox.callback_target(url, {}).secret_env is None
    assert outbox.callback_target(url, {"AUTOCALL_WEBHOOK_SECRET": ""}).secret_env is None
    with pytest.raises(ValueError, match="not an http"):
        outbox.callback_target("ftp://x/y", {})
    assert outbox.secret_problem("AUTOCALL_WEBHOOK_SECRET", {}) is None
    assert outbox.secret_problem("AUTOCALL_WEBHOOK_SECRET",
                                 {"AUTOCALL_WEBHOOK_SECRET": SECRET}) is None
    problem = outbox.secret_problem("AUTOCALL_WEBHOOK_SECRET",
                                    {"AUTOCALL_WEBHOOK_SECRET": "whsec_!!not base64"})
    assert problem is not None and "AUTOCALL_WEBHOOK_SECRET" in problem


def test_autocall_web_refuses_a_malformed_secret(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOCALL_WEBHOOK_SECRET", "whsec_!!not base64")
    served: list[object] = []
    monkeypatch.setattr("autocall.cli.web.serve", lambda store, **kw: served.append(kw))
    done = CliRunner().invoke(app, ["web", "--db", f"sqlite:///{tmp_path / 'w.db'}"])
    assert done.exit_code == 2 and served == []
    assert "AUTOCALL_WEBHOOK_SECRET is not a Standard Webhooks secret" in " ".join(
        done.output.split())


def start_worker(url: str, tmp: Path, sip_port: int, secret: str | None
                 ) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AUTOCALL_SIP_HOST": "127.0.0.1", "AUTOCALL_SIP_PORT": str(sip_port),
           "AUTOCALL_BIND_HOST": "127.0.0.1", "AUTOCALL_BIND_PORT": str(sip_port + 10),
           "AUTOCALL_TTS_CACHE": str(tmp / "tts"), "AUTOCALL_PROMPTS": str(tmp / "prompts")}
    env.pop("AUTOCALL_WEBHOOK_SECRET", None)
    if secret is not None:
        env["AUTOCALL_WEBHOOK_SECRET"] = secret
    return subprocess.Popen([sys.executable, "-m", "autocall.web.worker", "--db", url],
                            cwd=tmp, env=env, stdout=open(tmp / "worker.out", "wb"),
                            stderr=open(tmp / "worker.err", "wb"))


@pytest.mark.peers
def test_an_api_calls_status_callbacks_arrive_signed_in_order(tmp_path: Path) -> None:
    receiver = Receiver(port=PORT + 5)  # verifies with SECRET, which the worker signs with
    hooks = receiver.start()
    stranger = Receiver(secret=OTHER_SECRET, port=PORT + 6)  # holds another secret
    strange_hooks = stranger.start()
    live = Live(f"sqlite:///{tmp_path / 'api.db'}", tmp_path, port=PORT + 7)
    sipp = Sipp(SCENARIOS / "uas_answer.xml", port=PORT, media_port=PORT + 2, calls=10,
                timeout=90, cwd=tmp_path).start()
    worker = start_worker(live.url, tmp_path, PORT, SECRET)
    try:
        crm = live.client(Role.MARKETER, "crm")
        ids = []
        for to, url in (("+12025550141", hooks), ("+12025550142", strange_hooks)):
            made = crm.post("/v1/calls", json={"to": to, "say": "Your parcel arrives today.",
                                               "status_callback": url})
            assert made.status_code == 201, made.text
            ids.append(made.json()["id"])
        deadline = time.monotonic() + 90
        while not (sum(a.type == "call.completed" for a in receiver.accepted()) == 1
                   and sum(a.type == "call.completed" for a in stranger.accepted()) == 1):
            assert time.monotonic() < deadline, (receiver.arrivals, stranger.arrivals)
            assert worker.poll() is None, (tmp_path / "worker.err").read_text()
            time.sleep(0.2)
        got = crm.get(f"/v1/calls/{ids[0]}").json()
        rows = outbox.backlog(live.store.engine)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        sipp.stop()
        live.close()
        receiver.stop()
        stranger.stop()
    mine = receiver.accepted()
    assert [a.type for a in mine] == ["call.initiated", "call.ringing", "call.answered",
                                      "call.completed"]
    assert all(a.signed and a.verified for a in mine), mine
    assert {a.body["data"]["call_id"] for a in mine} == {ids[0]}  # type: ignore[index]
    assert {a.subject for a in mine} == {f"call:{ids[0]}"}
    assert len({a.event_id for a in mine}) == 4
    assert mine[-1].body["data"]["call_status"] == "completed"  # type: ignore[index]
    assert got["status"] == "completed"
    # the other receiver got signed requests too, which its own secret cannot verify
    theirs = stranger.accepted()
    assert len(theirs) == 4 and all(a.signed and not a.verified for a in theirs)
    assert "Traceback" not in (tmp_path / "worker.err").read_text()
    # the store keeps the secret's name, never the secret
    assert {r["secret_env"] for r in rows} == {"AUTOCALL_WEBHOOK_SECRET"}
    assert SECRET[6:] not in json.dumps(rows, default=str)


@pytest.mark.peers
def test_without_the_secret_callbacks_go_unsigned(tmp_path: Path) -> None:
    receiver = Receiver(port=PORT + 25)
    hooks = receiver.start()
    live = Live(f"sqlite:///{tmp_path / 'api.db'}", tmp_path, port=PORT + 27)
    sipp = Sipp(SCENARIOS / "uas_answer.xml", port=PORT + 20, media_port=PORT + 22,
                calls=10, timeout=90, cwd=tmp_path).start()
    worker = start_worker(live.url, tmp_path, PORT + 20, None)
    try:
        crm = live.client(Role.MARKETER, "crm")
        made = crm.post("/v1/calls", json={"to": "+12025550143", "say": "Hello.",
                                           "status_callback": hooks})
        assert made.status_code == 201, made.text
        deadline = time.monotonic() + 90
        while not any(a.type == "call.completed" for a in receiver.accepted()):
            assert time.monotonic() < deadline, receiver.arrivals
            time.sleep(0.2)
        rows = outbox.backlog(live.store.engine)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        sipp.stop()
        live.close()
        receiver.stop()
    assert receiver.accepted() and not any(a.signed for a in receiver.accepted())
    assert {r["secret_env"] for r in rows} == {None}
    assert json.dumps(rows, default=str).count("whsec_") == 0
