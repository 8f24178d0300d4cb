"""The outbox against real parts: a real HTTP receiver on 127.0.0.1 that verifies every
Standard Webhooks signature, real SQLite files and a real PostgreSQL, dialer and
delivery processes killed with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import CliProcess, wait_until
from conftest import us_number, write_campaign
from outbox_dialer_proc import FAST
from outbox_receiver import SECRET, Arrival, Receiver
from procs import DialerProcess
from sqlalchemy import select

from autocall.campaign import outbox
from autocall.campaign.contacts import import_campaign
from autocall.campaign.dialer import run_campaign
from autocall.campaign.model import CampaignState, Outcome, load_campaign
from autocall.campaign.store import Store

SECRET_ENV = "AUTOCALL_TEST_WEBHOOK_SECRET"
PROC = Path(__file__).parent / "outbox_dialer_proc.py"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'outbox.db'}"
    else:
        yield request.getfixturevalue("pg_schema_url")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)


def rows(store: Store) -> list[dict[str, object]]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            select(outbox.outbox).order_by(outbox.outbox.c.id))]


async def drain(store: Store, *, until: float = 20.0, node: str = "test") -> None:
    """Deliver until nothing is left pending (or fail after ``until`` seconds)."""
    stop = asyncio.Event()
    task = asyncio.create_task(outbox.deliver(store.engine, stop=stop, node=node,
                                              policy=FAST, idle=0.02))
    deadline = time.monotonic() + until
    while outbox.pending_count(store.engine):
        assert time.monotonic() < deadline, outbox.backlog(store.engine, pending=True)
        assert not task.done(), task
        await asyncio.sleep(0.05)
    stop.set()
    await task


def assert_each_once_in_order(store: Store, got: list[Arrival]) -> None:
    """Every stored event arrived (accepted) at least once, with a valid signature if its
    target has a secret (none if not), and each subject's events were first accepted in
    the order they were committed."""
    stored = rows(store)
    assert stored and all(r["delivered_at"] is not None for r in stored)
    secret_of = {r["event_id"]: r["secret_env"] for r in stored}
    first: dict[str, int] = {}
    for i, a in enumerate(got):
        first.setdefault(a.event_id, i)
        assert (a.verified if secret_of[a.event_id] else not a.signed), a
    assert set(first) == {r["event_id"] for r in stored}
    by_subject: dict[object, list[str]] = defaultdict(list)
    for r in stored:
        by_subject[(r["subject"], r["url"])].append(str(r["event_id"]))
    for subject, ids in by_subject.items():
        order = sorted(ids, key=lambda e: first[e])
        assert order == ids, subject


def test_an_event_exists_exactly_when_its_transaction_commits(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'tx.db'}")
    target = outbox.WebhookTarget(url="http://127.0.0.1:9/x")
    with pytest.raises(RuntimeError), store.engine.begin() as conn:
        outbox.enqueue(conn, [target], "opt-out", "call:x", {"n": 1})
        raise RuntimeError("the state change failed")
    assert rows(store) == []
    with store.engine.begin() as conn:
        ringing_only = target.model_copy(update={"events": ("call.ringing",)})
        ids = outbox.enqueue(conn, [target, ringing_only], "opt-out", "call:x", {"n": 1})
    assert len(ids) == 1 and re.fullmatch(r"evt_[0-9a-f]{32}", ids[0])
    assert [r["event_id"] for r in rows(store)] == ids
    store.close()


async def test_a_receiver_failing_for_a_while_gets_every_event_once_in_order(
        store_url: str, receiver: Receiver) -> None:
    url = receiver.start()
    receiver.fail_first = 25
    store = Store(store_url)
    signed = outbox.WebhookTarget(url=url, secret_env=SECRET_ENV)
    unsigned = outbox.WebhookTarget(url=url + "?plain", events=("call.completed",))
    types = ("call.initiated", "call.ringing", "call.answered", "call.completed")
    for step in range(4):  # interleaved: 10 calls, their events one step at a time
        for call in range(10):
            with store.engine.begin() as conn:
                outbox.enqueue(conn, [signed, unsigned], types[step], f"call:{call}",
                               {"step": step})
    await drain(store)
    got = receiver.accepted()
    assert_each_once_in_order(store, got)
    plain = [a for a in got if not a.signed]
    assert len({a.event_id for a in plain}) == 10 and all(a.type == "call.completed"
                                                          for a in plain)
    assert len({a.event_id for a in got}) == 50
    assert len(receiver.arrivals) > len(got)  # the 500s were real answers
    retried = [r for r in rows(store) if int(str(r["attempts"])) > 1]
    assert retried and all(r["last_status"] == 200 for r in retried)
    store.close()


async def test_a_missing_secret_is_never_sent_unsigned(
        tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    url = receiver.start()
    monkeypatch.delenv(SECRET_ENV)
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    with store.engine.begin() as conn:
        outbox.enqueue(conn, [outbox.WebhookTarget(url=url, secret_env=SECRET_ENV)],
                       "opt-out", "call:1", {})
    stop = asyncio.Event()
    task = asyncio.create_task(outbox.deliver(store.engine, stop=stop, node="a",
                                              policy=FAST, idle=0.02))
    await asyncio.sleep(0.5)
    assert receiver.arrivals == []
    [row] = rows(store)
    assert row["delivered_at"] is None and f"{SECRET_ENV}" in str(row["last_error"])
    monkeypatch.setenv(SECRET_ENV, SECRET)  # the operator fixes the environment
    wait = time.monotonic() + 5
    while not receiver.accepted():
        assert time.monotonic() < wait
        await asyncio.sleep(0.05)
    stop.set()
    await task
    assert receiver.accepted()[0].verified
    store.close()


async def test_410_gives_up_once_and_the_rest_of_the_subject_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gone = Receiver()
    gone_url = gone.start()
    gone.handle = lambda body, headers: 410  # type: ignore[method-assign]
    store = Store(f"sqlite:///{tmp_path / 'g.db'}")
    with store.engine.begin() as conn:
        outbox.enqueue(conn, [outbox.WebhookTarget(url=gone_url)], "opt-out", "call:1", {})
    await drain(store)
    gone.stop()
    [row] = rows(store)
    assert row["given_up_at"] is not None and row["delivered_at"] is None
    assert "gone" in str(row["last_error"])
    assert sum("given up" in r.getMessage() for r in caplog.records) == 1
    store.close()


async def test_a_campaign_run_sends_its_events_signed_through_an_outage(
        store_url: str, receiver: Receiver, tmp_path: Path) -> None:
    url = receiver.start()
    receiver.down_until = time.monotonic() + 1.5
    n = 12
    scripts = {us_number(0): ["busy", "answer:1"], us_number(1): ["optout"]}
    campaign = load_campaign(write_campaign(
        tmp_path, n, webhooks=[{"url": url, "secret_env": SECRET_ENV}]))
    store = Store(store_url)
    import_campaign(store, campaign)
    from farend import ScriptedFarEnd

    far = ScriptedFarEnd(scripts, talk=0.05)
    dialing = run_campaign(campaign.name, store, far, node="n1", poll=0.05)
    final = await outbox.alongside(store.engine, "n1", dialing, grace=15.0, policy=FAST)
    assert final.state is CampaignState.COMPLETED
    await drain(store)
    got = receiver.accepted()
    assert_each_once_in_order(store, got)
    types = [a.type for a in got]
    assert [a.type for a in got if a.subject == f"campaign:{campaign.name}"] == [
        "campaign.started", "campaign.completed"]
    attempts = store.attempts(campaign.name)
    assert len(attempts) == n + 1  # one busy retried
    per_call: dict[str, list[str]] = defaultdict(list)
    for a in got:
        per_call[a.subject].append(a.type)
    for att in attempts:  # the far end here reports no ringing: the rest, in order
        expected = ["call.initiated", *(["call.answered"] if att.answered_at else []),
                    "call.completed", "attempt.finished",
                    *(["opt-out"] if att.outcome is Outcome.OPTED_OUT else [])]
        assert per_call[f"call:{campaign.name}/{att.id}"] == expected, att
    assert sum(t == "opt-out" for t in types) == 1
    assert sum(t == "call.answered" for t in types) >= n - 1
    store.close()


def test_sigkill_of_the_dialer_loses_no_event_and_resends_none_as_new(
        store_url: str, receiver: Receiver, tmp_path: Path) -> None:
    url = receiver.start()
    receiver.down_until = time.monotonic() + 3.0
    n = 60
    campaign = load_campaign(write_campaign(
        tmp_path, n, channels=2, webhooks=[{"url": url, "secret_env": SECRET_ENV}]))
    store = Store(store_url)
    import_campaign(store, campaign)
    log = tmp_path / "dials.log"
    # default node names (host:pid:…): the restart sees the killed one's process gone
    args = [sys.executable, str(PROC), store_url, campaign.name, "-", str(log), "{}", "0.3"]
    first = DialerProcess(store_url, campaign.name, "-", log, {}, 0.3, args=args)
    first.wait_for(8, timeout=60)  # generous: other suites load this machine

    def some_delivered() -> bool:
        return sum(r["delivered_at"] is not None for r in rows(store)) >= 10

    wait_until(some_delivered, 15, "deliveries once the receiver is back")
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(10)
    assert store.state(campaign.name)[0] is CampaignState.RUNNING, "kill it mid-campaign"
    at_kill = {str(r["event_id"]): r for r in rows(store)}
    delivered_at_kill = {e for e, r in at_kill.items() if r["delivered_at"] is not None}
    assert delivered_at_kill, "the kill should come after some deliveries"
    assert len(delivered_at_kill) < len(at_kill), "and before all of them"
    second = DialerProcess(store_url, campaign.name, "-", log, {}, 0.3, args=args)
    second.finish(timeout=90)
    asyncio.run(drain(store))
    got = receiver.accepted()
    assert_each_once_in_order(store, got)
    after = {str(r["event_id"]): r for r in rows(store)}
    assert set(at_kill) <= set(after)  # nothing committed before the kill is lost
    # one event per call and kind: nothing delivered before the kill came back as a new id
    kinds = [(r["subject"], r["type"]) for r in after.values()]
    assert [k for k, c in Counter(kinds).items() if c > 1] == []
    for att in store.attempts(campaign.name):
        subject = f"call:{campaign.name}/{att.id}"
        for kind in ("call.initiated", "call.completed", "attempt.finished"):
            assert (subject, kind) in kinds, (att, kind)
    assert store.state(campaign.name)[0] is CampaignState.COMPLETED
    store.close()


@pytest.mark.postgres
def test_two_delivery_processes_never_send_one_event_at_once(
        pg_schema_url: str, tmp_path: Path) -> None:
    slow = Receiver(hold=0.05)
    url = slow.start()
    store = Store(pg_schema_url)
    target = outbox.WebhookTarget(url=url, secret_env=SECRET_ENV)
    with store.engine.begin() as conn:
        for i in range(150):
            outbox.enqueue(conn, [target], "call.completed", f"call:{i % 50}", {"i": i})
    env = {SECRET_ENV: SECRET}
    procs = [CliProcess(["webhooks", "deliver", "--db", pg_schema_url, "--node", f"d{x}"],
                        cwd=tmp_path, env=env, tag=f"deliver-{x}") for x in "ab"]
    wait_until(lambda: outbox.pending_count(store.engine) == 0, 60, "all delivered")
    for p in procs:
        p.proc.send_signal(signal.SIGTERM)
    counts = []
    for p in procs:
        assert p.wait(20) == 0, p.stderr()
        counts.append(int(re.search(r"(\d+) event\(s\) delivered", p.stderr()).group(1)))
    slow.stop()
    assert slow.overlaps == []
    ids = [a.event_id for a in slow.accepted()]
    assert len(ids) == len(set(ids)) == 150  # each exactly once: no lease was ever shared
    assert sum(counts) == 150 and min(counts) > 0, counts  # both really worked
    assert_each_once_in_order(store, slow.accepted())
    store.close()


def test_campaign_run_delivers_its_own_events_and_the_list_shows_none_left(
        tmp_path: Path, receiver: Receiver) -> None:
    from typer.testing import CliRunner

    from autocall.cli import app

    url = receiver.start()
    path = write_campaign(tmp_path, 5, webhooks=[
        {"url": url, "secret_env": SECRET_ENV,
         "events": ["call.completed", "campaign.completed", "campaign.paused"]}])
    (tmp_path / "tree.yaml").write_text(
        "name: t\noutcomes: [done]\nstart: bye\nnodes:\n  bye: {hangup: done}\n")
    db = f"sqlite:///{tmp_path / 'run.db'}"
    runner = CliRunner()
    result = runner.invoke(app, ["campaign", "run", str(path), "--db", db,
                                 "--placer", "farend:answer_all", "--json"])
    assert result.exit_code == 0, result.output
    got = receiver.accepted()  # delivered by the run itself, before it exited
    assert sorted(a.type for a in got) == ["call.completed"] * 5 + ["campaign.completed"]
    assert all(a.verified for a in got)
    listed = runner.invoke(app, ["webhooks", "list", "--db", db, "--pending", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []
    everything = json.loads(runner.invoke(app, ["webhooks", "list", "--db", db,
                                                "--json"]).stdout)
    assert len(everything) == 6 and all(r["delivered_at"] for r in everything)
    assert {r["secret_env"] for r in everything} == {SECRET_ENV}  # its name, never its value
    store = Store(db)
    assert not any(SECRET[6:] in json.dumps(r, default=str) for r in rows(store))
    # a pause from any terminal is an event too (same transaction)
    assert store.set_state("test-campaign", CampaignState.PAUSED, "by hand")
    [paused] = [r for r in rows(store) if r["type"] == "campaign.paused"]
    assert json.loads(str(paused["payload"]))["data"]["reason"] == "by hand"
    store.close()
