"""A campaign's webhooks over real SIP: our user agent and SipPlacer dial SIPp callees
(answer, busy, ringing until CANCEL) while the CRM's receiver answers 500 for a while;
every event then arrives once, signed, in order per call, ringing included.
Ports: 18320-18359."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from conftest import us_number, write_campaign
from outbox_dialer_proc import FAST
from outbox_receiver import SECRET, Receiver
from test_outbox import SECRET_ENV, assert_each_once_in_order, drain

from autocall.campaign import outbox
from autocall.campaign.contacts import import_campaign
from autocall.campaign.dialer import CallRequest, run_campaign
from autocall.campaign.model import CampaignState, load_campaign
from autocall.campaign.placer import SipPlacer
from autocall.campaign.store import Store
from autocall.telephony.call import UserAgent
from tests.peers import SCENARIOS, Sipp

pytestmark = pytest.mark.peers

TREE = (
    "name: sip-hooks\noutcomes: [done]\nstart: talk\nnodes:\n"
    "  talk: {pause: 0.5, next: bye}\n  bye: {hangup: done}\n"
)
CALLEES = {0: ("uas_answer.xml", 18320), 1: ("uas_reject_486.xml", 18330),
           2: ("uas_ring.xml", 18340)}


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_sip_campaign_events_reach_a_flaky_receiver_once_in_order(
        tmp_path: Path, db: str, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    receiver = Receiver(fail_first=6)
    url = receiver.start()
    (tmp_path / "tree.yaml").write_text(TREE)
    campaign = load_campaign(write_campaign(
        tmp_path, len(CALLEES), ring_timeout=1, channels=3,
        retry={"max_attempts": 1}, webhooks=[{"url": url, "secret_env": SECRET_ENV}]))
    store_url = (f"sqlite:///{tmp_path / 'sip.db'}" if db == "sqlite"
                 else request.getfixturevalue("pg_schema_url"))
    store = Store(store_url)
    import_campaign(store, campaign)
    shift = 5 if db == "postgres" else 0
    port_of = {us_number(i): port + shift for i, (_, port) in CALLEES.items()}
    peers = [Sipp(SCENARIOS / scenario, port=port + shift, media_port=port + shift + 2,
                  timeout=30, cwd=tmp_path) for scenario, port in CALLEES.values()]
    for peer in peers:
        peer.start()
    ua = await UserAgent.start(bind_host="127.0.0.1", bind_port=18350 + shift)
    try:
        def target(req: CallRequest) -> str:
            return f"sip:sipp@127.0.0.1:{port_of[req.number]}"

        placer = SipPlacer(ua, target=target, tts_cache_dir=tmp_path / "tts",
                           recordings_dir=tmp_path / "rec")
        dialing = run_campaign(campaign.name, store, placer, node="sip-node", poll=0.05)
        final = await outbox.alongside(store.engine, "sip-node", dialing, grace=10.0,
                                       policy=FAST)
    finally:
        await ua.close()
        for peer in peers:
            peer.stop()
    assert final.state is CampaignState.COMPLETED
    await drain(store)
    got = receiver.accepted()
    assert_each_once_in_order(store, got)
    assert len(receiver.arrivals) > len(got)  # the 500s happened
    seq: dict[str, list[str]] = defaultdict(list)
    for a in got:
        seq[a.subject].append(a.type)
    by_number = {a.number: a for a in store.attempts(campaign.name)}
    done = ["call.completed", "attempt.finished"]
    expected = {
        us_number(0): ["call.initiated", "call.ringing", "call.answered", *done],
        us_number(1): ["call.initiated", "call.ringing", *done],  # 180, then 486 Busy
        us_number(2): ["call.initiated", "call.ringing", *done],  # CANCEL at ring timeout
    }
    for number, kinds in expected.items():
        assert seq[f"call:{campaign.name}/{by_number[number].id}"] == kinds, number
    assert seq[f"campaign:{campaign.name}"] == ["campaign.started", "campaign.completed"]
    completed = next(a for a in got if a.type == "call.completed"
                     and a.subject.endswith(f"/{by_number[us_number(0)].id}"))
    data = completed.body["data"]
    assert isinstance(data, dict) and data["status"] == "completed" and data["sip_code"] == 200
    store.close()
    receiver.stop()
