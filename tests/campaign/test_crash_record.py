"""kill -9 a dialer during a real SIP call: the attempt's record was written at answer and
kept the digits so far, unfinished; the next start closes it as interrupted (issue 14)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from conftest import write_campaign
from procs import sip_dialer

from autocall.campaign.contacts import import_campaign
from autocall.campaign.model import Attempt, CallStatus, ContactState, Outcome, load_campaign
from autocall.campaign.store import Store
from tests.peers import SCENARIOS, Sipp

pytestmark = pytest.mark.peers

TREE = """\
name: crash-record
outcomes: [done]
start: ask
nodes:
  ask:
    gather: {prompt: "Your code?", variable: code, max_digits: 6, first_timeout: 60,
             inter_timeout: 60}
    next: bye
    on_failure: bye
  bye: {hangup: done}
"""
SIPP_PORT = 28460


def _wait_for_digits(store: Store, name: str, digits: str, timeout: float = 30) -> Attempt:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = store.attempts(name)
        if rows and rows[0].digits == digits:
            return rows[0]
        time.sleep(0.2)
    raise AssertionError(f"no attempt with digits {digits!r}: {store.attempts(name)}")


def test_kill_9_during_a_call_leaves_an_unfinished_record_the_next_start_closes(
        tmp_path: Path) -> None:
    (tmp_path / "tree.yaml").write_text(TREE)
    campaign = load_campaign(write_campaign(tmp_path, 1, channels=1, calls_per_second=5,
                                            on_restart="give-up"))
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    store = Store(url)
    import_campaign(store, campaign)
    # answers, sends 1 and 5 as RFC 4733, then waits for a BYE that the kill never sends
    sipp = Sipp(SCENARIOS / "uas_answer_rfc4733.xml", port=SIPP_PORT,
                media_port=SIPP_PORT + 2, calls=10, timeout=90, cwd=tmp_path)
    sipp.start()
    target = f"sip:sipp@127.0.0.1:{SIPP_PORT}"
    try:
        first = sip_dialer(url, campaign.name, "node-a", SIPP_PORT + 10, target)
        live = _wait_for_digits(store, campaign.name, "15")  # written during the call
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        (cut,) = store.attempts(campaign.name)
        assert cut.ended_at is None and cut.outcome is None  # unfinished
        assert cut.status is CallStatus.IN_PROGRESS and cut.answered_at is not None
        assert cut.digits == "15" and cut.path == ["ask"] and cut.answered_at == live.answered_at

        second = sip_dialer(url, campaign.name, "node-a", SIPP_PORT + 20, target)
        second.finish(timeout=60)
    finally:
        sipp.stop()
    (closed,) = store.attempts(campaign.name)  # closed, not dialed again (give-up)
    assert closed.id == cut.id and closed.outcome is Outcome.INTERRUPTED
    assert closed.ended_at is not None and closed.answered_at == cut.answered_at
    assert closed.digits == "15" and closed.path == ["ask"]
    (contact,) = store.contacts(campaign.name)
    assert contact.state is ContactState.DONE
    store.close()


def test_kill_9_during_autocall_call_leaves_its_record_unfinished_and_the_next_closes_it(
        tmp_path: Path) -> None:
    """`autocall call` writes its record at answer too (issue 14): a kill -9 mid-call
    leaves it, answered and unfinished; the next `autocall call` closes it as failed."""
    import numpy as np
    import soundfile
    from clirun import CliProcess, sip_env, wait_until

    wav = tmp_path / "long.wav"
    t = np.arange(8000 * 30) / 8000
    soundfile.write(wav, (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000)
    port = 43520
    url = f"sqlite:///{tmp_path / 'call.db'}"
    sipp = Sipp(SCENARIOS / "uas_answer.xml", port=port, media_port=port + 2, calls=10,
                timeout=90, cwd=tmp_path)
    sipp.start()
    store = Store(url)
    try:
        first = CliProcess(["call", f"sip:sipp@127.0.0.1:{port}", "--play", str(wav),
                            "--db", url, "--json"], cwd=tmp_path,
                           env=sip_env(port, port + 10, tmp_path), tag="call")

        def written() -> bool:
            return bool(store.calls("outbound"))

        wait_until(written, 60, "the record written at answer")
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        (cut,) = store.calls("outbound")
        assert cut.unfinished and cut.answered_at is not None
        assert cut.status == CallStatus.IN_PROGRESS.value

        second = CliProcess(["call", f"sip:sipp@127.0.0.1:{port}", "--play", str(wav),
                             "--db", url, "--json", "--ring-timeout", "5"], cwd=tmp_path,
                            env=sip_env(port, port + 20, tmp_path), tag="call")
        wait_until(lambda: len(store.calls("outbound")) == 2, 60, "the second call's record")
        second.proc.send_signal(signal.SIGTERM)
        second.wait(30)
    finally:
        sipp.stop()
    closed = store.calls("outbound")[0]
    store.close()
    assert closed.id == cut.id and not closed.unfinished
    assert closed.status == CallStatus.FAILED.value and "stopped" in closed.error
    assert closed.answered_at == cut.answered_at


def test_kill_9_of_autocall_campaign_run_mid_call_leaves_the_attempt_the_next_run_closes(
        tmp_path: Path) -> None:
    """The same through the command line: `autocall campaign run` (default placer, default
    node name) is killed mid-call; the next `autocall campaign run` finds the dead node's
    attempt, answered with digits 15, and closes it as interrupted keeping them."""
    from clirun import CliProcess, sip_env

    (tmp_path / "tree.yaml").write_text(TREE)
    campaign = load_campaign(write_campaign(tmp_path, 1, channels=1, calls_per_second=5,
                                            on_restart="give-up"))
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    store = Store(url)
    import_campaign(store, campaign)
    port = 34460
    sipp = Sipp(SCENARIOS / "uas_answer_rfc4733.xml", port=port, media_port=port + 2,
                calls=10, timeout=90, cwd=tmp_path)
    sipp.start()
    try:
        first = CliProcess(["campaign", "run", campaign.name, "--db", url, "--json"],
                           cwd=tmp_path, env=sip_env(port, port + 10, tmp_path), tag="first")
        # written during the call (a cold CLI renders its prompt first: 60 s on a busy box)
        live = _wait_for_digits(store, campaign.name, "15", 60)
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
        (cut,) = store.attempts(campaign.name)
        assert cut.ended_at is None and cut.outcome is None and cut.unfinished
        assert cut.status is CallStatus.IN_PROGRESS and cut.answered_at == live.answered_at
        assert cut.digits == "15" and cut.path == ["ask"]

        second = CliProcess(["campaign", "run", campaign.name, "--db", url, "--json"],
                            cwd=tmp_path, env=sip_env(port, port + 20, tmp_path), tag="second")
        assert second.wait(60) == 0, second.stderr()[-3000:]
    finally:
        sipp.stop()
    (closed,) = store.attempts(campaign.name)  # closed, not dialed again (give-up)
    assert closed.id == cut.id and closed.outcome is Outcome.INTERRUPTED
    assert closed.ended_at is not None and closed.answered_at == cut.answered_at
    assert closed.digits == "15" and closed.path == ["ask"]
    (contact,) = store.contacts(campaign.name)
    assert contact.state is ContactState.DONE
    store.close()
    assert "Traceback" not in second.stderr()
