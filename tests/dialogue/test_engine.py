"""The engine contract, verb by verb, driven by hand with an explicit clock."""

from __future__ import annotations

from autocall.dialogue.engine import (
    CallerHangup,
    Collect,
    Digit,
    Engine,
    Hangup,
    PromptFinished,
    Say,
    StartTimer,
    Timeout,
)

from .conftest import tree_from


def _menu_tree() -> dict:
    return {
        "start": "hello",
        "nodes": {
            "hello": {"say": "Hello {first_name}", "next": "menu"},
            "menu": {
                "menu": {"prompt": "Press 1 or 2", "items": {1: "one", "2": "two"}, "retries": 1},
                "on_failure": "bye",
            },
            "one": {"hangup": "chose-one"},
            "two": {"hangup": "chose-two"},
            "bye": {"hangup": "gave-up"},
        },
    }


def test_say_is_templated_and_waits_for_prompt_finished() -> None:
    engine = Engine(tree_from(_menu_tree()), {"first_name": "Ann"})
    assert engine.start(0.0) == [Say("Hello Ann", "en", None)]
    assert engine.waiting_for == "prompts"
    actions = engine.handle(PromptFinished(), 1.0)
    assert isinstance(actions[0], Collect) and actions[1] == Say("Press 1 or 2", "en", None)
    assert engine.handle(PromptFinished(), 2.0) == [StartTimer(7.0, "menu")]
    assert engine.handle(Digit("2"), 3.0) == [Hangup("chose-two")]
    assert engine.path == ["hello", "menu", "two"]
    assert engine.outcome == "chose-two" and engine.digits == "2"


def test_early_timeout_is_ignored_and_retries_lead_to_on_failure() -> None:
    engine = Engine(tree_from(_menu_tree()), {})
    engine.start(0.0)
    engine.handle(PromptFinished(), 0.0)
    engine.handle(PromptFinished(), 0.0)
    assert engine.handle(Timeout(), 4.0) == []
    again = engine.handle(Timeout(), 5.0)
    assert [a.text for a in again if isinstance(a, Say)] == [
        "Sorry, I did not hear a choice.",
        "Press 1 or 2",
    ]
    engine.handle(PromptFinished(), 6.0)
    engine.handle(PromptFinished(), 7.0)
    assert engine.handle(Timeout(), 12.0) == [Hangup("gave-up")]
    assert engine.path == ["hello", "menu", "bye"]


def test_caller_hangup_finishes_without_actions() -> None:
    engine = Engine(tree_from(_menu_tree()), {})
    engine.start(0.0)
    assert engine.handle(CallerHangup(), 1.0) == []
    assert engine.outcome == "caller-hangup" and engine.finished
    assert engine.handle(Digit("1"), 2.0) == []
