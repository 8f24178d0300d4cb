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


# --- helpers ---------------------------------------------------------------------------

import datetime as dt  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

import pytest  # noqa: E402

from autocall.dialogue.engine import (  # noqa: E402
    Play,
    Record,
    RecordingFinished,
    SpeechResult,
    Transfer,
    TransferResult,
    Webhook,
    WebhookResult,
    allowed_transfer_targets,
)


def _engine(nodes: dict, start: str | None = None, **tree: object) -> Engine:
    data = {"start": start or next(iter(nodes)), "nodes": nodes, **tree}
    variables = tree.pop("_vars", {}) if "_vars" in tree else {}
    return Engine(tree_from(data), variables)  # type: ignore[arg-type]


def _finish_prompts(engine: Engine, now: float) -> list:
    """Send PromptFinished until the engine stops waiting for prompts."""
    out: list = []
    while engine.waiting_for == "prompts":
        out = engine.handle(PromptFinished(), now)
    return out


# --- verbs -----------------------------------------------------------------------------


def test_play_resolves_audio_next_to_the_tree_file(tmp_path) -> None:
    tree = tree_from({"start": "p", "nodes": {"p": {"play": ["a.wav", "/abs/b.wav"]}}})
    tree.with_source(tmp_path / "tree.yaml")
    engine = Engine(tree, {})
    assert engine.start(0) == [Play(str(tmp_path / "a.wav")), Play("/abs/b.wav")]
    engine.handle(PromptFinished(), 1)
    assert engine.handle(PromptFinished(), 2) == [Hangup("completed")]


def test_say_language_and_voice_inherit_from_tree_and_node() -> None:
    engine = _engine(
        {
            "a": {"say": ["one", {"say": "deux", "language": "fr"}], "voice": "f1", "next": "b"},
            "b": {"say": "drei", "language": "de"},
        },
        language="en",
    )
    assert engine.start(0) == [Say("one", "en", "f1"), Say("deux", "fr", "f1")]
    engine.handle(PromptFinished(), 1)
    assert engine.handle(PromptFinished(), 2) == [Say("drei", "de", None)]


def test_menu_repeat_key_replays_without_using_a_retry() -> None:
    engine = _engine(
        {
            "m": {"menu": {"prompt": "P", "items": {1: "x"}, "repeat_key": "*", "retries": 0}},
            "x": {"hangup": "x"},
        }
    )
    engine.start(0)
    for _ in range(3):
        again = engine.handle(Digit("*"), 1)
        assert Say("P", "en", None) in again and engine.waiting_for == "prompts"
    assert engine.handle(Digit("1"), 2) == [Hangup("x")]


def test_menu_default_on_silence_and_variable_records_the_choice() -> None:
    nodes = {
        "m": {
            "menu": {"prompt": "P", "items": {1: "x", 2: "y"}, "default": "y", "variable": "pick"}
        },
        "x": {"hangup": "x"},
        "y": {"hangup": "y"},
    }
    engine = _engine(nodes)
    engine.start(0)
    _finish_prompts(engine, 1)
    assert engine.handle(Timeout(), 6) == [Hangup("y")]
    assert "pick" not in engine.variables
    engine = _engine(nodes)
    engine.start(0)
    engine.handle(Digit("2"), 0.5)  # barge-in during the prompt
    assert engine.variables["pick"] == "2" and engine.outcome == "y"


def test_menu_without_on_failure_hangs_up_with_invalid_input() -> None:
    engine = _engine(
        {"m": {"menu": {"prompt": "P", "items": {1: "x"}, "retries": 1}}, "x": {"hangup": None}}
    )
    engine.start(0)
    engine.handle(Digit("7"), 1)
    assert engine.handle(Digit("8"), 2) == [Hangup("invalid-input")]


def test_menu_speech_picks_the_longest_matching_phrase() -> None:
    nodes = {
        "m": {
            "menu": {
                "prompt": "P",
                "speech": True,
                "min_confidence": 0.5,
                "items": {
                    1: {"next": "a", "say": ["sales"]},
                    2: {"next": "b", "say": ["sales support"]},
                },
            }
        },
        "a": {"hangup": "a"},
        "b": {"hangup": "b"},
    }
    engine = _engine(nodes)
    actions = engine.start(0)
    assert isinstance(actions[0], Collect) and actions[0].speech
    assert set(actions[0].grammar) == {"sales", "sales support"}
    assert engine.handle(SpeechResult("I need Sales Support, please", 0.9), 1) == [Hangup("b")]
    engine = _engine(nodes)
    engine.start(0)
    engine.handle(SpeechResult("sales", 0.2), 1)  # too unsure: counts as invalid
    assert engine.node == "m" and not engine.finished
    again = engine.handle(SpeechResult("two", 0.9), 2)  # unknown phrase: invalid again
    assert Say("Sorry, that is not a valid choice.", "en", None) in again
    assert engine.handle(SpeechResult("1", 0.9), 3) == [Hangup("a")]  # a spoken key number


def _gather(**body: object) -> dict:
    return {
        "g": {
            "gather": {"prompt": "P", "variable": "v", **body},
            "next": "ok",
            "on_failure": "bad",
        },
        "ok": {"hangup": "ok"},
        "bad": {"hangup": "bad"},
    }


def test_gather_terminator_and_inter_digit_timer() -> None:
    engine = _engine(_gather(max_digits=6, first_timeout=4, inter_timeout=2))
    collect = engine.start(0)[0]
    assert collect == Collect(6, "#", 4.0, 2.0, False, ())
    assert engine.handle(PromptFinished(), 1) == [StartTimer(5.0, "first-digit")]
    assert engine.handle(Digit("4"), 2) == [StartTimer(4.0, "inter-digit")]
    assert engine.handle(Digit("2"), 3) == [StartTimer(5.0, "inter-digit")]
    assert engine.handle(Digit("#"), 3.5) == [Hangup("ok")]
    assert engine.variables["v"] == "42" and engine.digits == "42#"


def test_gather_ends_on_max_digits_or_inter_digit_timeout() -> None:
    engine = _engine(_gather(max_digits=3))
    engine.start(0)
    for key in "123":
        actions = engine.handle(Digit(key), 1)
    assert actions == [Hangup("ok")] and engine.variables["v"] == "123"
    engine = _engine(_gather(max_digits=3, min_digits=1, inter_timeout=2))
    engine.start(0)
    engine.handle(Digit("9"), 1)
    assert engine.handle(Timeout(), 2.5) == []  # before the deadline: ignored
    assert engine.handle(Timeout(), 3) == [Hangup("ok")] and engine.variables["v"] == "9"


def test_gather_pattern_and_min_digits_retry_then_fail() -> None:
    engine = _engine(_gather(min_digits=2, pattern="[0-5]+", retries=1, invalid="No."))
    engine.start(0)
    again = engine.handle(Digit("#"), 1)  # nothing entered
    assert Say("Sorry, I did not get that.", "en", None) in again
    again = engine.handle(Digit("7"), 2)
    assert again == [StartTimer(5.0, "inter-digit")]
    engine.handle(Digit("9"), 3)
    assert engine.handle(Digit("#"), 4) == [Hangup("bad")]
    engine = _engine(_gather(min_digits=2, pattern="[0-5]+"))
    engine.start(0)
    for key in "12#":
        engine.handle(Digit(key), 1)
    assert engine.outcome == "ok"


def test_gather_min_digits_zero_accepts_silence() -> None:
    engine = _engine(_gather(min_digits=0))
    engine.start(0)
    engine.handle(PromptFinished(), 1)
    assert engine.handle(Timeout(), 6) == [Hangup("ok")]
    assert engine.variables["v"] == ""


def test_gather_speech_stores_the_text() -> None:
    engine = _engine(_gather(speech=True, pattern="[a-z ]+", grammar=["yes", "no"]))
    collect = engine.start(0)[0]
    assert isinstance(collect, Collect) and collect.speech and collect.grammar == ("yes", "no")
    assert engine.handle(SpeechResult(" yes please ", 0.8), 1) == [Hangup("ok")]
    assert engine.variables["v"] == "yes please"


def test_record_waits_for_prompts_then_records() -> None:
    engine = _engine(
        {
            "r": {
                "record": {"prompt": "Speak", "max_seconds": 30, "end_on_silence": 3},
                "next": "b",
            },
            "b": {"hangup": "voicemail"},
        }
    )
    assert engine.start(0) == [Say("Speak", "en", None)]
    assert engine.handle(PromptFinished(), 1) == [Record(30.0, True, 3.0, "#")]
    assert engine.handle(Digit("5"), 2) == []  # keys during a recording are the driver's
    assert engine.handle(RecordingFinished("/tmp/r.wav", 12.34, "key"), 14) == [Hangup("voicemail")]
    assert engine.variables["recording"] == "/tmp/r.wav"
    assert engine.variables["recording_duration"] == "12.3"


def test_transfer_blind_attended_and_failure_path() -> None:
    nodes = {
        "t": {"transfer": {"target": "*102#", "announce": "Call for {who}"}, "on_failure": "vm"},
        "vm": {"hangup": "voicemail"},
    }
    engine = Engine(
        tree_from({"start": "t", "nodes": nodes, "transfer_targets": ["102"]}), {"who": "sales"}
    )
    assert engine.start(0) == [
        Transfer("102", "attended", (Say("Call for sales", "en", None),), 25.0)
    ]
    assert engine.handle(TransferResult(False), 25) == [Hangup("voicemail")]
    engine = Engine(
        tree_from(
            {"start": "t", "nodes": {"t": {"transfer": "#101#"}}, "transfer_targets": ["#101#"]}
        ),
        {},
    )
    assert engine.start(0) == [Transfer("101", "blind", (), 25.0)]
    assert engine.handle(TransferResult(True), 1) == [Hangup("transferred")]


def test_transfer_to_an_unlisted_target_is_refused() -> None:
    tree = tree_from(
        {"start": "t", "nodes": {"t": {"transfer": "+15550000"}}, "transfer_targets": ["101"]}
    )
    assert allowed_transfer_targets(tree) == {"101"}
    engine = Engine(tree, {})
    assert engine.start(0) == [Hangup("error")]
    assert "+15550000" in (engine.error or "")


def test_webhook_saves_response_fields_or_takes_the_fallback() -> None:
    nodes = {
        "w": {
            "webhook": {
                "url": "http://127.0.0.1/hook/{id}",
                "payload": {"n": "{id}", "list": ["{id}", 3]},
                "save": {"ticket": "ticket"},
                "retries": 2,
            },
            "next": "ok",
            "on_failure": "down",
        },
        "ok": {"hangup": "ok"},
        "down": {"hangup": "down"},
    }
    engine = Engine(tree_from({"start": "w", "nodes": nodes}), {"id": "7"})
    assert engine.start(0) == [
        Webhook("http://127.0.0.1/hook/7", {"n": "7", "list": ["7", 3]}, 5.0, 2)
    ]
    assert engine.handle(WebhookResult(200, {"ticket": 99}), 1) == [Hangup("ok")]
    assert engine.variables["ticket"] == "99" and engine.variables["webhook_status"] == "200"
    engine = Engine(tree_from({"start": "w", "nodes": nodes}), {"id": "7"})
    engine.start(0)
    assert engine.handle(WebhookResult(0), 5) == [Hangup("down")]


def test_set_and_branch_conditions() -> None:
    nodes = {
        "s": {"set": {"full": "{first} {last}", "n": 5, "flag": True}, "next": "b"},
        "b": {
            "branch": [
                {"if": {"var": "n", "gt": 10}, "next": "big"},
                {"if": {"var": "full", "matches": "^Ann "}, "next": "ann"},
            ],
            "else": "other",
        },
        "big": {"hangup": "big"},
        "ann": {"hangup": "ann"},
        "other": {"hangup": "other"},
    }
    engine = Engine(tree_from({"start": "s", "nodes": nodes}), {"first": "Ann", "last": "Lee"})
    assert engine.start(0) == [Hangup("ann")]
    assert engine.variables["full"] == "Ann Lee" and engine.variables["flag"] == "true"
    engine = Engine(tree_from({"start": "s", "nodes": nodes}), {"first": "Bo"})
    assert engine.start(0) == [Hangup("other")]


@pytest.mark.parametrize(
    ("cond", "value", "expected"),
    [
        ({"eq": "1"}, "1", True),
        ({"eq": 1}, "1", True),
        ({"ne": "1"}, "1", False),
        ({"in": ["a", "b"]}, "b", True),
        ({"in": ["a", "b"]}, "c", False),
        ({"ge": 3, "lt": 5}, "4", True),
        ({"ge": 3, "lt": 5}, "5", False),
        ({"le": 2}, "abc", False),
        ({"empty": True}, "", True),
        ({"empty": False}, "", False),
        ({}, "x", True),
        ({}, "", False),
    ],
)
def test_branch_condition_operators(cond: dict, value: str, expected: bool) -> None:
    nodes = {
        "b": {"branch": [{"if": {"var": "v", **cond}, "next": "yes"}], "else": "no"},
        "yes": {"hangup": "yes"},
        "no": {"hangup": "no"},
    }
    engine = Engine(tree_from({"start": "b", "nodes": nodes}), {"v": value})
    engine.start(0)
    assert engine.outcome == ("yes" if expected else "no")


def _at(text: str, zone: str = "Europe/Berlin") -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


@pytest.mark.parametrize(
    ("when", "is_open"),
    [
        ("2026-11-23T09:00", True),  # Monday opening minute
        ("2026-11-23T08:59", False),
        ("2026-11-23T16:59", True),
        ("2026-11-23T17:00", False),  # the end is exclusive
        ("2026-11-28T10:30", True),  # Saturday
        ("2026-11-29T10:30", False),  # Sunday
        ("2026-12-25T10:30", False),  # a holiday on a Friday
        ("2026-11-23T23:30", True),  # the overnight range on Monday
        ("2026-11-24T00:30", True),  # … runs on into Tuesday
        ("2026-11-23T00:30", False),  # but Monday's early hours belong to Sunday
    ],
)
def test_hours_by_day_time_holiday_and_zone(when: str, is_open: bool) -> None:
    nodes = {
        "h": {
            "hours": {
                "timezone": "Europe/Berlin",
                "schedule": {"mon-fri": "09:00-17:00", "sat": "10:00-12:00", "mon": "23:00-01:00"},
                "holidays": ["2026-12-25"],
            },
            "open": "o",
            "closed": "c",
        },
        "o": {"hangup": "open"},
        "c": {"hangup": "closed"},
    }
    engine = Engine(tree_from({"start": "h", "nodes": nodes, "timezone": "UTC"}), {})
    engine.start(_at(when))
    assert engine.outcome == ("open" if is_open else "closed")


def test_goto_and_pause_timer() -> None:
    engine = _engine({"g": {"goto": "p"}, "p": {"pause": 1.5, "next": "e"}, "e": {"hangup": "e"}})
    assert engine.start(10) == [StartTimer(11.5, "pause")]
    assert engine.waiting_for == "pause" and engine.next_deadline() == 11.5
    assert engine.handle(Timeout(), 11.0) == []
    assert engine.handle(Timeout(), 11.5) == [Hangup("e")]
    assert engine.path == ["g", "p", "e"]


def test_node_without_next_completes_the_call() -> None:
    engine = _engine({"s": {"set": {"a": "1"}}})
    assert engine.start(0) == [Hangup("completed")]


# --- engine rules ----------------------------------------------------------------------


def test_step_limit_stops_a_runaway_loop() -> None:
    tree = tree_from(
        {
            "start": "a",
            "max_steps": 50,
            "nodes": {"a": {"set": {"x": "1"}, "next": "b"}, "b": {"goto": "a"}},
        }
    )
    engine = Engine(tree, {})
    assert engine.start(0) == [Hangup("error")]
    assert len(engine.path) == 50 and "step limit" in (engine.error or "")


def test_key_during_a_message_skips_it_and_becomes_type_ahead() -> None:
    nodes = {
        "msg": {"say": ["long message", "second part"], "next": "m"},
        "m": {"menu": {"prompt": "P", "items": {3: "x"}}},
        "x": {"hangup": "x"},
    }
    engine = _engine(nodes)
    engine.start(0)
    assert engine.handle(Digit("3"), 1) == [Hangup("x")]
    assert engine.path == ["msg", "m", "x"]


def _notice(skippable: bool, verb: str = "say") -> dict:
    body = (
        {"say": ["This call is recorded.", "Part two."]}
        if verb == "say"
        else {"play": ["notice.wav", "part2.wav"]}
    )
    return {
        "notice": {**body, "skippable": skippable, "next": "m"},
        "m": {"menu": {"prompt": "Press 3.", "items": {3: "x"}, "timeout": 5}},
        "x": {"hangup": "x"},
    }


@pytest.mark.parametrize("verb", ["say", "play"])
def test_a_key_during_an_unskippable_message_neither_skips_it_nor_reaches_the_menu(
    verb: str,
) -> None:
    engine = _engine(_notice(False, verb))
    first = engine.start(0)
    assert len(first) == 2 and engine.keys_ignored
    for at, key in ((0.5, "3"), (0.6, "#"), (1.5, "3")):
        assert engine.handle(Digit(key), at) == []
        assert engine.node == "notice" and engine.waiting_for == "prompts"
    engine.handle(PromptFinished(), 1.0)
    assert engine.node == "notice"  # the second part still plays
    engine.handle(Digit("3"), 1.5)
    actions = engine.handle(PromptFinished(), 2.0)
    # the menu did not take a kept key: it asks its question, then waits
    assert isinstance(actions[0], Collect) and actions[1:] == [Say("Press 3.", "en", None)]
    assert engine.node == "m" and not engine.keys_ignored
    assert engine.digits == "3#33"  # logged like every key, acted on by none
    assert _finish_prompts(engine, 3.0) == [StartTimer(8.0, "menu")]
    assert engine.handle(Digit("3"), 4.0) == [Hangup("x")]
    assert engine.path == ["notice", "m", "x"]


@pytest.mark.parametrize("verb", ["say", "play"])
def test_a_key_during_a_skippable_message_still_skips_it_and_answers_the_menu(
    verb: str,
) -> None:
    engine = _engine(_notice(True, verb))
    engine.start(0)
    assert not engine.keys_ignored
    assert engine.handle(Digit("3"), 0.5) == [Hangup("x")]
    assert engine.path == ["notice", "m", "x"]


def test_an_unskippable_message_drops_keys_typed_ahead_before_it() -> None:
    nodes = {
        "hello": {"say": "Welcome.", "next": "notice"},
        **_notice(False),
    }
    engine = _engine(nodes)
    engine.start(0)
    engine.handle(Digit("3"), 0.2)  # skips the welcome; kept as type-ahead until...
    assert engine.node == "notice" and engine.keys_ignored  # ...the notice drops it
    _finish_prompts(engine, 1.0)
    assert engine.node == "m" and engine.waiting_for == "input" and not engine.finished
    # whereas a skippable notice lets the same key answer the menu behind it
    nodes["notice"] = {**nodes["notice"], "skippable": True}
    engine = _engine(nodes)
    engine.start(0)
    notice = engine.handle(Digit("3"), 0.2)  # skips the welcome; the notice plays
    assert [a.text for a in notice if isinstance(a, Say)] == ["This call is recorded.", "Part two."]
    assert engine.handle(Digit("4"), 0.3) == [Hangup("x")]  # 4 skips it; the kept 3 answers


def test_an_empty_unskippable_message_keeps_type_ahead() -> None:
    nodes = {
        "wait": {"pause": 1, "next": "notice"},
        "notice": {"say": [], "skippable": False, "next": "m"},
        "m": {"menu": {"prompt": "Press 3.", "items": {3: "x"}}},
        "x": {"hangup": "x"},
    }
    engine = _engine(nodes)
    engine.start(0)
    engine.handle(Digit("3"), 0.5)
    assert engine.handle(Timeout(), 1.0) == [Hangup("x")]  # nothing was heard in between


def test_type_ahead_fills_a_gather() -> None:
    nodes = {"msg": {"say": "hi", "next": "g"}, **_gather(max_digits=3)}
    engine = _engine(nodes)
    engine.start(0)
    engine.handle(Digit("1"), 0.1)  # skips the message, waits in the gather
    assert engine.node == "g" and engine.waiting_for == "input"
    engine.handle(Digit("2"), 0.2)
    assert engine.handle(Digit("3"), 0.3) == [Hangup("ok")]
    assert engine.variables["v"] == "123"


def test_stray_events_are_ignored() -> None:
    engine = _engine(_gather())
    engine.start(0)
    for event in (WebhookResult(200), TransferResult(True), RecordingFinished("x", 1)):
        assert engine.handle(event, 1) == []
    assert engine.handle(Timeout(), 1) == []  # no timer armed yet
    assert engine.handle(Digit("x"), 1) == []  # not a DTMF key
    assert engine.digits == ""


def test_engine_is_deterministic() -> None:
    def run() -> tuple:
        engine = Engine(tree_from(_menu_tree()), {"first_name": "Zoe"})
        log = [engine.start(0)]
        for i, event in enumerate(
            [
                PromptFinished(),
                PromptFinished(),
                Digit("9"),
                PromptFinished(),
                PromptFinished(),
                Digit("1"),
            ]
        ):
            log.append(engine.handle(event, float(i)))
        return tuple(map(tuple, log)), tuple(engine.path), engine.outcome

    assert run() == run()


def test_start_twice_and_handle_before_start_are_errors() -> None:
    engine = Engine(tree_from(_menu_tree()), {})
    with pytest.raises(RuntimeError):
        engine.handle(Digit("1"), 0)
    engine.start(0)
    with pytest.raises(RuntimeError):
        engine.start(0)


def test_hangup_during_the_goodbye_keeps_the_outcome_the_tree_was_heading_for() -> None:
    nodes = {
        "m": {"menu": {"prompt": "Press 9 to stop", "items": {9: "bye"}}},
        "bye": {"say": "You will not be called again.", "next": "mark"},
        "mark": {"set": {"dnc": "yes"}, "next": "out"},
        "out": {"hangup": "opt-out"},
    }
    engine = _engine(nodes)
    engine.start(0)
    engine.handle(Digit("9"), 1)
    assert engine.handle(CallerHangup(), 2) == []
    assert engine.outcome == "opt-out" and engine.caller_hung_up
    assert engine.path == ["m", "bye"]
    engine = _engine(nodes)
    engine.start(0)
    engine.handle(CallerHangup(), 1)
    assert engine.outcome == "caller-hangup" and engine.caller_hung_up


def test_keys_during_a_recording_prompt_are_not_kept() -> None:
    nodes = {
        "r": {"record": {"prompt": "After the tone"}, "next": "m"},
        "m": {"menu": {"prompt": "P", "items": {"#": "x"}}},
        "x": {"hangup": "x"},
    }
    engine = _engine(nodes)
    engine.start(0)
    assert engine.handle(Digit("#"), 0.5) == []
    engine.handle(PromptFinished(), 1)
    actions = engine.handle(RecordingFinished("/r.wav", 2.0), 3)
    assert Say("P", "en", None) in actions and not engine.finished


def test_hangup_during_the_last_message_completes() -> None:
    engine = _engine({"a": {"say": "Thanks, goodbye."}})
    engine.start(0)
    engine.handle(CallerHangup(), 1)
    assert engine.outcome == "completed" and engine.caller_hung_up


def test_a_loop_of_empty_messages_stops_at_the_step_limit_without_recursing() -> None:
    tree = tree_from(
        {
            "start": "a",
            "max_steps": 5000,
            "nodes": {"a": {"say": [], "next": "b"}, "b": {"play": [], "next": "a"}},
        }
    )
    engine = Engine(tree, {})
    assert engine.start(0) == [Hangup("error")]
    assert len(engine.path) == 5000


def test_a_flood_of_keys_while_nothing_listens_is_bounded() -> None:
    nodes = {
        "w": {"webhook": {"url": "http://127.0.0.1/x"}, "next": "m"},
        "m": {"menu": {"prompt": "P", "items": {1: "m", 2: "e"}}},
        "e": {"hangup": "e"},
    }
    engine = _engine(nodes)
    engine.start(0)
    for _ in range(5000):
        engine.handle(Digit("1"), 1)
    engine.handle(WebhookResult(200), 2)
    assert engine.path.count("m") == 1 + 32 and not engine.finished  # entry + kept keys
    assert len(engine.digits) == 5000


def test_a_bad_transfer_target_in_an_unvalidated_tree_is_skipped_not_a_crash() -> None:
    # `load` does not run the validator, which reports "abc"; the engine must still start
    engine = _engine({"t": {"transfer": "101"}}, transfer_targets=["abc", 101])
    assert engine.start(0) == [Transfer("101", "blind", (), 25.0)]
