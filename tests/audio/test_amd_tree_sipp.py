"""A tree's ``machine:`` node on a real call: SIPp voicemail (espeak-ng greeting + beep).

Reuses h8's peer and wire capture from ``test_amd_sipp``. The tree has no branch on
``answered_by``: its top-level ``machine: voicemail`` is what a machine gets, after the
beep, even when the command line says ``--on-machine hangup`` (the tree's word wins);
a person hears the tree from ``start``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autocall.audio.g711 import ulaw_encode
from autocall.audio.tones import beep
from tests.audio.test_amd_sipp import GREETING, RATE, Wire, _line, _speech, amd_call
from tests.peers import SCENARIOS, Sipp

pytestmark = pytest.mark.peers

SIP_PORT, MEDIA_PORT, OUR_PORT = 45010, 45012, 45015  # h10's range: 45000-45999
TREE = """\
name: dentist
start: person
machine: voicemail
nodes:
  person:
    say: "Hello, this is a reminder from your dentist about tomorrow."
    next: done
  done:
    hangup: completed
  voicemail:
    say: "Hello, this is your dentist. Please call us back about tomorrow."
    next: left
  left:
    hangup: left-message
"""


def _call(tmp_path: Path, audio: np.ndarray, *args: str) -> tuple[dict[str, object], Wire]:
    return amd_call(tmp_path, audio, TREE, (SIP_PORT, MEDIA_PORT, OUR_PORT), *args)


@pytest.fixture(autouse=True)
def _own_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOCALL_DATABASE_URL", f"sqlite:///{tmp_path / 'calls.db'}")
    monkeypatch.setenv("AUTOCALL_TTS_CACHE", str(tmp_path / "tts"))


def test_the_machine_node_is_left_after_the_beep_whatever_on_machine_says(
    tmp_path: Path,
) -> None:
    parts = [np.zeros(2400, np.int16), _speech(GREETING), np.zeros(3200, np.int16)]
    beep_end = sum(p.size for p in parts) + int(0.5 * RATE)
    parts += [beep(1000.0, 500.0, -12.0), np.zeros(10 * RATE, np.int16)]
    summary, wire = _call(tmp_path, _line(np.concatenate(parts)), "--on-machine", "hangup")
    assert (summary["answered_by"], summary["outcome"]) == ("machine", "left-message"), summary
    assert summary["path"] == ["voicemail", "left"], summary
    beep_ended = wire.time_of_sample(beep_end)
    message = wire.first_sound_to_peer()
    # On the wire: nothing before the beep ended, the machine node within 0.5 s after it.
    print("machine node after beep end:", round(message - beep_ended, 3),
          summary["variables"]["amd"])
    assert 0.0 <= message - beep_ended <= 0.5, (message - beep_ended, summary)


def test_a_person_hears_the_tree_from_start(tmp_path: Path) -> None:
    lead = np.zeros(int(0.6 * RATE), np.int16)
    audio = _line(np.concatenate([lead, _speech("Hello?"), np.zeros(8 * RATE, np.int16)]))
    summary, _ = _call(tmp_path, audio)
    assert summary["answered_by"] == "human", summary
    assert summary["path"] == ["person", "done"], summary


@pytest.mark.parametrize(
    ("machine", "on_machine", "outcome", "path"),
    [
        # the tree leaves a message although the campaign says hang up on machines
        ("voicemail", "hangup", "left-message", ["voicemail", "left"]),
        # the tree's machine: node hangs up although the campaign says leave a message
        ("gone", "message", "machine", []),
    ],
)
async def test_a_campaign_follows_the_trees_machine_node(
    tmp_path: Path, machine: str, on_machine: str, outcome: str, path: list[str]
) -> None:
    from ruamel.yaml import YAML

    from autocall.campaign.contacts import import_campaign
    from autocall.campaign.dialer import run_campaign
    from autocall.campaign.model import Outcome, load_campaign
    from autocall.campaign.placer import SipPlacer
    from autocall.campaign.store import Store
    from autocall.telephony.call import UserAgent

    sip_port = 45110 if machine == "voicemail" else 45120
    voicemail = np.concatenate(
        [
            _speech(GREETING),
            np.zeros(3200, np.int16),
            beep(900.0, 400.0, -12.0),
            np.zeros(6 * RATE, np.int16),
        ]
    )
    tree = TREE.replace("machine: voicemail", f"machine: {machine}")
    (tmp_path / "tree.yaml").write_text(tree + "  gone:\n    hangup: machine\n")
    (tmp_path / "contacts.csv").write_text("phone\n+12125550100\n")
    campaign_yaml = {
        "name": "amd-tree",
        "tree": "tree.yaml",
        "contacts": ["contacts.csv"],
        "caller_ids": ["+12025550100"],
        "window": {
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "start": "00:00",
            "end": "23:59:59.999999",
            "override_legal_hours": True,
        },
        "channels": 1,
        "ring_timeout": 5,
        "retry": {"max_attempts": 1},
        "amd": {"enabled": True, "on_machine": on_machine},
    }
    with open(tmp_path / "campaign.yaml", "w") as fh:
        YAML().dump(campaign_yaml, fh)
    campaign = load_campaign(tmp_path / "campaign.yaml")
    store = Store(f"sqlite:///{tmp_path / 'amd.db'}")
    import_campaign(store, campaign)
    (tmp_path / "callee.ul").write_bytes(ulaw_encode(_line(voicemail)))
    (tmp_path / "uas_amd.xml").write_text(
        (SCENARIOS / "uas_answer_inband.xml").read_text().replace("inband.ul", "callee.ul")
    )
    peer = Sipp(
        tmp_path / "uas_amd.xml", port=sip_port, media_port=sip_port + 2, timeout=40, cwd=tmp_path
    )
    peer.start()
    ua = await UserAgent.start(bind_host="127.0.0.1", bind_port=sip_port + 5)
    try:
        placer = SipPlacer(
            ua,
            target=f"sip:sipp@127.0.0.1:{sip_port}",
            tts_cache_dir=tmp_path / "tts",
            recordings_dir=tmp_path / "rec",
        )
        await run_campaign(campaign.name, store, placer, poll=0.05)
    finally:
        await ua.close()
        try:
            rc, errors = peer.wait(15), peer.errors()
        finally:
            peer.stop()
    assert rc == 0, errors
    (attempt,) = store.attempts(campaign.name)
    assert attempt.outcome is Outcome(outcome), attempt
    assert attempt.answered_by == "machine", attempt  # the §4 column
    assert attempt.path == path, attempt
    store.close()
