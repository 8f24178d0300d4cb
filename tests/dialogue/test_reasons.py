"""The engine says why it branched (issue 17): hours open or closed (a holiday, the range
that is open, outside hours), the branch case that held, each retry after no or wrong
input with what happened, the exit after the last try, a menu's default on silence; the
simulator shows them as ``why`` steps before what they led to. Driven on a fake clock."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from autocall.dialogue import loader
from autocall.dialogue.engine import Engine, PromptFinished, Reason, SpeechResult, Timeout
from autocall.dialogue.simulate import Simulator

from .conftest import PROMPTS_DIR, tree_from

BERLIN = dt.timezone(dt.timedelta(hours=1))  # CET in December
HOURS = {
    "start": "h",
    "timezone": "Europe/Berlin",
    "nodes": {
        "h": {"hours": {"schedule": {"mon-fri": "09:00-17:00", "sat": "22:00-02:00"},
                        "holidays": ["2026-12-25"]},
              "open": "in", "closed": "out"},
        "in": {"hangup": "open"},
        "out": {"hangup": "closed"},
    },
    "outcomes": ["open", "closed"],
}


def _why(tree: dict[str, object], inputs: list[str], at: dt.datetime,
         variables: dict[str, str] | None = None) -> list[str]:
    result = Simulator(tree_from(tree), variables or {}, start_time=at.timestamp()).run(inputs)
    return [s.text for s in result.transcript if s.kind == "why"]


def test_hours_say_holiday_open_range_and_outside() -> None:
    assert _why(HOURS, [], dt.datetime(2026, 12, 25, 10, tzinfo=BERLIN)) == [
        "closed: holiday 2026-12-25 → out"]
    assert _why(HOURS, [], dt.datetime(2026, 12, 22, 10, 30, tzinfo=BERLIN)) == [
        "open: Tue 2026-12-22 10:30 Europe/Berlin is in mon-fri 09:00-17:00 → in"]
    assert _why(HOURS, [], dt.datetime(2026, 12, 22, 17, 0, tzinfo=BERLIN)) == [
        "closed: Tue 2026-12-22 17:00 Europe/Berlin is outside the opening hours → out"]
    # a range past midnight belongs to the day it starts on: Sunday 01:00 is Saturday's
    assert _why(HOURS, [], dt.datetime(2026, 12, 27, 1, 0, tzinfo=BERLIN)) == [
        "open: Sun 2026-12-27 01:00 Europe/Berlin is in sat 22:00-02:00 → in"]


def test_the_engine_keeps_each_reason_with_its_node_and_time() -> None:
    tree = tree_from(HOURS)
    engine = Engine(tree, {})
    at = dt.datetime(2026, 12, 25, 10, tzinfo=BERLIN).timestamp()
    engine.start(at)
    assert engine.outcome == "closed"
    assert engine.reasons == [Reason(at, "h", "closed: holiday 2026-12-25 → out")]


BRANCH = {
    "start": "b",
    "nodes": {
        "b": {"branch": [{"if": {"var": "amount", "gt": 100}, "next": "big"},
                         {"if": {"var": "tier", "in": ["gold", "silver"]}, "next": "vip"}],
              "else": "small"},
        "big": {"hangup": "big"}, "vip": {"hangup": "vip"}, "small": {"hangup": "small"},
    },
    "outcomes": ["big", "vip", "small"],
}


def test_a_branch_says_which_case_held_with_the_value() -> None:
    at = dt.datetime(2026, 12, 22, 10, tzinfo=BERLIN)
    assert _why(BRANCH, [], at, {"amount": "150"}) == ["amount > 100 (amount is '150') → big"]
    assert _why(BRANCH, [], at, {"amount": "5", "tier": "gold"}) == [
        "tier in ['gold', 'silver'] (tier is 'gold') → vip"]
    assert _why(BRANCH, [], at, {"amount": "5"}) == ["no case holds → small"]


MENU = {
    "start": "m",
    "nodes": {
        "m": {"menu": {"prompt": "Press 1", "items": {1: {"next": "ok", "say": ["yes"]}},
                       "timeout": 5, "retries": 3, "speech": True, "min_confidence": 0.6},
              "on_failure": "bye"},
        "ok": {"hangup": "ok"}, "bye": {"hangup": "gave-up"},
    },
    "outcomes": ["ok", "gave-up"],
}


def test_menu_retries_count_up_and_say_what_happened() -> None:
    at = dt.datetime(2026, 12, 22, 10, tzinfo=BERLIN)
    result = Simulator(tree_from(MENU), {}, start_time=at.timestamp()).run(
        ["t", "7", "maybe", "t"])
    steps = [(s.kind, s.text) for s in result.transcript if s.kind in ("why", "input", "say")]
    assert [text for kind, text in steps if kind == "why"] == [
        "retry 1 of 3: no input after 5 s",
        "retry 2 of 3: key 7 is not a choice",
        "retry 3 of 3: 'maybe' matches no choice",
        "no input after 5 s; 4 tries, no retry left → bye",
    ]
    # each reason comes before the sorry and the question it led to
    first = steps.index(("why", "retry 1 of 3: no input after 5 s"))
    assert steps[first - 1] == ("input", "(no key: timeout)")
    assert steps[first + 1][0] == "say"
    assert result.outcome == "gave-up"


def test_a_menu_without_on_failure_hangs_up_and_a_default_is_taken_on_silence() -> None:
    at = dt.datetime(2026, 12, 22, 10, tzinfo=BERLIN)
    bare = {**MENU, "nodes": {**MENU["nodes"], "m": {"menu": {  # type: ignore[dict-item]
        "prompt": "Press 1", "items": {1: "ok"}, "retries": 0}}}}
    assert _why(bare, ["9"], at) == [
        "key 9 is not a choice; 1 try, no retry left → hang up: invalid-input"]
    default = {**MENU, "nodes": {**MENU["nodes"], "m": {"menu": {  # type: ignore[dict-item]
        "prompt": "Press 1", "items": {1: "ok"}, "timeout": 3, "default": "ok"}}}}
    assert _why(default, ["t"], at) == ["no input after 3 s → default ok"]


def test_speech_below_the_confidence_is_a_reason_too() -> None:
    tree = tree_from(MENU)
    engine = Engine(tree, {})
    engine.start(0.0)
    engine.handle(PromptFinished(), 1.0)
    engine.handle(SpeechResult("yes", 0.4), 2.0)
    assert [r.text for r in engine.reasons] == [
        "retry 1 of 3: heard 'yes' with confidence 0.40, below 0.60"]
    engine.handle(Timeout(), 100.0)  # the sorry prompt is still playing: ignored
    assert len(engine.reasons) == 1


GATHER = {
    "start": "g",
    "nodes": {
        "g": {"gather": {"prompt": "Your PIN, then hash", "variable": "pin", "min_digits": 4,
                         "max_digits": 6, "terminator": "#", "pattern": "[0-8]+",
                         "first_timeout": 6, "retries": 4},
              "next": "ok", "on_failure": "bye"},
        "ok": {"hangup": "ok"}, "bye": {"hangup": "gave-up"},
    },
    "outcomes": ["ok", "gave-up"],
}


def test_gather_reasons_name_the_rule_that_failed() -> None:
    at = dt.datetime(2026, 12, 22, 10, tzinfo=BERLIN)
    assert _why(GATHER, ["t", "#", "12#", "9999#", "1234#"], at) == [
        "retry 1 of 4: no input after 6 s",
        "retry 2 of 4: nothing entered before #",
        "retry 3 of 4: '12' is 2 key(s), at least 4 wanted",
        "retry 4 of 4: '9999' does not match [0-8]+",
    ]


def test_the_office_tree_on_christmas_day() -> None:
    tree = loader.load(Path(PROMPTS_DIR / "office.yaml"))
    christmas = dt.datetime(2026, 12, 25, 10, tzinfo=dt.UTC).timestamp()
    result = Simulator(tree, {}, start_time=christmas).run([])
    why = [s for s in result.transcript if s.kind == "why"]
    assert [(s.node, s.text) for s in why] == [
        ("hours", "closed: holiday 2026-12-25 → after_hours")]
    assert result.path[:2] == ["hours", "after_hours"]


def test_the_designer_pages_tokens_wait_and_say() -> None:
    """The keypad's "Wait (no input)" sends ``wait`` and the Say box ``say:WORDS`` (also
    in the cases it records): no input, and words even when they look like a command."""
    result = Simulator(tree_from(MENU), {}).run(["wait", "say:h", "say: yes"])
    inputs = [s.text for s in result.transcript if s.kind == "input"]
    assert inputs == ["(no key: timeout)", 'says "h"', 'says "yes"']
    assert [s.text for s in result.transcript if s.kind == "why"] == [
        "retry 1 of 3: no input after 5 s", "retry 2 of 3: 'h' matches no choice"]
    assert result.outcome == "ok" and result.digits == ""
