"""`autocall call --amd` against SIPp callees that answer with espeak-ng audio.

One callee is a voicemail: a recorded greeting, then a beep, then the line records. The
other is a person who says "Hello?" and waits. A raw packet socket on the loopback
interface records both RTP streams with one clock (what the callee received and what it
sent), so the test sees on the wire whether our message starts after the beep and within
half a second of it, and how long the person waits before the robot talks.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from autocall.audio.g711 import ulaw_decode, ulaw_encode
from autocall.audio.levels import rms_dbm0, scale_to_dbm0
from autocall.audio.tones import beep, comfort_noise
from autocall.cli import app
from tests.peers import SCENARIOS, Sipp

sys.path.insert(0, str(Path(__file__).parent))

import amd_corpus  # noqa: E402

pytestmark = pytest.mark.peers

RATE = 8000
SIP_PORT, MEDIA_PORT, OUR_PORT = 47010, 47012, 47015  # h8's range: 47000-47999
# A tree that knows who it talks to: `answered_by` is among its variables under --amd.
TREE = """\
name: amd-reminder
start: who
nodes:
  who:
    branch:
      - if: {var: answered_by, eq: machine}
        next: voicemail
    else: person
  voicemail:
    say: "Hello, this is your dentist. Please call us back about tomorrow."
    next: done
  person:
    say: "Hello, this is a reminder from your dentist about tomorrow."
    next: done
  done:
    hangup: completed
"""
GREETING = (
    "Hi, you've reached John Smith. I can't take your call right now. "
    "Please leave a message after the tone."
)


@dataclass
class Wire:
    """RTP seen on the loopback interface, to and from the callee's media port."""

    port: int
    to_peer: list[tuple[float, int, bytes]] = field(default_factory=list)  # (time, seq, payload)
    from_peer: list[tuple[float, int, bytes]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Wire:
        # ETH_P_ALL on "lo": every frame once as sent (type 4) and once as received (0).
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(2)
        self._sock.close()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            now = time.monotonic()
            if addr[2] != 0:  # PACKET_HOST only: each frame once
                continue
            ip = data[14:]
            if len(ip) < 40 or ip[9] != 17:  # UDP over IPv4 with an RTP header
                continue
            ihl = (ip[0] & 15) * 4
            sport, dport = struct.unpack("!HH", ip[ihl : ihl + 4])
            rtp = ip[ihl + 8 :]
            if len(rtp) < 12 or rtp[0] >> 6 != 2 or rtp[1] & 0x7F != 0:  # RTP, PCMU
                continue
            seq = struct.unpack("!H", rtp[2:4])[0]
            if dport == self.port:
                self.to_peer.append((now, seq, rtp[12:]))
            elif sport == self.port:
                self.from_peer.append((now, seq, rtp[12:]))

    def first_sound_to_peer(self, after: float = 0.0) -> float:
        """When our first packet louder than comfort silence reached the callee."""
        for t, _, payload in self.to_peer:
            if t >= after and rms_dbm0(ulaw_decode(payload)) > -40.0:
                return t
        raise AssertionError(f"no sound sent to the callee in {len(self.to_peer)} packets")

    def time_of_sample(self, sample: int) -> float:
        """Wire time at which the callee's stream had sent ``sample`` of its file."""
        assert self.from_peer, "the callee sent no RTP"
        seq0 = self.from_peer[0][1]
        k, rest = divmod(sample, 160)
        for t, seq, _ in self.from_peer:
            if (seq - seq0) & 0xFFFF == k:
                return t + rest / RATE
        raise AssertionError(f"packet {k} of the callee's stream was not seen")


def _speech(text: str) -> np.ndarray:
    return scale_to_dbm0(amd_corpus._espeak(text, "en-us", 170, 45) * 32768.0, -18.0)


def _line(x: np.ndarray) -> np.ndarray:
    noise = comfort_noise(1000 * x.size / RATE, level_dbm0=-55.0, seed=7).astype(np.float64)
    return np.clip(x + noise, -32768, 32767).astype(np.int16)


def amd_call(tmp_path: Path, audio: np.ndarray, tree_text: str, ports: tuple[int, int, int],
             *args: str) -> tuple[dict[str, object], Wire]:
    """``autocall call --amd --tree`` to a SIPp callee whose line sends ``audio``: the
    record it prints and the wire. ``ports``: the callee's SIP and media ports, ours."""
    sip_port, media_port, our_port = ports
    (tmp_path / "callee.ul").write_bytes(ulaw_encode(audio))
    scenario = (SCENARIOS / "uas_answer_inband.xml").read_text().replace("inband.ul", "callee.ul")
    (tmp_path / "uas_amd.xml").write_text(scenario)
    tree = tmp_path / "tree.yaml"
    tree.write_text(tree_text)
    with (
        Wire(media_port) as wire,
        Sipp(
            tmp_path / "uas_amd.xml",
            port=sip_port,
            media_port=media_port,
            timeout=40,
            cwd=tmp_path,
        ) as peer,
    ):
        result = CliRunner().invoke(
            app,
            [
                "call",
                f"sip:sipp@127.0.0.1:{sip_port}",
                "--tree",
                str(tree),
                "--bind",
                f"127.0.0.1:{our_port}",
                "--json",
                "--amd",
                *args,
            ],
        )
        assert peer.wait(15) == 0, peer.errors()
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    return summary, wire


def _call(tmp_path: Path, audio: np.ndarray, *args: str) -> tuple[dict[str, object], Wire]:
    return amd_call(tmp_path, audio, TREE, (SIP_PORT, MEDIA_PORT, OUR_PORT), *args)


@pytest.fixture(autouse=True)
def _own_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOCALL_DATABASE_URL", f"sqlite:///{tmp_path / 'calls.db'}")
    monkeypatch.setenv("AUTOCALL_TTS_CACHE", str(tmp_path / "tts"))


def test_the_message_goes_on_the_voicemail_after_its_beep(tmp_path: Path) -> None:
    greeting = _speech(GREETING)
    parts = [np.zeros(2400, np.int16), greeting, np.zeros(3200, np.int16)]
    beep_end = sum(p.size for p in parts) + int(0.5 * RATE)
    parts += [beep(1000.0, 500.0, -12.0), np.zeros(10 * RATE, np.int16)]
    summary, wire = _call(tmp_path, _line(np.concatenate(parts)))
    assert summary["answered_by"] == "machine", summary
    assert summary["outcome"] == "left-message", summary
    assert summary["path"][:2] == ["who", "voicemail"], summary
    amd = summary["variables"]["amd"]
    assert isinstance(amd, dict) and amd["beep_at"] is not None
    beep_ended = wire.time_of_sample(beep_end)
    message = wire.first_sound_to_peer()
    # On the wire: nothing before the beep ended, the message within 0.5 s after it.
    print("message after beep end:", round(message - beep_ended, 3), amd)
    assert 0.0 <= message - beep_ended <= 0.5, (message - beep_ended, summary)


def test_a_person_saying_hello_is_talked_to_at_once(tmp_path: Path) -> None:
    hello = _speech("Hello?")
    lead = np.zeros(int(0.6 * RATE), np.int16)
    said_end = lead.size + hello.size
    audio = _line(np.concatenate([lead, hello, np.zeros(10 * RATE, np.int16)]))
    summary, wire = _call(tmp_path, audio)
    assert summary["answered_by"] == "human", summary
    assert summary["path"][:2] == ["who", "person"], summary
    waited = wire.first_sound_to_peer() - wire.time_of_sample(said_end)
    print("person waited:", round(waited, 3), summary["variables"]["amd"])
    assert 0.0 < waited <= 1.0, (waited, summary)


def test_on_machine_hangup_leaves_no_message(tmp_path: Path) -> None:
    greeting = _speech(GREETING)
    audio = np.concatenate(
        [
            greeting,
            np.zeros(3200, np.int16),
            beep(800.0, 400.0, -12.0),
            np.zeros(8 * RATE, np.int16),
        ]
    )
    summary, wire = _call(tmp_path, _line(audio), "--on-machine", "hangup")
    assert (summary["answered_by"], summary["outcome"]) == ("machine", "machine"), summary
    with pytest.raises(AssertionError, match="no sound sent"):
        wire.first_sound_to_peer()


async def test_a_campaign_retries_machines_later_and_never_a_fax(tmp_path: Path) -> None:
    from ruamel.yaml import YAML

    from autocall.campaign.contacts import import_campaign
    from autocall.campaign.dialer import CallRequest, run_campaign
    from autocall.campaign.model import CampaignState, Outcome, load_campaign
    from autocall.campaign.placer import SipPlacer
    from autocall.campaign.store import Store
    from autocall.telephony.call import UserAgent

    greeting = _speech(GREETING)
    voicemail = np.concatenate(
        [
            greeting,
            np.zeros(3200, np.int16),
            beep(900.0, 400.0, -12.0),
            np.zeros(6 * RATE, np.int16),
        ]
    )
    person = np.concatenate(
        [np.zeros(4000, np.int16), _speech("Hello?"), np.zeros(8 * RATE, np.int16)]
    )
    t = np.arange(3 * RATE) / RATE  # ITU-T T.30 CED: 2,100 Hz answer tone
    fax = np.concatenate(
        [np.zeros(2000), 3000.0 * np.sin(2 * np.pi * 2100 * t), np.zeros(4 * RATE)]
    )
    # number -> (audio, SIPp port, calls expected, final outcome)
    callees = {
        "+12125550100": (voicemail, 47100, 2, Outcome.MACHINE),
        "+12125550101": (person, 47110, 1, Outcome.COMPLETED),
        "+12125550102": (fax, 47120, 1, Outcome.FAX),
    }
    (tmp_path / "tree.yaml").write_text(
        "name: amd\noutcomes: [done]\nstart: hello\nnodes:\n"
        "  hello: {say: 'This is a reminder from your dentist.', next: bye}\n"
        "  bye: {hangup: done}\n"
    )
    (tmp_path / "contacts.csv").write_text("phone\n" + "\n".join(callees) + "\n")
    campaign_yaml = {
        "name": "amd-campaign",
        "tree": "tree.yaml",
        "contacts": ["contacts.csv"],
        "caller_ids": ["+12025550100"],
        "window": {
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "start": "00:00",
            "end": "23:59:59.999999",
            "override_legal_hours": True,
        },
        "channels": 3,
        "ring_timeout": 5,
        "retry": {"max_attempts": 2, "delays": {"machine": 0, "failed": 0}},
        "amd": {"enabled": True, "on_machine": "hangup"},
    }
    with open(tmp_path / "campaign.yaml", "w") as fh:
        YAML().dump(campaign_yaml, fh)
    campaign = load_campaign(tmp_path / "campaign.yaml")
    store = Store(f"sqlite:///{tmp_path / 'amd.db'}")
    import_campaign(store, campaign)
    peers = []
    for number, (audio, port, calls, _) in callees.items():
        work = tmp_path / number.strip("+")
        work.mkdir()
        (work / "callee.ul").write_bytes(ulaw_encode(_line(audio.astype(np.float64))))
        (work / "uas_amd.xml").write_text(
            (SCENARIOS / "uas_answer_inband.xml").read_text().replace("inband.ul", "callee.ul")
        )
        peers.append(
            Sipp(
                work / "uas_amd.xml",
                port=port,
                media_port=port + 2,
                calls=calls,
                timeout=40,
                cwd=work,
            )
        )
    for peer in peers:
        peer.start()
    ua = await UserAgent.start(bind_host="127.0.0.1", bind_port=47150)
    try:

        def target(request: CallRequest) -> str:
            return f"sip:sipp@127.0.0.1:{callees[request.number][1]}"

        placer = SipPlacer(
            ua, target=target, tts_cache_dir=tmp_path / "tts", recordings_dir=tmp_path / "rec"
        )
        final = await run_campaign(campaign.name, store, placer, poll=0.05)
    finally:
        await ua.close()
        codes = {}
        for peer in peers:
            try:
                codes[peer.port] = (peer.wait(15), peer.errors())
            finally:
                peer.stop()
    for port, (rc, errors) in codes.items():
        assert rc == 0, (port, errors)
    assert final.state is CampaignState.COMPLETED
    attempts = store.attempts(campaign.name)
    for number, (_, _, calls, outcome) in callees.items():
        mine = [a for a in attempts if a.number == number]
        assert len(mine) == calls, (number, mine)
        contact = store.contact_by_number(campaign.name, number)
        assert contact is not None and contact.last_outcome is outcome, (number, contact)
        expected = {Outcome.MACHINE: "machine", Outcome.COMPLETED: "human", Outcome.FAX: "fax"}
        assert all(a.answered_by == expected[outcome] for a in mine), mine  # §4 column
    store.close()


def test_a_short_greeting_then_a_beep_still_gets_the_message_after_the_beep(
    tmp_path: Path,
) -> None:
    said = _speech("Leave a message.")
    parts = [np.zeros(3200, np.int16), said, np.zeros(int(0.45 * RATE), np.int16)]
    beep_end = sum(p.size for p in parts) + int(0.6 * RATE)
    parts += [beep(1200.0, 600.0, -12.0), np.zeros(10 * RATE, np.int16)]
    summary, wire = _call(tmp_path, _line(np.concatenate(parts)))
    assert (summary["answered_by"], summary["outcome"]) == ("machine", "left-message"), summary
    # Whatever went out before the beep (we may have greeted a "person" for a moment), the
    # message itself starts again after the beep: sound within 0.5 s after it ended.
    beep_ended = wire.time_of_sample(beep_end)
    message = wire.first_sound_to_peer(after=beep_ended)
    print("short greeting: message after beep end:", round(message - beep_ended, 3),
          summary["variables"]["amd"])
    assert message - beep_ended <= 0.5, (message - beep_ended, summary)
