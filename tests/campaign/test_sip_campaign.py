"""A campaign over real SIP: our user agent and SipPlacer against SIPp callees,
directly and through Kamailio (digest auth on every INVITE, Record-Route).

Each SIPp process is one kind of callee (answers, busy 486, declines 603, rings until
CANCEL). SIPp's exit code says whether our side behaved as the scenario expects (e.g.
CANCEL after the ring timeout), and the store must hold the matching outcome and the
retries the policy asks for.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import us_number, write_campaign

from autocall.campaign.contacts import import_campaign
from autocall.campaign.dialer import CallRequest, run_campaign
from autocall.campaign.model import CampaignState, Outcome, load_campaign
from autocall.campaign.placer import SipPlacer
from autocall.campaign.store import Store
from autocall.telephony.call import UserAgent
from tests.peers import SCENARIOS, Kamailio, Sipp

pytestmark = pytest.mark.peers

# The robot holds the line 1.2 s, then hangs up.
TREE = (
    "name: sip-campaign\noutcomes: [done]\nstart: talk\nnodes:\n"
    "  talk: {pause: 1.2, next: bye}\n  bye: {hangup: done}\n"
)

# number index -> (scenario, SIPp port, calls expected, final outcome)
CALLEES = {
    0: ("uas_answer.xml", 28100, 1, Outcome.COMPLETED),
    1: ("uas_reject_486.xml", 28110, 2, Outcome.BUSY),
    2: ("uas_reject_603.xml", 28120, 1, Outcome.DECLINED),
    3: ("uas_reject_404.xml", 28140, 1, Outcome.INVALID),
    4: ("uas_ring.xml", 28130, 2, Outcome.NO_ANSWER),
    5: ("uas_reject_480.xml", 28160, 2, Outcome.NO_ANSWER),  # the UA reports 480 as no-answer
    6: ("uas_answer_bye.xml", 28170, 2, Outcome.HUNG_UP_EARLY),  # BYE at 1 s of the 1.2 s tree
}


@pytest.mark.parametrize("via_proxy", [False, True], ids=["direct", "kamailio"])
async def test_outcomes_and_retries_against_sipp(tmp_path: Path, via_proxy: bool) -> None:
    (tmp_path / "tree.yaml").write_text(TREE)
    campaign = load_campaign(write_campaign(
        tmp_path, len(CALLEES), ring_timeout=1, channels=8,
        retry={"max_attempts": 2, "delays": {"busy": 0, "no-answer": 0, "hung-up-early": 0}}))
    store = Store(f"sqlite:///{tmp_path / 'sip.db'}")
    import_campaign(store, campaign)
    shift = 100 if via_proxy else 0  # own ports per case
    port_of = {us_number(i): port + shift for i, (_, port, _, _) in CALLEES.items()}
    peers: list[Sipp | Kamailio] = [
        Sipp(SCENARIOS / scenario, port=port + shift, media_port=port + shift + 2, calls=calls,
             timeout=30, cwd=tmp_path)
        for scenario, port, calls, _ in CALLEES.values()]
    proxy: dict[str, str] = {}
    if via_proxy:  # every INVITE is challenged (407) and relayed with Record-Route
        peers.append(Kamailio(port=28190 + shift, users={"dialer": "d1aler-Pa55"}))
        proxy = {"proxy": f"sip:127.0.0.1:{28190 + shift}", "user": "dialer",
                 "password": "d1aler-Pa55", "domain": "127.0.0.1"}
    for peer in peers:
        peer.start()
    ua = await UserAgent.start(bind_host="127.0.0.1", bind_port=28150 + shift, **proxy)
    try:
        def target(request: CallRequest) -> str:
            return f"sip:sipp@127.0.0.1:{port_of[request.number]}"

        placer = SipPlacer(ua, target=target, tts_cache_dir=tmp_path / "tts",
                           recordings_dir=tmp_path / "rec")
        final = await run_campaign(campaign.name, store, placer, poll=0.05)
    finally:
        await ua.close()
        codes_of_peers = {}
        for peer in peers:  # every peer is stopped, whatever the others did
            try:
                if isinstance(peer, Sipp):
                    codes_of_peers[peer.port] = (peer.wait(15), peer.errors())
            finally:
                peer.stop()
    for port, (rc, errors) in codes_of_peers.items():
        assert rc == 0, (port, errors)
    assert final.state is CampaignState.COMPLETED
    attempts = store.attempts(campaign.name)
    calls = Counter(a.number for a in attempts)
    for i, (_, _, n_calls, outcome) in CALLEES.items():
        number = us_number(i)
        assert calls[number] == n_calls, number
        contact = store.contact_by_number(campaign.name, number)
        assert contact is not None and contact.last_outcome is outcome, (number, contact)
    codes = {a.number: a.sip_code for a in attempts}
    assert codes[us_number(1)] == 486 and codes[us_number(2)] == 603
    assert codes[us_number(5)] == 480
    answered = [a for a in attempts if a.answered_at is not None]
    assert sorted(a.number for a in answered) == sorted([us_number(0)] + [us_number(6)] * 2)
    completed = [a for a in answered if a.number == us_number(0)]
    assert completed[0].billable is not None and completed[0].billable >= 1.1
    store.close()
