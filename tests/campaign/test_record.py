"""THE call record (DESIGN.md §4): one builder, one shape from the placer to the store."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from autocall.campaign.contacts import NewContact
from autocall.campaign.dialer import outcome_of
from autocall.campaign.model import Campaign, Dial, Outcome
from autocall.campaign.store import Store
from autocall.telephony.outbound import call_record
from autocall.telephony.record import CallStatus, build

T0 = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)


@dataclass
class FakeCall:
    status: CallStatus = CallStatus.COMPLETED
    sip_code: int | None = 200
    q850_cause: int | None = 16
    reason: str | None = "OK"
    answered_at: datetime | None = T0 + timedelta(seconds=2)
    ended_at: datetime | None = T0 + timedelta(seconds=12)
    ended_by: str | None = "remote"
    call_id: str = "abc@host"


@dataclass
class FakeRun:
    outcome: str = "opt-out"
    path: list[str] = field(default_factory=lambda: ["hello", "menu", "out"])
    digits: str = "9"
    variables: dict[str, str] = field(default_factory=lambda: {"choice": "9"})
    recording: str | None = None
    error: str | None = None
    failed: bool = False
    caller_hung_up: bool = False
    inputs: int = 1


def test_a_call_and_its_dialogue_make_one_record() -> None:
    record = build(FakeCall(), FakeRun(), started=T0, number="+12025550111",
                   caller_id="+12025550100")
    assert record.status is CallStatus.COMPLETED and record.sip_code == 200
    assert record.q850 == 16 and record.call_id == "abc@host"
    assert (record.duration, record.billable) == (12.0, 10.0)
    assert record.path == ("hello", "menu", "out") and record.digits == "9"
    assert record.dialogue_outcome == "opt-out" and record.opted_out
    assert "dialogue_outcome" not in record.variables  # a field, not hidden in variables
    assert outcome_of(record) is Outcome.OPTED_OUT
    assert Outcome.OPTED_OUT.value == "opt-out" == record.dialogue_outcome  # one spelling
    assert Outcome("opted-out") is Outcome.OPTED_OUT  # stored before issue 14: still reads
    line = record.as_json()
    assert line["started_at"] == T0.isoformat() and line["status"] == "completed"
    assert line["path"] == ["hello", "menu", "out"] and line["billable"] == 10.0


def test_a_dialogue_that_could_not_play_fails_the_call_and_status_overrides() -> None:
    assert build(FakeCall(), FakeRun(failed=True), started=T0).status is CallStatus.FAILED
    cut = build(FakeCall(status=CallStatus.IN_PROGRESS), FakeRun(), started=T0,
                status=CallStatus.CANCELED)
    assert cut.status is CallStatus.CANCELED
    never = build(None, None, started=T0, error="registration failed")
    assert never.status is CallStatus.FAILED and never.call_id is None
    assert never.answered_at is None and never.billable is None
    busy = build(FakeCall(status=CallStatus.BUSY, sip_code=486, answered_at=None), None,
                 started=T0)
    assert (busy.status, busy.sip_code, busy.billable) == (CallStatus.BUSY, 486, None)
    assert outcome_of(busy) is Outcome.BUSY


def test_the_placer_says_hung_up_early_through_the_record() -> None:
    early = call_record(FakeCall(), FakeRun(outcome="bye", caller_hung_up=True, inputs=0), None,
                        started=T0)
    assert early.outcome == Outcome.HUNG_UP_EARLY and early.dialogue_outcome == "bye"
    assert outcome_of(early) is Outcome.HUNG_UP_EARLY


def test_dialogue_outcome_and_answered_by_are_columns(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    store.save_campaign(Campaign(name="c", tree="t.yaml", caller_ids=["+12025550100"]))
    store.add_contacts("c", [NewContact("+12122000000", ("America/New_York",), {}, "l.csv", 2)])
    (claim,) = store.claim("c", "n1", T0, 1, lambda c: Dial(c.id, "+12025550100"))
    record = replace(build(FakeCall(), FakeRun(), started=T0), answered_by="human")
    record = replace(record, outcome=outcome_of(record))
    assert store.finish(claim.attempt_id, record, None)
    (attempt,) = store.attempts("c")
    assert attempt.dialogue_outcome == "opt-out" and attempt.answered_by == "human"
    assert attempt.outcome is Outcome.OPTED_OUT and attempt.variables == {"choice": "9"}
    (contact,) = store.contacts("c")
    assert contact.last_outcome is Outcome.OPTED_OUT
    assert store.add_call(build(FakeCall(), FakeRun(outcome="transferred"), started=T0,
                                direction="inbound", caller_id="sip:alice@127.0.0.1"))
    (call,) = store.calls("inbound")
    assert call.dialogue_outcome == "transferred" and call.caller_id == "sip:alice@127.0.0.1"
    assert call.outcome is None  # outcome means the retry outcome, and calls have none
    store.close()


def test_the_record_and_the_campaign_model_load_no_sip_or_media() -> None:
    code = ("import sys\n"
            "import autocall.telephony.record\n"
            "assert 'numpy' not in sys.modules, 'record'\n"
            "import autocall.campaign.model\n"
            "heavy = [m for m in sys.modules if m.startswith(('autocall.sip', 'autocall.media',"
            " 'autocall.telephony.call'))]\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ), timeout=60)
    assert done.returncode == 0, done.stderr
