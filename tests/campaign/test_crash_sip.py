"""SIGKILL a dialer placing real SIP calls to SIPp, restart it, audit what SIPp received.

SIPp's message trace is the far end's own account of every INVITE; each carries the
attempt id (X-Autocall-Attempt). No attempt may arrive in two different dialogs, every
INVITE must have its attempt row, and no committed record may change.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import write_campaign
from procs import sip_dialer

from autocall.campaign.contacts import import_campaign
from autocall.campaign.model import CampaignState, ContactState, Outcome, load_campaign
from autocall.campaign.store import Store
from tests.peers import SCENARIOS, Sipp

pytestmark = pytest.mark.peers

TREE = "name: sip-crash\noutcomes: [done]\nstart: bye\nnodes:\n  bye: {hangup: done}\n"
SIPP_PORT = 28200
# the calls stay up a while, so a kill catches some in flight on either worker
TREE_TALK_THEN_BYE = (
    "name: sip-crash\noutcomes: [done]\nstart: talk\nnodes:\n"
    "  talk: {pause: 1.0, next: bye}\n  bye: {hangup: done}\n"
)


def invites(trace: Path) -> dict[str, int]:
    """Call-ID -> attempt id of every INVITE dialog SIPp received."""
    text = trace.read_text(errors="replace")
    found: dict[str, int] = {}
    for block in re.split(r"\n(?=-{10,})", text):
        if not re.search(r"^INVITE sip:", block, re.M):
            continue
        call_id = re.search(r"^Call-ID:\s*(\S+)", block, re.M | re.I)
        attempt = re.search(r"^X-Autocall-Attempt:\s*(\d+)", block, re.M | re.I)
        assert call_id and attempt, block[:500]
        found[call_id.group(1)] = int(attempt.group(1))
    return found


def test_sigkill_with_real_sip_calls(tmp_path: Path) -> None:
    (tmp_path / "tree.yaml").write_text(TREE)
    campaign = load_campaign(write_campaign(tmp_path, 30, channels=4, calls_per_second=20))
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    store = Store(url)
    import_campaign(store, campaign)
    trace = tmp_path / "sipp-messages.log"
    sipp = Sipp(SCENARIOS / "uas_answer.xml", port=SIPP_PORT, media_port=SIPP_PORT + 2,
                calls=1000, timeout=60, cwd=tmp_path,
                extra=["-trace_msg", "-message_file", str(trace)])
    sipp.start()
    target = f"sip:sipp@127.0.0.1:{SIPP_PORT}"
    try:
        first = sip_dialer(url, campaign.name, "node-a", SIPP_PORT + 10, target)
        first.wait_for(8, timeout=60)
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        first._reader.join(5)
        committed = dict(first.done)
        open_at_kill = {a.id for a in store.attempts(campaign.name) if a.ended_at is None}
        assert open_at_kill, "the kill should catch calls in flight"

        second = sip_dialer(url, campaign.name, "node-a", SIPP_PORT + 20, target)
        second.finish(timeout=90)
    finally:
        time.sleep(0.3)
        sipp.stop()

    rows = store.attempts(campaign.name)
    by_id = {a.id: a for a in rows}
    dialogs = invites(trace)
    assert len(dialogs) >= 30
    per_attempt: dict[int, list[str]] = defaultdict(list)
    for call_id, attempt_id in dialogs.items():
        per_attempt[attempt_id].append(call_id)
    # No attempt reached the far end in two dialogs; each has its row.
    assert all(len(v) == 1 for v in per_attempt.values()), per_attempt
    assert set(per_attempt) <= set(by_id)
    seen = {(by_id[a].contact_id, by_id[a].attempt_no) for a in per_attempt}
    assert len(seen) == len(per_attempt)
    for attempt_id, outcome in committed.items():
        assert by_id[attempt_id].outcome == Outcome(outcome)
    for attempt_id in open_at_kill:
        assert by_id[attempt_id].outcome is Outcome.INTERRUPTED
    assert all(a.ended_at is not None for a in rows)
    for c in store.contacts(campaign.name):
        assert c.state is ContactState.DONE
        assert sorted(a.attempt_no for a in rows if a.contact_id == c.id) == list(
            range(1, c.attempts + 1))
    assert store.state(campaign.name)[0] is CampaignState.COMPLETED
    store.close()


def test_sigkill_of_one_of_two_workers_with_real_sip_calls(tmp_path: Path) -> None:
    """``campaign run --workers 2`` through our UA to SIPp (each worker on its own SIP
    port); one worker killed -9 mid-call: the other resolves its calls as interrupted
    and finishes the list; SIPp saw no attempt in two dialogs (issue 20)."""
    from clirun import CliProcess, sip_env, wait_until
    from test_workers import _children, _pid

    port = SIPP_PORT + 40
    (tmp_path / "tree.yaml").write_text(TREE_TALK_THEN_BYE)
    campaign = load_campaign(write_campaign(tmp_path, 30, channels=4, calls_per_second=20))
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    store = Store(url)
    import_campaign(store, campaign)
    trace = tmp_path / "sipp-messages.log"
    sipp = Sipp(SCENARIOS / "uas_answer.xml", port=port, media_port=port + 2,
                calls=1000, timeout=90, cwd=tmp_path,
                extra=["-trace_msg", "-message_file", str(trace)])
    sipp.start()
    run = CliProcess(["campaign", "run", campaign.name, "--db", url, "--workers", "2"],
                     cwd=tmp_path, env=sip_env(port, port + 10, tmp_path), tag="run")
    try:
        wait_until(lambda: len(_children(run.proc.pid)) == 2, 30, "two workers started")
        victim = _children(run.proc.pid)[0]

        def ready() -> bool:
            rows = store.attempts(campaign.name)
            return (sum(a.ended_at is not None for a in rows) >= 6
                    and any(a.ended_at is None and _pid(a.node) == victim for a in rows))

        wait_until(ready, 60, "records committed and the victim's calls up")
        committed = {a.id: a.outcome for a in store.attempts(campaign.name)
                     if a.ended_at is not None}
        os.kill(victim, signal.SIGKILL)
        open_at_kill = {a.id for a in store.attempts(campaign.name)
                        if a.ended_at is None and _pid(a.node) == victim}
        assert open_at_kill, "the kill should catch calls in flight"
        assert run.wait(120) == 1, run.stderr()[-3000:]
        assert "killed by SIGKILL" in run.stderr() and "Traceback" not in run.stderr()
    finally:
        for child in _children(run.proc.pid):
            os.kill(child, signal.SIGKILL)
        time.sleep(0.3)
        sipp.stop()

    rows = store.attempts(campaign.name)
    by_id = {a.id: a for a in rows}
    dialogs = invites(trace)
    assert len(dialogs) >= 30
    per_attempt: dict[int, list[str]] = defaultdict(list)
    for call_id, attempt_id in dialogs.items():
        per_attempt[attempt_id].append(call_id)
    assert all(len(v) == 1 for v in per_attempt.values()), per_attempt
    assert set(per_attempt) <= set(by_id)
    assert len({(by_id[a].contact_id, by_id[a].attempt_no) for a in per_attempt}) == len(
        per_attempt)
    assert len({by_id[a].node for a in per_attempt}) == 2  # both workers dialed
    for attempt_id, outcome in committed.items():
        assert by_id[attempt_id].outcome == outcome
    for attempt_id in open_at_kill:
        assert by_id[attempt_id].outcome is Outcome.INTERRUPTED
    assert all(a.ended_at is not None for a in rows)
    for c in store.contacts(campaign.name):
        assert c.state is ContactState.DONE
    assert store.state(campaign.name)[0] is CampaignState.COMPLETED
    store.close()
