"""Issue 12 item 8: a PostgreSQL restart of under a second is ridden through.

The test starts its own server (port 43900) and restarts it while a dialer process has
calls up. Before the fix the dialer died with a traceback; now it retries the store with
backoff, does not dial meanwhile, keeps its calls and writes their records when the
server is back: every dialed attempt has exactly one finished record. ``serve``'s record
writer (Store.add_call) rides through the same restart.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from clirun import TREE_TALK, CliProcess, sip_env, sipp_requests, wait_until
from conftest import write_campaign
from pgserver import OwnPostgres
from procs import DialerProcess, read_dials, sip_dialer

from autocall.campaign.contacts import import_campaign
from autocall.campaign.model import CampaignState, ContactState, Outcome, load_campaign
from autocall.campaign.store import Store
from autocall.telephony.record import CallRecord, CallStatus
from tests.peers import SCENARIOS, Sipp

pytestmark = pytest.mark.postgres

PG_PORT = 43900


@pytest.fixture
def own_pg() -> Iterator[OwnPostgres]:
    server = OwnPostgres(PG_PORT).start()
    try:
        yield server
    finally:
        server.stop()


def test_dialer_rides_through_a_postgres_restart(tmp_path: Path, own_pg: OwnPostgres) -> None:
    n = 40
    campaign = load_campaign(write_campaign(tmp_path, n, channels=4, calls_per_second=20))
    store = Store(own_pg.url)
    import_campaign(store, campaign)
    store.close()
    log = tmp_path / "dials.log"
    dialer = DialerProcess(own_pg.url, campaign.name, "node-a", log, {}, talk=0.4)
    dialer.wait_for(8, timeout=60)
    up = len(read_dials(log)) - len(dialer.done)
    assert up > 0, "the restart should find calls up"
    t0 = time.monotonic()
    own_pg.restart()
    restart_s = time.monotonic() - t0
    dialer.finish(timeout=120)
    err = dialer.proc.stderr.read() if dialer.proc.stderr else ""
    assert "Traceback" not in err, err[-3000:]

    store = Store(own_pg.url)
    try:
        rows = store.attempts(campaign.name)
        dials = read_dials(log)
        by_id = {a.id: a for a in rows}
        per_contact = Counter(contact for _, contact, _, _ in dials)
        assert max(per_contact.values()) == 1 and len(per_contact) == n  # none twice
        for attempt_id, *_ in dials:  # none lost: each call has its finished record
            assert by_id[attempt_id].ended_at is not None
            assert by_id[attempt_id].outcome is Outcome.COMPLETED, by_id[attempt_id]
        assert sorted(dialer.done) == sorted((a, "completed") for a, *_ in dials)
        undialed = [a for a in rows if a.id not in {d[0] for d in dials}]
        # A claim whose commit was cut by the restart is resolved, never left open.
        assert all(a.outcome is Outcome.INTERRUPTED for a in undialed), undialed
        assert all(c.state is ContactState.DONE for c in store.contacts(campaign.name))
        assert store.state(campaign.name)[0] is CampaignState.COMPLETED
    finally:
        store.close()
    assert restart_s < 5, restart_s


def test_serve_record_writer_rides_through_a_restart(own_pg: OwnPostgres) -> None:
    store = Store(own_pg.url)
    try:
        assert store.add_call(CallRecord(CallStatus.COMPLETED, call_id="before",
                                         direction="inbound"))
        own_pg.down()  # the pooled connection is dead and no new one can be made
        back = threading.Timer(0.5, own_pg.start)  # a restart of under a second
        back.start()
        record = CallRecord(CallStatus.COMPLETED, call_id="after", direction="inbound",
                            ended_at=datetime.now(UTC))
        try:
            assert store.add_call(record)  # written while the server was down: retried
        finally:
            back.join()
        assert not store.add_call(record)  # written once
        assert [c.call_id for c in store.calls()] == ["before", "after"]
    finally:
        store.close()


@pytest.mark.peers
def test_live_sip_calls_stay_up_across_a_postgres_restart(
    tmp_path: Path, own_pg: OwnPostgres
) -> None:
    """Real calls to SIPp while the server restarts: each call is answered, released
    with our BYE when its dialogue ends, and has one finished record; none dialed twice."""
    (tmp_path / "tree.yaml").write_text(TREE_TALK.format(talk=1.5))
    campaign = load_campaign(write_campaign(tmp_path, 16, channels=4, calls_per_second=20))
    store = Store(own_pg.url)
    import_campaign(store, campaign)
    store.close()
    trace = tmp_path / "sipp-messages.log"
    sipp = Sipp(
        SCENARIOS / "uas_answer.xml",
        port=43600,
        media_port=43602,
        calls=1000,
        timeout=120,
        cwd=tmp_path,
        extra=["-trace_msg", "-message_file", str(trace)],
    )
    sipp.start()
    try:
        dialer = sip_dialer(
            own_pg.url, campaign.name, "node-sip", 43610, "sip:sipp@127.0.0.1:43600"
        )
        wait_until(lambda: len(sipp_requests(trace, "ACK")) >= 6, 60, "calls answered")
        acked = set(sipp_requests(trace, "ACK"))
        ended = set(sipp_requests(trace, "BYE"))
        assert acked - ended, "the restart should find calls up"
        own_pg.restart()
        dialer.finish(timeout=120)
    finally:
        sipp.stop()
    err = dialer.proc.stderr.read() if dialer.proc.stderr else ""
    assert "Traceback" not in err, err[-3000:]
    invites = sipp_requests(trace, "INVITE")
    assert len(invites) == len(set(invites)) == 16
    assert set(sipp_requests(trace, "BYE")) == set(invites)  # every call ended by our BYE
    store = Store(own_pg.url)
    try:
        rows = store.attempts(campaign.name)
        assert len(rows) == 16 and len({a.contact_id for a in rows}) == 16
        assert all(a.outcome is Outcome.COMPLETED and a.ended_at is not None for a in rows)
        assert all(a.billable is not None and a.billable >= 1.4 for a in rows)
    finally:
        store.close()


@pytest.mark.peers
def test_forced_stop_while_the_store_is_down_hangs_up_without_traceback(
    tmp_path: Path, own_pg: OwnPostgres
) -> None:
    """The server stays down; SIGTERM twice: the calls get their BYE, the dialer says
    why it could not write their records (exit 1, no traceback), and a dialer started
    once the server is back resolves them as interrupted."""
    (tmp_path / "tree.yaml").write_text(TREE_TALK.format(talk=60))
    campaign = load_campaign(write_campaign(tmp_path, 6, channels=2, calls_per_second=20))
    store = Store(own_pg.url)
    import_campaign(store, campaign)
    store.close()
    trace = tmp_path / "sipp-messages.log"
    sipp = Sipp(
        SCENARIOS / "uas_answer.xml",
        port=43620,
        media_port=43622,
        calls=1000,
        timeout=120,
        cwd=tmp_path,
        extra=["-trace_msg", "-message_file", str(trace)],
    )
    sipp.start()
    try:
        run = CliProcess(
            ["campaign", "run", campaign.name, "--db", own_pg.url],
            cwd=tmp_path,
            env=sip_env(43620, 43630, tmp_path),
            tag="run",
        )
        wait_until(lambda: len(sipp_requests(trace, "ACK")) >= 2, 60, "calls answered")
        own_pg.down()
        wait_until(lambda: "store unreachable" in run.stderr(), 30, "outage noticed")
        run.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "no new calls" in run.stderr(), 30, "first signal handled")
        run.proc.send_signal(signal.SIGTERM)
        assert run.wait(30) == 1, run.stderr()[-3000:]
        assert set(sipp_requests(trace, "BYE")) == set(sipp_requests(trace, "INVITE"))
    finally:
        sipp.stop()
    assert "Traceback" not in run.stderr(), run.stderr()[-3000:]
    # one line per dialer process (with --workers, each says how many of its own)
    unrecorded = re.findall(r"^error: .*with (\d+) call\(s\) in flight unrecorded",
                            run.stderr(), re.M)
    assert unrecorded and sum(map(int, unrecorded)) == 2, run.stderr()[-3000:]
    own_pg.start()
    store = Store(own_pg.url)
    try:
        rows = store.attempts(campaign.name)
        assert len(rows) == 2 and all(a.ended_at is None for a in rows)
        nodes = {a.node for a in rows}  # one, or one per worker
        assert store.recover(
            campaign.name, "another", datetime.now(UTC), lambda n: None,
            dead=lambda n, _: n in nodes,
        ) == [a.id for a in rows]
    finally:
        store.close()
