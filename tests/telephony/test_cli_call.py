"""`autocall call` against SIPp callees: each outcome gives its documented exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autocall.campaign.store import Store
from autocall.cli import app
from tests.peers import SCENARIOS, Kamailio, Sipp

pytestmark = pytest.mark.peers

# scenario, extra CLI args, exit code, status, SIP code
CASES = [
    ("uas_answer_rfc4733.xml", ["--confirm", "1"], 0, "completed", 200),
    ("uas_answer.xml", [], 0, "completed", 200),
    ("uas_answer.xml", ["--confirm", "1", "--confirm-timeout", "0.5"], 3, "completed", 200),
    ("uas_reject_486.xml", [], 4, "busy", 486),
    ("uas_reject_603.xml", [], 4, "busy", 603),
    ("uas_ring.xml", ["--ring-timeout", "1"], 5, "no-answer", 487),
    ("uas_reject_503.xml", [], 1, "failed", 503),
    ("uas_reject_404.xml", [], 1, "failed", 404),
]



@pytest.fixture(autouse=True)
def _own_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's call records go to its own SQLite file, not the working directory."""
    monkeypatch.setenv("AUTOCALL_DATABASE_URL", f"sqlite:///{tmp_path / 'calls.db'}")


@pytest.mark.parametrize(("scenario", "args", "code", "status", "sip_code"), CASES,
                         ids=[f"{c[0][:-4]}{'-'.join(c[1][:1])}" for c in CASES])
def test_outcome_gives_its_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     scenario: str, args: list[str], code: int, status: str,
                                     sip_code: int) -> None:
    monkeypatch.setenv("AUTOCALL_TTS_CACHE", str(tmp_path / "tts"))
    with Sipp(SCENARIOS / scenario, port=30300, media_port=30302, timeout=20) as peer:
        result = CliRunner().invoke(app, [
            "call", "sip:sipp@127.0.0.1:30300", "--say", "Your parcel arrives today.",
            "--bind", "127.0.0.1:30305", "--caller-id", "+12025550100", "--json", *args])
        peer.wait(10)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (result.exit_code, summary["status"], summary["sip_code"]) == (code, status, sip_code)
    assert summary["exit_code"] == code
    if status == "completed":
        assert summary["answered_at"] and summary["billable"] > 0
        assert summary["path"][0] == "message1"
    if code == 0 and "--confirm" in args:
        assert summary["dialogue_outcome"] == "confirmed" and summary["digits"].startswith("1")
    store = Store(f"sqlite:///{tmp_path / 'calls.db'}")
    (record,) = store.calls("outbound")  # every informer call leaves its record
    store.close()
    assert (record.call_id, record.status, record.sip_code) == (
        summary["call_id"], status, sip_code)
    assert record.digits == summary["digits"] and record.caller_id == "+12025550100"


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["call", "+15550100"]).exit_code == 2
    both = runner.invoke(app, ["call", "+15550100", "--say", "x", "--play", "y.wav"])
    assert both.exit_code == 2 and "exactly one" in both.output
    missing = runner.invoke(app, ["call", "+15550100", "--play", str(tmp_path / "no.wav")])
    assert missing.exit_code == 2 and "no such file" in missing.output
    bad_key = runner.invoke(app, ["call", "+15550100", "--say", "x", "--confirm", "12"])
    assert bad_key.exit_code == 2


def test_password_is_not_a_flag() -> None:
    result = CliRunner().invoke(app, ["call", "+15550100", "--say", "x", "--password", "s"])
    assert result.exit_code == 2


def test_play_a_file_repeated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np
    import soundfile as sf

    from autocall.audio.tones import beep

    wav = tmp_path / "notice.wav"
    sf.write(wav, np.concatenate([beep(700.0, 400, -10.0, 16000)] * 2), 16000)
    monkeypatch.setenv("AUTOCALL_TTS_CACHE", str(tmp_path / "tts"))
    with Sipp(SCENARIOS / "uas_answer.xml", port=30310, media_port=30312, timeout=20) as peer:
        result = CliRunner().invoke(app, [
            "call", "sip:sipp@127.0.0.1:30310", "--play", str(wav), "--repeat", "3",
            "--bind", "127.0.0.1:30315", "--json"])
        assert peer.wait(10) == 0, peer.errors()
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.exit_code == 0, result.output
    assert summary["path"] == ["message1", "message2", "message3"]
    assert summary["dialogue_outcome"] == "completed" and summary["billable"] >= 2.2  # 3 x 0.8 s


@pytest.mark.parametrize(("password", "code"), [("s3cret-Pa55", 0), ("wrong", 1)])
def test_trunk_digest_auth_with_password_from_env_or_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, password: str, code: int) -> None:
    monkeypatch.setenv("AUTOCALL_TTS_CACHE", str(tmp_path / "tts"))
    monkeypatch.delenv("AUTOCALL_SIP_PASSWORD", raising=False)
    secret = tmp_path / "sip-password"
    secret.write_text(password + "\n")
    with Kamailio(port=30320, users={"alice": "s3cret-Pa55"}), \
            Sipp(SCENARIOS / "uas_answer.xml", port=30322, media_port=30324, timeout=20):
        result = CliRunner().invoke(app, [
            "call", "sip:sipp@127.0.0.1:30322", "--say", "Hello.", "--host", "127.0.0.1",
            "--port", "30320", "--user", "alice", "--caller-id", "alice", "--password-file",
            str(secret), "--bind", "127.0.0.1:30325", "--json"])
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.exit_code == code, result.output
    if code == 0:
        assert summary["status"] == "completed"
    else:
        assert summary["sip_code"] == 407  # Kamailio refused our credentials
    assert password not in result.output


def test_tree_with_variables_and_a_key_pressed_during_the_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Path(__file__).parents[2] / "prompts" / "informer.yaml"
    monkeypatch.setenv("AUTOCALL_TTS_CACHE", str(tmp_path / "tts"))
    with Sipp(SCENARIOS / "uas_answer_rfc4733.xml", port=30330, media_port=30332,
              timeout=20):
        result = CliRunner().invoke(app, [
            "call", "sip:sipp@127.0.0.1:30330", "--tree", str(tree), "--var",
            "first_name=Ann", "--var", "appointment=on Monday", "--bind", "127.0.0.1:30335",
            "--json"])
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.exit_code == 0, result.output
    assert summary["variables"]["first_name"] == "Ann"
    assert summary["variables"]["appointment"] == "on Monday"
    # 1 arrives during the message: it skips it and answers the confirm menu
    assert summary["path"] == ["message", "confirm", "confirmed", "confirmed_end"]
    assert summary["dialogue_outcome"] == "confirmed"
