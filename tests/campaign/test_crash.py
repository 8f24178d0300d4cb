"""SIGKILL the dialer mid-campaign, restart it, and audit every contact's attempts."""

from __future__ import annotations

import os
import signal
from collections import Counter, defaultdict
from pathlib import Path

from conftest import us_number, write_campaign
from procs import DialerProcess, read_dials

from autocall.campaign.contacts import import_campaign
from autocall.campaign.model import CampaignState, ContactState, Outcome, load_campaign
from autocall.campaign.store import Store


def test_sigkill_then_restart_loses_nothing_and_dials_no_attempt_twice(
        tmp_path: Path, sqlite_url: str) -> None:
    campaign = load_campaign(write_campaign(tmp_path, 40, channels=4, calls_per_second=100))
    store = Store(sqlite_url)
    import_campaign(store, campaign)
    scripts = {us_number(i): ["busy", "answer:1"] for i in range(0, 40, 4)}
    log = tmp_path / "dials.log"

    first = DialerProcess(sqlite_url, campaign.name, "node-a", log, scripts, talk=0.15)
    first.wait_for(12, timeout=60)
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(10)
    first._reader.join(5)
    committed = dict(first.done)
    open_at_kill = {a.id for a in store.attempts(campaign.name) if a.ended_at is None}
    assert open_at_kill, "the kill should catch calls in flight"
    dials_before = len(read_dials(log))
    assert dials_before < 40

    second = DialerProcess(sqlite_url, campaign.name, "node-a", log, scripts, talk=0.02)
    second.finish(timeout=60)

    rows = store.attempts(campaign.name)
    by_id = {a.id: a for a in rows}
    dials = read_dials(log)
    # No contact dialed twice for the same attempt.
    counts = Counter((contact, no) for _, contact, no, _ in dials)
    assert max(counts.values()) == 1
    # Every dial has its attempt row, written before the call was placed.
    for attempt_id, contact_id, attempt_no, number in dials:
        a = by_id[attempt_id]
        assert (a.contact_id, a.attempt_no, a.number) == (contact_id, attempt_no, number)
    # No finished record lost: what was committed before the kill is still there, unchanged.
    for attempt_id, outcome in committed.items():
        assert by_id[attempt_id].outcome == Outcome(outcome)
    # Calls in flight at the kill were resolved by policy (interrupted, counted).
    for attempt_id in open_at_kill:
        assert by_id[attempt_id].outcome is Outcome.INTERRUPTED
        assert by_id[attempt_id].ended_at is not None
    assert all(a.ended_at is not None for a in rows)
    # Every contact's counter matches its attempt rows, numbered 1..n, and it is done.
    per_contact: dict[int, list[int]] = defaultdict(list)
    for a in rows:
        per_contact[a.contact_id].append(a.attempt_no)
    contacts = store.contacts(campaign.name)
    assert len(contacts) == 40
    for c in contacts:
        assert sorted(per_contact[c.id]) == list(range(1, c.attempts + 1))
        assert c.state is ContactState.DONE
    assert store.state(campaign.name)[0] is CampaignState.COMPLETED
