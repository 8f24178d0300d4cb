"""Campaign YAML validation (file:line errors) and the retry policy by outcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from autocall.campaign.dialer import outcome_of
from autocall.campaign.model import (
    NEVER_RETRY,
    CallStatus,
    CampaignError,
    Outcome,
    RetryPolicy,
    load_campaign,
)
from autocall.telephony.record import CallRecord

GOOD = """\
name: survey-1
tree: tree.yaml
contacts: [people.csv]
caller_ids: ["+12025550100"]
window:
  start: "09:00"
  end: "20:00"
retry:
  max_attempts: 4
  delays:
    busy: 5m
    no-answer: 2h
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_campaign_resolves_paths_and_durations(tmp_path: Path) -> None:
    c = load_campaign(_write(tmp_path, GOOD))
    assert c.tree == str(tmp_path / "tree.yaml")
    assert c.contacts == [str(tmp_path / "people.csv")]
    assert c.retry.delays[Outcome.BUSY] == timedelta(minutes=5)
    assert c.retry.delays[Outcome.NO_ANSWER] == timedelta(hours=2)


@pytest.mark.parametrize(("old", "new", "line", "words"), [
    ("  max_attempts: 4", "  max_attempts: 0", 9, "retry.max_attempts"),
    ('  end: "20:00"', '  end: "22:30"', 5, "override_legal_hours"),
    ("    busy: 5m", "    completed: 5m", 10, "never retried"),
    ('caller_ids: ["+12025550100"]', "caller_ids: []", 4, "caller_ids"),
    ("name: survey-1", "name: survey 1!", 1, "name"),
    ("tree: tree.yaml\n", "tree: tree.yaml\nchanels: 3\n", 3, "chanels"),
    ('  start: "09:00"', "  start: 42", 6, "HH:MM"),  # not 42 seconds after midnight UTC
    ('  end: "20:00"', '  end: "20:00+02:00"', 7, "local time"),
])
def test_errors_name_file_line_and_field(tmp_path: Path, old: str, new: str, line: int,
                                         words: str) -> None:
    path = _write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(CampaignError) as info:
        load_campaign(path)
    text = str(info.value)
    assert f"{path}:{line}:" in text, text
    assert words in text


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("window:", "window: [oops"))
    with pytest.raises(CampaignError) as info:
        load_campaign(path)
    assert f"{path}:" in str(info.value) and "YAML syntax" in str(info.value)


def test_widening_allowed_only_with_override(tmp_path: Path) -> None:
    text = GOOD.replace('  end: "20:00"', '  end: "22:00"\n  override_legal_hours: true')
    assert load_campaign(_write(tmp_path, text)).window.end.hour == 22


def test_retry_policy_never_retries_final_outcomes() -> None:
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    policy = RetryPolicy(max_attempts=3)
    for outcome in NEVER_RETRY:
        assert policy.next_try(outcome, 1, now) is None
    assert policy.next_try(Outcome.BUSY, 1, now) == now + timedelta(minutes=10)
    assert policy.next_try(Outcome.NO_ANSWER, 2, now) == now + timedelta(hours=1)
    assert policy.next_try(Outcome.BUSY, 3, now) is None  # attempts used up


@pytest.mark.parametrize(("result", "outcome"), [
    (CallRecord(CallStatus.COMPLETED, 200), Outcome.COMPLETED),
    (CallRecord(CallStatus.BUSY, 486), Outcome.BUSY),
    (CallRecord(CallStatus.FAILED, 600), Outcome.BUSY),
    (CallRecord(CallStatus.NO_ANSWER, 487), Outcome.NO_ANSWER),
    (CallRecord(CallStatus.FAILED, 603), Outcome.DECLINED),
    (CallRecord(CallStatus.BUSY, 603), Outcome.DECLINED),
    (CallRecord(CallStatus.FAILED, 404), Outcome.INVALID),
    (CallRecord(CallStatus.FAILED, 484), Outcome.INVALID),
    (CallRecord(CallStatus.FAILED, 480), Outcome.UNREACHABLE),
    (CallRecord(CallStatus.FAILED, 503), Outcome.UNREACHABLE),
    (CallRecord(CallStatus.FAILED, 500), Outcome.FAILED),
    (CallRecord(CallStatus.COMPLETED, 200, outcome=Outcome.HUNG_UP_EARLY),
     Outcome.HUNG_UP_EARLY),
    (CallRecord(CallStatus.COMPLETED, 200, dialogue_outcome="opt-out"), Outcome.OPTED_OUT),
])
def test_outcome_from_status_and_sip_code(result: CallRecord, outcome: Outcome) -> None:
    assert outcome_of(result) is outcome
