"""Issue 12 item 7: SIGTERM (systemd, containers) is handled like Ctrl-C.

Real processes, real SIPp callees: ``campaign run`` drains on the first signal (calls
in flight end, records written), a second signal hangs the calls up at once (BYE) and
still records them; ``call`` cut by SIGTERM or SIGINT hangs up and writes its record.
Before the fix SIGTERM killed both in milliseconds: no BYE, attempts left open.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile
from clirun import TREE_TALK, CliProcess, sip_env, sipp_requests, wait_until
from conftest import write_campaign

from autocall.campaign.contacts import import_campaign
from autocall.campaign.model import Outcome, load_campaign
from autocall.campaign.store import Store
from tests.peers import SCENARIOS, Sipp

pytestmark = pytest.mark.peers


def _sipp(tmp_path: Path, port: int) -> tuple[Sipp, Path]:
    trace = tmp_path / "sipp-messages.log"
    sipp = Sipp(
        SCENARIOS / "uas_answer.xml",
        port=port,
        media_port=port + 2,
        calls=1000,
        timeout=120,
        cwd=tmp_path,
        extra=["-trace_msg", "-message_file", str(trace)],
    )
    return sipp.start(), trace


def _campaign(tmp_path: Path, talk: float, url: str) -> str:
    (tmp_path / "tree.yaml").write_text(TREE_TALK.format(talk=talk))
    campaign = load_campaign(write_campaign(tmp_path, 12, channels=3, calls_per_second=20))
    store = Store(url)
    import_campaign(store, campaign)
    store.close()
    return campaign.name


def test_sigterm_drains_campaign_run(tmp_path: Path) -> None:
    """One SIGTERM: no new call; the calls up end with their dialogue; exit 0."""
    url = f"sqlite:///{tmp_path / 'term.db'}"
    name = _campaign(tmp_path, 2.0, url)
    sipp, trace = _sipp(tmp_path, 43200)
    try:
        run = CliProcess(
            ["campaign", "run", name, "--db", url, "--json"],
            cwd=tmp_path,
            env=sip_env(43200, 43210, tmp_path),
            tag="run",
        )
        wait_until(lambda: len(sipp_requests(trace, "ACK")) >= 2, 60, "calls answered")
        run.proc.send_signal(signal.SIGTERM)
        assert run.wait(60) == 0, run.stderr()[-3000:]
    finally:
        sipp.stop()
    store = Store(url)
    rows = store.attempts(name)
    store.close()
    invites = set(sipp_requests(trace, "INVITE"))
    byes = Counter(sipp_requests(trace, "BYE"))
    assert 0 < len(rows) < 12  # dialing stopped at the signal
    assert all(a.ended_at is not None for a in rows)
    assert all(a.outcome is Outcome.COMPLETED for a in rows)  # the dialogues finished
    assert set(byes) == invites and len(invites) == len(rows)
    assert "Traceback" not in run.stderr()


def test_second_sigterm_hangs_up_and_records(tmp_path: Path) -> None:
    """Two SIGTERMs: calls of a 60 s dialogue are hung up at once and recorded."""
    url = f"sqlite:///{tmp_path / 'term2.db'}"
    name = _campaign(tmp_path, 60.0, url)
    sipp, trace = _sipp(tmp_path, 43220)
    try:
        run = CliProcess(
            ["campaign", "run", name, "--db", url, "--json"],
            cwd=tmp_path,
            env=sip_env(43220, 43230, tmp_path),
            tag="run",
        )
        wait_until(lambda: len(sipp_requests(trace, "ACK")) >= 3, 60, "calls answered")
        run.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "no new calls" in run.stderr(), 30, "first signal handled")
        run.proc.send_signal(signal.SIGTERM)
        assert run.wait(30) == 143, run.stderr()[-3000:]
    finally:
        sipp.stop()
    store = Store(url)
    rows = store.attempts(name)
    contacts = store.contacts(name)
    store.close()
    invites = set(sipp_requests(trace, "INVITE"))
    assert len(rows) == len(invites) == 3
    assert set(sipp_requests(trace, "BYE")) == invites  # every callee's line was released
    for a in rows:
        assert a.ended_at is not None and a.outcome is Outcome.INTERRUPTED, a
    assert sum(c.attempts for c in contacts) == 3
    assert "Traceback" not in run.stderr()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_call_cut_by_signal_hangs_up_and_writes_its_record(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    wav = tmp_path / "long.wav"
    t = np.arange(8000 * 30) / 8000
    soundfile.write(wav, (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000)
    port = 43240 if sig is signal.SIGTERM else 43260
    url = f"sqlite:///{tmp_path / 'call.db'}"
    sipp, trace = _sipp(tmp_path, port)
    try:
        call = CliProcess(
            ["call", f"sip:sipp@127.0.0.1:{port}", "--play", str(wav), "--db", url, "--json"],
            cwd=tmp_path,
            env=sip_env(port, port + 10, tmp_path),
            tag="call",
        )
        wait_until(lambda: len(sipp_requests(trace, "ACK")) >= 1, 60, "call answered")
        call.proc.send_signal(sig)
        assert call.wait(30) == code, call.stderr()[-3000:]
    finally:
        sipp.stop()
    assert sipp_requests(trace, "BYE") == sipp_requests(trace, "INVITE")
    store = Store(url)
    (record,) = store.calls("outbound")
    store.close()
    assert record.ended_at is not None and record.answered_at is not None
    assert record.error == f"interrupted by {sig.name}"
    assert "Traceback" not in call.stderr()


def test_call_ringing_when_sigterm_arrives_is_cancelled_and_recorded(tmp_path: Path) -> None:
    port = 43280
    url = f"sqlite:///{tmp_path / 'ring.db'}"
    trace = tmp_path / "sipp-messages.log"
    sipp = Sipp(
        SCENARIOS / "uas_ring.xml",
        port=port,
        media_port=port + 2,
        calls=1,
        timeout=60,
        cwd=tmp_path,
        extra=["-trace_msg", "-message_file", str(trace)],
    )
    sipp.start()
    try:
        call = CliProcess(
            [
                "call",
                f"sip:sipp@127.0.0.1:{port}",
                "--say",
                "hello",
                "--db",
                url,
                "--ring-timeout",
                "60",
                "--json",
            ],
            cwd=tmp_path,
            env=sip_env(port, port + 10, tmp_path),
            tag="call",
        )
        wait_until(
            lambda: trace.exists() and "SIP/2.0 180" in trace.read_text(errors="replace"),
            60,
            "call ringing",
        )
        call.proc.send_signal(signal.SIGTERM)
        assert call.wait(30) == 143, call.stderr()[-3000:]
        assert sipp.wait(15) == 0, sipp.errors()  # the scenario saw its CANCEL
    finally:
        sipp.stop()
    store = Store(url)
    (record,) = store.calls("outbound")
    store.close()
    assert record.status == "canceled" and record.answered_at is None
    assert record.error == "interrupted by SIGTERM"
