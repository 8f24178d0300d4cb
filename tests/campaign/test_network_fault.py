"""Issue 12 item 9 (campaign side): a dead trunk is a network fault, not "no-answer".

The trunk is a real UDP socket that swallows every INVITE and never answers: our user
agent's Timer B (RFC 3261 §17.1.1.2, 64*T1; T1 shortened to 50 ms here) ends each call
with 408 and no response at all. The campaign records ``network-fault``, retries those
contacts by its own rule without using up their attempts, and pauses itself, saying
why, after ``pause_after_network_faults`` such calls in a row.
"""

from __future__ import annotations

import asyncio
import re
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import write_campaign

from autocall.campaign.contacts import import_campaign
from autocall.campaign.dialer import (
    network_fault,
    outcome_of,
    plan_contact,
    run_campaign,
)
from autocall.campaign.model import (
    CallStatus,
    CampaignState,
    ContactState,
    Dial,
    Outcome,
    RetryPolicy,
    load_campaign,
)
from autocall.campaign.placer import SipPlacer
from autocall.campaign.store import Store
from autocall.sip.transaction import Timers
from autocall.telephony.call import UserAgent
from autocall.telephony.record import CallRecord

TRUNK_PORT = 43300
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@pytest.mark.peers
async def test_dead_trunk_pauses_the_campaign_as_network_fault(tmp_path: Path) -> None:
    (tmp_path / "tree.yaml").write_text(
        "name: t\noutcomes: [done]\nstart: bye\nnodes:\n  bye: {hangup: done}\n"
    )
    campaign = load_campaign(
        write_campaign(
            tmp_path,
            8,
            channels=2,
            calls_per_second=20,
            ring_timeout=30,
            pause_after_network_faults=3,
        )
    )
    store = Store(f"sqlite:///{tmp_path / 'dead.db'}")
    import_campaign(store, campaign)
    trunk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    trunk.bind(("127.0.0.1", TRUNK_PORT))
    trunk.setblocking(False)
    received: list[bytes] = []
    loop = asyncio.get_running_loop()
    loop.add_reader(trunk.fileno(), lambda: received.append(trunk.recv(65535)))
    ua = await UserAgent.start(
        bind_host="127.0.0.1", bind_port=TRUNK_PORT + 10, timers=Timers(t1=0.05)
    )
    paused = False

    def stop() -> bool:
        return paused

    try:
        placer = SipPlacer(
            ua,
            target=f"sip:{{number}}@127.0.0.1:{TRUNK_PORT}",
            tts_cache_dir=tmp_path / "tts",
            recordings_dir=tmp_path / "rec",
        )
        run = asyncio.create_task(run_campaign(campaign.name, store, placer, poll=0.05))
        for _ in range(600):  # bounded: 30 s
            if store.state(campaign.name)[0] is CampaignState.PAUSED:
                break
            await asyncio.sleep(0.05)
        state, reason = store.state(campaign.name)
        assert state is CampaignState.PAUSED
        store.set_state(campaign.name, CampaignState.STOPPED, "test done")
        await asyncio.wait_for(run, 30)
    finally:
        loop.remove_reader(trunk.fileno())
        trunk.close()
        await ua.close()
    assert reason is not None
    assert "3 calls in a row failed as network-fault" in reason and "resume" in reason
    assert "408" in reason
    rows = store.attempts(campaign.name)
    assert 3 <= len(rows) <= 4  # the calls in flight when it paused end too; none after
    assert {a.outcome for a in rows} == {Outcome.NETWORK_FAULT}
    assert all(a.status is CallStatus.FAILED and a.sip_code == 408 for a in rows)
    call_ids = {
        m.group(1)
        for raw in received
        for m in [re.search(rb"^Call-ID:\s*(\S+)", raw, re.M | re.I)]
        if m
    }
    assert len(call_ids) == len(rows)  # no INVITE left after the pause
    for c in store.contacts(campaign.name):
        if c.attempts:
            assert c.state is ContactState.PENDING and c.network_faults == 1
            assert c.last_outcome is Outcome.NETWORK_FAULT
            assert c.next_at is not None and c.next_at > datetime.now(UTC) + timedelta(
                seconds=90
            )  # the default 2 min rule, though the YAML's delays omit it
    store.close()


def test_classification_in_one_function() -> None:
    # Today's user agent: Timer B, no response at all.
    timer_b = CallRecord(
        CallStatus.FAILED, 408, reason="Request Timeout (no final response)", ended_by="remote"
    )
    assert network_fault(timer_b) and outcome_of(timer_b) is Outcome.NETWORK_FAULT
    # The fixed user agent: refused TCP connection (503) and Timer B (408), ended by us.
    assert network_fault(CallRecord(CallStatus.FAILED, 503, ended_by="local"))
    assert network_fault(CallRecord(CallStatus.FAILED, 408, ended_by="local"))
    assert network_fault(
        CallRecord(CallStatus.FAILED, None, error="ConnectionRefusedError: [Errno 111] refused")
    )
    # The far end's own answers are about the callee.
    assert (
        outcome_of(
            CallRecord(CallStatus.FAILED, 503, reason="Service Unavailable", ended_by="remote")
        )
        is Outcome.UNREACHABLE
    )
    assert (
        outcome_of(
            CallRecord(CallStatus.NO_ANSWER, 408, reason="Request Timeout", ended_by="remote")
        )
        is Outcome.NO_ANSWER
    )
    assert (
        outcome_of(CallRecord(CallStatus.NO_ANSWER, 487, reason="ring timeout", ended_by="local"))
        is Outcome.NO_ANSWER
    )
    assert not network_fault(CallRecord(CallStatus.COMPLETED, 200, ended_by="local"))


def test_network_faults_have_their_own_cap_and_do_not_use_attempts(tmp_path: Path) -> None:
    policy = RetryPolicy(max_attempts=2, max_network_faults=3)
    assert policy.next_try(Outcome.NETWORK_FAULT, 1, NOW, 1) == NOW + timedelta(minutes=2)
    # 4 tries, 3 of them faults: one real attempt used, but the fault cap is reached.
    assert policy.next_try(Outcome.NETWORK_FAULT, 4, NOW, 3) is None
    # 3 tries, 2 faults: the callee was reached once; one attempt is left.
    assert policy.next_try(Outcome.BUSY, 3, NOW, 2) == NOW + timedelta(minutes=10)
    assert policy.next_try(Outcome.BUSY, 2, NOW, 0) is None
    campaign = load_campaign(write_campaign(tmp_path, 1, retry={"max_attempts": 2}))
    store = Store(f"sqlite:///{tmp_path / 'cap.db'}")
    import_campaign(store, campaign)
    (contact,) = store.contacts(campaign.name)
    contact = type(contact)(**{**contact.__dict__, "attempts": 3, "network_faults": 2})
    assert isinstance(plan_contact(campaign, contact, NOW, set()), Dial)
    store.close()
