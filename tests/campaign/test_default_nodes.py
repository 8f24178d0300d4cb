"""Issue 12 item 6: two `campaign run` started the same way never dial a contact twice.

Both dialers run with DEFAULT settings (no --node) on one host against one store and
real SIPp callees. The second starts while the first has calls up; before the fix it
took the first one's live attempts for its own, resolved them as interrupted and dialed
those contacts again.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from clirun import TREE_TALK, CliProcess, sip_env, sipp_requests, wait_until
from conftest import write_campaign
from procs import DialerProcess, read_dials

from autocall.campaign.contacts import import_campaign
from autocall.campaign.model import CampaignState, Outcome, load_campaign
from autocall.campaign.store import Store
from tests.peers import SCENARIOS, Sipp

pytestmark = pytest.mark.peers

N = 24


def _two_default_dialers(tmp_path: Path, url: str, sipp_port: int) -> None:
    (tmp_path / "tree.yaml").write_text(TREE_TALK.format(talk=1.5))
    campaign = load_campaign(write_campaign(tmp_path, N, channels=4, calls_per_second=20))
    store = Store(url)
    import_campaign(store, campaign)
    trace = tmp_path / "sipp-messages.log"
    sipp = Sipp(
        SCENARIOS / "uas_answer.xml",
        port=sipp_port,
        media_port=sipp_port + 2,
        calls=1000,
        timeout=120,
        cwd=tmp_path,
        extra=["-trace_msg", "-message_file", str(trace)],
    )
    sipp.start()
    try:
        # One process each: two dialers started apart, each a node (the nodes of
        # --workers N, also default-named, are test_workers.py's and test_two_nodes.py's)
        args = ["campaign", "run", campaign.name, "--db", url, "--json", "--workers", "1"]
        first = CliProcess(
            args, cwd=tmp_path, env=sip_env(sipp_port, sipp_port + 10, tmp_path), tag="first"
        )

        def calls_up() -> bool:
            return (
                any(
                    a.ended_at is None and a.answered_at is None
                    for a in store.attempts(campaign.name)
                )
                and len(sipp_requests(trace, "ACK")) >= 2
            )

        wait_until(calls_up, 60, "the first dialer's calls are up")
        second = CliProcess(
            args, cwd=tmp_path, env=sip_env(sipp_port, sipp_port + 20, tmp_path), tag="second"
        )
        assert first.wait(120) == 0, first.stderr()[-3000:]
        assert second.wait(120) == 0, second.stderr()[-3000:]
    finally:
        sipp.stop()
    rows = store.attempts(campaign.name)
    invites = Counter(sipp_requests(trace, "INVITE"))
    per_number = Counter(a.number for a in rows)
    nodes = {a.node for a in rows}
    store.close()
    assert [a.id for a in rows if a.outcome is Outcome.INTERRUPTED] == []
    assert all(a.ended_at is not None for a in rows)
    assert max(per_number.values()) == 1 and len(per_number) == N, per_number
    assert len(invites) == N  # SIPp's own account: one dialog per contact
    assert all(a.outcome is Outcome.COMPLETED for a in rows)
    assert len(nodes) == 2 and all(n.count(":") == 2 for n in nodes), nodes
    assert "Traceback" not in first.stderr() + second.stderr()


def test_two_default_dialers_sqlite(tmp_path: Path) -> None:
    _two_default_dialers(tmp_path, f"sqlite:///{tmp_path / 'two.db'}", 43000)


@pytest.mark.postgres
def test_two_default_dialers_postgres(tmp_path: Path, pg_schema_url: str) -> None:
    _two_default_dialers(tmp_path, pg_schema_url, 43040)
    store = Store(pg_schema_url)
    try:
        assert store.state("test-campaign")[0] is CampaignState.COMPLETED
    finally:
        store.close()


def _killed_default_node(tmp_path: Path, url: str) -> None:
    """SIGKILL one of two default nodes: the other, still dialing, resolves the dead
    one's open attempts (its process is gone from this host) and finishes the list."""
    n = 30
    campaign = load_campaign(write_campaign(tmp_path, n, channels=3, calls_per_second=20))
    store = Store(url)
    import_campaign(store, campaign)
    log = tmp_path / "dials.log"
    first = DialerProcess(url, campaign.name, "-", log, {}, talk=1.0)
    first.wait_for(3, timeout=60)
    second = DialerProcess(url, campaign.name, "-", log, {}, talk=1.0)
    wait_until(
        lambda: len({a.node for a in store.attempts(campaign.name)}) == 2, 60, "both nodes dialing"
    )
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(10)
    first_node = store.attempts(campaign.name)[0].node
    open_at_kill = {
        a.id for a in store.attempts(campaign.name) if a.node == first_node and a.ended_at is None
    }
    assert open_at_kill, "the kill should catch calls in flight"
    second.finish(timeout=120)
    rows = store.attempts(campaign.name)
    by_id = {a.id: a for a in rows}
    store.close()
    assert all(by_id[i].outcome is Outcome.INTERRUPTED for i in open_at_kill)
    assert all(a.ended_at is not None for a in rows)
    dials = Counter((contact, no) for _, contact, no, _ in read_dials(log))
    assert max(dials.values()) == 1  # an attempt never reached the far end twice
    assert {c for c, _ in dials} == {a.contact_id for a in rows} and len({c for c, _ in dials}) == n


def test_a_killed_default_node_is_recovered_by_the_running_one_sqlite(tmp_path: Path) -> None:
    _killed_default_node(tmp_path, f"sqlite:///{tmp_path / 'kill.db'}")


@pytest.mark.postgres
def test_a_killed_default_node_is_recovered_by_the_running_one_postgres(
    tmp_path: Path, pg_schema_url: str
) -> None:
    _killed_default_node(tmp_path, pg_schema_url)
