"""The engine's key and barge-in policy: what drivers ask instead of re-deriving it."""

from __future__ import annotations

from autocall.dialogue.engine import Engine, PromptFinished, RecordingFinished, Waiting

from .conftest import tree_from


def _tree(nodes: dict, start: str = "a") -> Engine:
    engine = Engine(tree_from({"start": start, "nodes": nodes}))
    engine.start(0.0)
    return engine


def test_a_menu_takes_keys_and_barge_in_while_its_prompt_plays_and_after() -> None:
    engine = _tree({"a": {"menu": {"prompt": "Press 1.", "items": {1: "b"}}},
                    "b": {"hangup": "done"}})
    assert engine.waiting_for is Waiting.PROMPTS
    assert engine.accepts_keys and engine.interruptible and not engine.keys_ignored
    assert not engine.accepts_speech  # no speech: in this menu
    engine.handle(PromptFinished(), 1.0)
    assert engine.waiting_for is Waiting.INPUT
    assert engine.accepts_keys and not engine.interruptible  # nothing left to flush


def test_an_unskippable_notice_takes_no_keys_and_is_not_interrupted() -> None:
    engine = _tree({"a": {"say": "This call is recorded.", "skippable": False, "next": "m"},
                    "m": {"menu": {"prompt": "Press 1.", "items": {1: "b"}}},
                    "b": {"hangup": "done"}})
    assert engine.keys_ignored and not engine.accepts_keys and not engine.interruptible
    engine.handle(PromptFinished(), 1.0)
    assert engine.node == "m" and engine.accepts_keys and engine.interruptible


def test_a_pause_takes_keys_only_when_a_menu_or_gather_lies_ahead() -> None:
    ahead = _tree({"a": {"pause": 1, "next": "m"},
                   "m": {"menu": {"prompt": "Press 1.", "items": {1: "b"}}},
                   "b": {"hangup": "done"}})
    assert ahead.waiting_for is Waiting.PAUSE and ahead.accepts_keys
    behind_a_notice = _tree({"a": {"pause": 1, "next": "n"},
                             "n": {"say": "Notice.", "skippable": False, "next": "m"},
                             "m": {"menu": {"prompt": "Press 1.", "items": {1: "b"}}},
                             "b": {"hangup": "done"}})
    assert not behind_a_notice.accepts_keys  # the notice drops keys typed ahead of it
    nothing = _tree({"a": {"pause": 1, "next": "b"}, "b": {"hangup": "done"}})
    assert not nothing.accepts_keys


def test_a_recording_takes_only_its_end_key() -> None:
    for end_on_key, takes in (("#", True), (None, False)):
        engine = _tree({"a": {"record": {"prompt": "Speak.", "end_on_key": end_on_key},
                              "next": "b"},
                        "b": {"hangup": "done"}})
        assert engine.keys_ignored and not engine.accepts_keys  # the prompt before the tone
        engine.handle(PromptFinished(), 1.0)
        assert engine.waiting_for is Waiting.RECORDING and engine.accepts_keys is takes
        engine.handle(RecordingFinished("/tmp/r.wav", 1.0), 2.0)
        assert engine.finished and not engine.accepts_keys


def test_spoken_answers_count_only_where_a_menu_or_gather_takes_speech() -> None:
    engine = _tree({"a": {"say": "Hello.", "next": "g"},
                    "g": {"gather": {"prompt": "Your code?", "variable": "code", "speech": True},
                          "next": "b"},
                    "b": {"hangup": "done"}})
    assert not engine.accepts_speech  # a message
    engine.handle(PromptFinished(), 1.0)
    assert engine.node == "g" and engine.accepts_speech  # its prompt plays
    engine.handle(PromptFinished(), 2.0)
    assert engine.waiting_for is Waiting.INPUT and engine.accepts_speech
