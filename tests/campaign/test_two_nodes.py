"""Two dialer processes share one PostgreSQL campaign: every attempt is dialed once."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import us_number, write_campaign
from procs import DialerProcess, read_dials

from autocall.campaign.contacts import import_campaign
from autocall.campaign.model import CampaignState, ContactState, load_campaign
from autocall.campaign.store import Store

pytestmark = pytest.mark.postgres


def test_two_nodes_dial_each_attempt_exactly_once(tmp_path: Path, pg_schema_url: str) -> None:
    n = 60
    campaign = load_campaign(write_campaign(tmp_path, n, channels=4, calls_per_second=100))
    store = Store(pg_schema_url)
    try:
        report = import_campaign(store, campaign)
        assert report.added == n
        # Some contacts need a second and third attempt, which either node may take.
        scripts = {us_number(i): ["busy", "noanswer", "answer:1"] for i in range(0, n, 3)}
        log = tmp_path / "dials.log"
        nodes = [DialerProcess(pg_schema_url, campaign.name, f"node-{x}", log, scripts,
                               talk=0.05, start=False) for x in "ab"]
        deadline = time.monotonic() + 30
        while len(store.summary(campaign.name, datetime.now(UTC)).nodes) < 2:
            assert time.monotonic() < deadline, "dialer nodes did not start"
            time.sleep(0.05)
        store.set_state(campaign.name, CampaignState.RUNNING, "test go")
        for node in nodes:
            node.finish(timeout=90)

        dials = read_dials(log)
        per_attempt = Counter((contact, no) for _, contact, no, _ in dials)
        assert max(per_attempt.values()) == 1
        rows = store.attempts(campaign.name)
        assert len(rows) == len(dials) == n + 2 * len(scripts)
        assert all(a.ended_at is not None for a in rows)
        by_node = Counter(a.node for a in rows)
        assert set(by_node) == {"node-a", "node-b"}, by_node
        assert all(c.state is ContactState.DONE for c in store.contacts(campaign.name))
        assert store.state(campaign.name)[0] is CampaignState.COMPLETED
    finally:
        store.close()


def test_two_nodes_of_two_workers_each_dial_each_attempt_exactly_once(
        tmp_path: Path, pg_schema_url: str) -> None:
    """The same with ``campaign run --workers 2`` on each node: four dialer processes,
    named NODE/1 and NODE/2, claim from one PostgreSQL campaign (issue 20)."""
    from test_workers import _children, _run

    n = 60
    (tmp_path / "tree.yaml").write_text(
        "name: t\noutcomes: [done]\nstart: bye\nnodes:\n  bye: {hangup: done}\n")
    campaign = load_campaign(write_campaign(tmp_path, n, channels=4, calls_per_second=100))
    store = Store(pg_schema_url)
    runs = []
    try:
        import_campaign(store, campaign)
        store.set_state(campaign.name, CampaignState.PAUSED, "test: wait for all workers")
        scripts = {us_number(i): ["busy", "noanswer", "answer:1"] for i in range(0, n, 3)}
        log = tmp_path / "dials.log"
        conf = {"scripts": scripts, "talk": 0.1, "log": str(log)}
        runs = [_run(tmp_path, pg_schema_url, conf, "--workers", "2", "--node", f"node-{x}",
                     tag=f"node-{x}") for x in "ab"]
        deadline = time.monotonic() + 60
        while len(store.summary(campaign.name, datetime.now(UTC)).nodes) < 4:
            assert time.monotonic() < deadline, "dialer workers did not start"
            time.sleep(0.05)
        store.set_state(campaign.name, CampaignState.RUNNING, "test go")
        for run in runs:
            assert run.wait(120) == 0, run.stderr()[-3000:]

        dials = read_dials(log)
        per_attempt = Counter((contact, no) for _, contact, no, _ in dials)
        assert max(per_attempt.values()) == 1
        rows = store.attempts(campaign.name)
        assert len(rows) == len(dials) == n + 2 * len(scripts)
        assert all(a.ended_at is not None for a in rows)
        by_node = Counter(a.node for a in rows)
        assert set(by_node) == {"node-a/1", "node-a/2", "node-b/1", "node-b/2"}, by_node
        assert all(c.state is ContactState.DONE for c in store.contacts(campaign.name))
        assert store.state(campaign.name)[0] is CampaignState.COMPLETED
    finally:
        for run in runs:
            for child in _children(run.proc.pid):
                os.kill(child, signal.SIGKILL)
        store.close()
