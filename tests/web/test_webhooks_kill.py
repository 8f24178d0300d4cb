"""Webhooks through kill -9 of the dialer and of the web process (issue 15, "Done when").

`autocall web` (three runs of it, on one store) dials a campaign and two API calls
against a SIPp peer, while a CRM stand-in (a real HTTP server on 127.0.0.1 that checks
every Standard Webhooks signature) answers 500 for a while, twice (its first 15
requests; then 10 requests, and any for 5 s, from the pause on):

1. web #1: the campaign is started and two calls are POSTed over the API; once some
   events were delivered the dialer worker is killed with SIGKILL mid-campaign and
   mid-call, then the web process too;
2. web #2: a new worker takes the campaign up; the campaign is paused over the API and
   the web process is killed with SIGKILL right after the answer, during an outage of
   the receiver: its worker must end by itself;
3. web #3: the campaign is resumed and completes.

Then every event committed in the store reached the receiver, signed and verified, in
the order it was committed per call (and per campaign); a receiver that de-duplicates by
``webhook-id`` sees each exactly once, and no event was made twice under two ids.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from consoletest import write_campaign
from outbox_receiver import SECRET, Receiver
from sqlalchemy import select

from autocall.campaign import outbox
from autocall.campaign.contacts import import_campaign
from autocall.campaign.model import CampaignState, Outcome, load_campaign
from autocall.campaign.store import Store
from autocall.web import accounts
from autocall.web.accounts import Role
from tests.peers import SCENARIOS, Sipp

pytestmark = pytest.mark.peers

CLI = [sys.executable, "-c", "from autocall.cli import main; main()"]
SIPP_PORT = 19080  # media 19082 (this helper's range: 19000-19099)
WEB_PORT = 19085
HOOKS_PORT = 19086
UA_PORT = 19090  # the dialer worker's SIP port
CAMPAIGN_SECRET_ENV = "AUTOCALL_TEST_WEBHOOK_SECRET"
N = 30
LONG_SAY = "This message is long, so that the call is still on when the dialer dies. " * 8


def wait_until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what}: not after {seconds} s"
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class Web:
    proc: subprocess.Popen[bytes]
    worker: int
    log: Path


@contextlib.contextmanager
def web_runs() -> Iterator[list[Web]]:
    """The ``autocall web`` runs of a test; what is left of them is killed at the end."""
    started: list[Web] = []
    try:
        yield started
    finally:
        for web in started:
            if web.proc.poll() is None:
                web.proc.kill()
                web.proc.wait()
            if alive(web.worker):
                os.kill(web.worker, signal.SIGKILL)


def start_web(db: str, work: Path, run: int) -> Web:
    env = {**os.environ, "AUTOCALL_SIP_HOST": "127.0.0.1", "AUTOCALL_SIP_PORT": str(SIPP_PORT),
           "AUTOCALL_BIND_HOST": "127.0.0.1", "AUTOCALL_BIND_PORT": str(UA_PORT),
           "AUTOCALL_TTS": "espeak", "AUTOCALL_TTS_CACHE": str(work / "tts"),
           "AUTOCALL_PROMPTS": str(work), "AUTOCALL_WEB_SECRET": "hooks-test-secret",
           "AUTOCALL_WEBHOOK_SECRET": SECRET, CAMPAIGN_SECRET_ENV: SECRET}
    log = work / f"web-{run}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*CLI, "web", "--port", str(WEB_PORT), "--db", db],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=work)
    found: list[str] = []

    def up() -> bool:
        assert proc.poll() is None, log.read_text()
        found[:] = re.findall(r"dialer worker started \(pid (\d+)\)", log.read_text())
        try:
            return bool(found) and httpx.get(f"http://127.0.0.1:{WEB_PORT}/healthz",
                                             timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, 60, f"autocall web #{run} answers with its worker")
    return Web(proc, int(found[0]), log)


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def outbox_rows(store: Store) -> list[dict[str, object]]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            select(outbox.outbox).order_by(outbox.outbox.c.id))]


def accepted_types(receiver: Receiver, subject: str) -> list[str]:
    seen: set[str] = set()
    types = []
    for a in receiver.accepted():
        if a.subject == subject and a.event_id not in seen:
            seen.add(a.event_id)
            types.append(a.type)
    return types


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hooks.db'}"
    url: str = request.getfixturevalue("pg_schema_url")
    return url


def test_webhooks_survive_kill_9_of_the_dialer_and_of_the_web_process(
        db: str, tmp_path: Path) -> None:
    receiver = Receiver(port=HOOKS_PORT)
    hooks = receiver.start()
    path = write_campaign(tmp_path / "campaign", N, name="kill-hooks", channels=2,
                          calls_per_second=4, webhooks=[
                              {"url": hooks, "secret_env": CAMPAIGN_SECRET_ENV}])
    store = Store(db)
    import_campaign(store, load_campaign(path))
    token = accounts.create_token(store.engine, "crm", Role.MARKETER)
    api = httpx.Client(base_url=f"http://127.0.0.1:{WEB_PORT}", timeout=30,
                       headers={"Authorization": f"Bearer {token}"})
    sipp = Sipp(SCENARIOS / "uas_answer.xml", port=SIPP_PORT, media_port=SIPP_PORT + 2,
                calls=500, timeout=300, cwd=tmp_path)
    with contextlib.ExitStack() as stack:
        webs = stack.enter_context(web_runs())
        stack.callback(store.close)
        stack.callback(receiver.stop)
        stack.callback(api.close)
        stack.callback(sipp.stop)
        sipp.start()

        # 1. web #1: a campaign and two API calls; the receiver fails the first 4 s
        receiver.fail_first = 15  # the first 15 requests are answered 500
        webs.append(start_web(db, tmp_path, 1))
        assert api.post("/v1/campaigns/kill-hooks/start").status_code == 200
        calls = []
        for i in range(2):
            made = api.post("/v1/calls", json={"to": f"+120255501{50 + i}", "say": LONG_SAY,
                                               "status_callback": hooks})
            assert made.status_code == 201, made.text
            calls.append(made.json()["id"])

        def mid_campaign_and_mid_call() -> bool:
            assert webs[0].proc.poll() is None, webs[0].log.read_text()
            done = sum(a.outcome is not None for a in store.attempts("kill-hooks"))
            answered = all("call.answered" in accepted_types(receiver, f"call:{c}")
                           for c in calls)
            return done >= 3 and answered and len(receiver.accepted()) >= 10

        wait_until(mid_campaign_and_mid_call, 90, "events delivered after the outage")
        assert len(receiver.arrivals) > len(receiver.accepted())  # the 500s were real
        kill9(webs[0].worker)  # the dialer dies mid-campaign, mid-call
        wait_until(lambda: not alive(webs[0].worker), 10, "the killed worker is reaped")
        assert store.state("kill-hooks")[0] is CampaignState.RUNNING
        assert httpx.get(f"http://127.0.0.1:{WEB_PORT}/healthz").status_code == 200
        wait_until(lambda: "exited" in webs[0].log.read_text(), 10,
                   "web #1 says its worker died")
        at_first_kill = {str(r["event_id"]) for r in outbox_rows(store)}
        left_open = {a.id for a in store.attempts("kill-hooks") if a.outcome is None}
        kill9(webs[0].proc.pid)
        webs[0].proc.wait(10)

        # 2. web #2 takes the campaign up; paused, then killed during an outage
        webs.append(start_web(db, tmp_path, 2))
        before = len(store.attempts("kill-hooks"))
        wait_until(lambda: len(store.attempts("kill-hooks")) >= before + 2, 60,
                   "the new worker dials the campaign again")
        # the new worker resolves the killed one's calls as interrupted, but only once its
        # last heartbeat is LOCAL_DEAD_AFTER (5 s) old: a gone pid may be a live process of
        # another container with our host name. On a quiet machine web #2 dials sooner than
        # that, so wait for it: what is in flight at the pause is then web #2's alone
        wait_until(lambda: all(a.outcome is Outcome.INTERRUPTED for a in store.attempts(
            "kill-hooks") if a.id in left_open), 30, "the killed worker's calls resolved")
        receiver.fail_first = 10
        receiver.down_until = time.monotonic() + 5.0  # and any for 5 s

        def in_flight() -> set[int]:
            return {a.id for a in store.attempts("kill-hooks") if a.outcome is None}

        wait_until(lambda: bool(in_flight()), 30, "a call in flight")
        assert api.post("/v1/campaigns/kill-hooks/pause").status_code == 200
        kill9(webs[1].proc.pid)  # right after the pause is answered, calls on the line
        on_the_line = in_flight()
        webs[1].proc.wait(10)
        assert store.state("kill-hooks")[0] is CampaignState.PAUSED
        wait_until(lambda: not alive(webs[1].worker), 30,
                   "the worker of a killed web process ends by itself")
        ended = {a.id: a for a in store.attempts("kill-hooks") if a.id in on_the_line}
        assert on_the_line and all(  # drained: its calls ended as their dialogue did
            a.outcome is Outcome.COMPLETED for a in ended.values()), ended

        # 3. web #3 resumes; the campaign completes and the backlog drains
        webs.append(start_web(db, tmp_path, 3))
        assert api.post("/v1/campaigns/kill-hooks/resume").status_code == 200
        wait_until(lambda: store.state("kill-hooks")[0] is CampaignState.COMPLETED, 120,
                   "the campaign completes")
        wait_until(lambda: outbox.pending_count(store.engine) == 0, 60,
                   "every event delivered")
        for c in calls:
            assert api.get(f"/v1/calls/{c}").json()["state"] == "done"
        webs[2].proc.send_signal(signal.SIGTERM)
        assert webs[2].proc.wait(60) == 0, webs[2].log.read_text()

        rows = outbox_rows(store)
        attempts = store.attempts("kill-hooks")
        logs = "".join(w.log.read_text() for w in webs)

    got = receiver.accepted()
    stored = {str(r["event_id"]): r for r in rows}
    assert at_first_kill <= set(stored)  # nothing committed before a kill is lost
    assert all(r["delivered_at"] is not None for r in rows)
    # every event arrived, each accepted arrival signed with a signature that verifies
    first: dict[str, int] = {}
    for i, a in enumerate(got):
        first.setdefault(a.event_id, i)
        assert a.signed and a.verified, a
    assert set(first) == set(stored)
    # in the order committed, per subject (call or campaign)
    by_subject: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        by_subject[str(r["subject"])].append(str(r["event_id"]))
    for subject, ids in by_subject.items():
        assert sorted(ids, key=lambda e: first[e]) == ids, subject
    # no event made twice under two ids: one of each kind per call
    kinds = Counter((str(r["subject"]), str(r["type"])) for r in rows
                    if str(r["subject"]).startswith("call:"))
    assert [k for k, c in kinds.items() if c > 1] == []
    assert accepted_types(receiver, "campaign:kill-hooks") == [
        "campaign.started", "campaign.paused", "campaign.started", "campaign.completed"]
    for c in calls:  # the API calls cut by the kill still end, as failed
        assert accepted_types(receiver, f"call:{c}") == [
            "call.initiated", "call.ringing", "call.answered", "call.completed"]
        [end] = [a for a in got if a.subject == f"call:{c}" and a.type == "call.completed"]
        assert end.body["data"]["call_status"] == "failed"  # type: ignore[index]
    for att in attempts:
        types = accepted_types(receiver, f"call:kill-hooks/{att.id}")
        assert types[0] == "call.initiated" and types[-2:] == [
            "call.completed", "attempt.finished"], (att, types)
    assert len({a.number for a in attempts}) == N  # every contact dialed
    duplicates = sum(c - 1 for c in Counter(a.event_id for a in got).values())
    print(f"{len(stored)} events, {len(receiver.arrivals)} requests, "
          f"{len(receiver.arrivals) - len(got)} answered 500, "
          f"{duplicates} accepted again after a kill (de-duplicated by webhook-id)")
    assert "Traceback" not in logs, logs
    # the orphaned worker #2 drained: its calls in flight ended, none was hung up by force
    assert "the web process" in logs and "forced stop" not in logs, logs
    assert json.dumps(rows, default=str).count(SECRET[6:]) == 0
