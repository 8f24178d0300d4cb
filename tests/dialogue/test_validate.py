"""Every loader and validator finding, with the line and column it reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from autocall.dialogue.loader import TreeError, load, load_text
from autocall.dialogue.validate import tree_files, validate_file

PROMPTS_AUDIO = Path(__file__).parents[2] / "prompts" / "audio"  # a real, playable WAV


def _findings(write, text: str, **kw) -> list[tuple[int, int, str, str, str]]:
    path = write("tree.yaml", text)
    report = validate_file(path, **kw)
    return [(p.line, p.column, p.severity, p.code, p.message) for p in report.problems]


def _one(write, text: str, code: str, **kw) -> tuple[int, int, str, str]:
    found = [f for f in _findings(write, text, **kw) if f[3] == code]
    assert len(found) == 1, found
    line, column, severity, _, message = found[0]
    return line, column, severity, message


GOOD_TAIL = """
  end:
    hangup: completed
"""


def test_yaml_syntax_error_is_located(write) -> None:
    line, column, severity, message = _one(
        write, "start: a\nnodes:\n  a:\n    say: [unclosed\n", "yaml"
    )
    assert severity == "error" and (line, column) == (4, 10) and "YAML syntax" in message
    assert "never closed" in message  # the bracket that opened, not the end of the file


def test_duplicate_key_is_a_yaml_error(write) -> None:
    line, _, _, message = _one(
        write, "start: a\nnodes:\n  a: {hangup: x}\n  a: {hangup: y}\n", "yaml"
    )
    assert line == 4 and "duplicate" in message.lower()


@pytest.mark.parametrize(
    ("text", "what"),
    [("", "empty file"), ("- a\n- b\n", "list"), ("just text\n", "text")],
)
def test_top_level_must_be_a_mapping(write, text: str, what: str) -> None:
    line, column, _, message = _one(write, text, "type")
    assert (line, column) == (1, 1) and what in message


def test_unknown_key_says_did_you_mean_with_its_position(write) -> None:
    text = (
        """start: m
nodes:
  m:
    menu:
      prompt: Press 1
      items: {1: end}
      retires: 3
"""
        + GOOD_TAIL
    )
    line, column, severity, message = _one(write, text, "unknown-key")
    assert (line, column, severity) == (7, 7, "error")
    assert "'retires'" in message and "did you mean 'retries'" in message


def test_unknown_key_at_top_and_in_a_prompt(write) -> None:
    text = (
        """start: a
langauge: en
nodes:
  a:
    say:
      - say: hello
        voise: anna
    next: end
"""
        + GOOD_TAIL
    )
    found = [f for f in _findings(write, text) if f[3] == "unknown-key"]
    assert [(f[0], f[1]) for f in found] == [(2, 1), (7, 9)]
    assert "did you mean 'language'" in found[0][4]
    assert "did you mean 'voice'" in found[1][4]


def test_misspelt_verb_is_named(write) -> None:
    text = "start: a\nnodes:\n  a:\n    sya: hello\n    next: end\n" + GOOD_TAIL
    line, column, _, message = _one(write, text, "verb")
    assert (line, column) == (3, 3)
    assert "did you mean 'say' instead of 'sya'" in message


def test_two_verbs_in_one_node(write) -> None:
    text = "start: a\nnodes:\n  a:\n    say: hi\n    play: x.wav\n" + GOOD_TAIL
    line, _, _, message = _one(write, text, "verb")
    assert line == 5 and "several verbs" in message


def test_wrong_type_is_located_at_the_value(write) -> None:
    text = (
        """start: g
nodes:
  g:
    gather:
      prompt: Enter
      variable: x
      max_digits: lots
    next: end
"""
        + GOOD_TAIL
    )
    line, column, _, message = _one(write, text, "type")
    assert (line, column) == (7, 19) and "max_digits" in message and "'lots'" in message


def test_skippable_false_is_accepted_on_say_and_play(write, tmp_path: Path) -> None:
    (tmp_path / "notice.wav").write_bytes((PROMPTS_AUDIO / "chime.wav").read_bytes())
    text = """start: a
nodes:
  a:
    say: "This call is recorded."
    skippable: false
    next: b
  b:
    play: notice.wav
    skippable: true
"""
    assert _findings(write, text) == []
    tree = load(tmp_path / "tree.yaml")
    assert [n.skippable for n in tree.nodes.values()] == [False, True]  # type: ignore[union-attr]


@pytest.mark.parametrize("value", ["no", "0", '"false"', "maybe", "[false]"])
def test_skippable_must_be_a_boolean(write, value: str) -> None:
    text = f"""start: a
nodes:
  a:
    say: Recorded.
    skippable: {value}
"""
    line, column, severity, message = _one(write, text, "type")
    assert (line, column, severity) == (5, 16, "error")
    assert "nodes.a.skippable" in message and "true or false" in message


def test_skippable_is_only_for_messages(write) -> None:
    text = """start: m
nodes:
  m:
    menu: {prompt: P, items: {1: m}}
    skippable: false
"""
    line, column, _, message = _one(write, text, "unknown-key")
    assert (line, column) == (5, 5) and "'skippable'" in message


def test_missing_required_key(write) -> None:
    text = "start: g\nnodes:\n  g:\n    gather:\n      prompt: Enter\n    next: end\n" + GOOD_TAIL
    line, _, _, message = _one(write, text, "missing")
    assert line == 5 and "'variable'" in message


def test_bad_values_are_reported(write) -> None:
    text = (
        """start: m
timezone: Mars/Olympus
nodes:
  m:
    menu:
      prompt: P
      items: {1: end, x: end}
"""
        + GOOD_TAIL
    )
    found = [f for f in _findings(write, text) if f[3] == "value"]
    lines = sorted(f[0] for f in found)
    assert lines == [2, 7]
    assert any("unknown time zone" in f[4] for f in found)


def test_dangling_target_with_suggestion(write) -> None:
    text = """start: a
nodes:
  a:
    say: hi
    next: ending
  ending_x:
    hangup: x
  end:
    hangup: y
"""
    found = [f for f in _findings(write, text) if f[3] == "dangling"]
    assert [(f[0], f[1]) for f in found] == [(5, 11)]
    assert "'ending'" in found[0][4] and "did you mean" in found[0][4]


def test_dangling_start_and_menu_item(write) -> None:
    text = (
        """start: nope
nodes:
  m:
    menu:
      prompt: P
      items:
        1: end
        2: {next: gone}
"""
        + GOOD_TAIL
    )
    found = sorted((f[0], f[4]) for f in _findings(write, text) if f[3] == "dangling")
    assert [line for line, _ in found] == [1, 8]


def test_unreachable_node_is_a_warning(write) -> None:
    text = "start: a\nnodes:\n  a:\n    hangup: x\n  orphan:\n    say: lonely\n"
    line, column, severity, message = _one(write, text, "unreachable")
    assert (line, column, severity) == (5, 3, "warning") and "'orphan'" in message


def test_loop_without_input_is_an_error(write) -> None:
    text = """start: a
nodes:
  a:
    say: again
    next: b
  b:
    goto: a
"""
    line, _, severity, message = _one(write, text, "loop")
    assert (line, severity) == (3, "error") and "a → b → a" in message


def test_loop_with_a_conditional_exit_is_a_warning(write) -> None:
    text = (
        """start: a
nodes:
  a:
    webhook: {url: "http://127.0.0.1/x"}
    next: b
  b:
    branch:
      - if: {var: webhook_status, eq: "200"}
        next: end
    else: a
"""
        + GOOD_TAIL
    )
    line, _, severity, _ = _one(write, text, "loop")
    assert (line, severity) == (3, "warning")


def test_menu_with_no_way_out(write) -> None:
    text = """start: m
nodes:
  m:
    menu:
      prompt: P
      items:
        1: m
        2: info
  info:
    say: still here
    next: m
"""
    line, column, severity, message = _one(write, text, "no-way-out")
    assert (line, column, severity) == (3, 3, "error") and "menu 'm'" in message


def test_missing_audio_file_relative_to_the_tree(write, tmp_path: Path) -> None:
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "here.wav").write_bytes((PROMPTS_AUDIO / "chime.wav").read_bytes())
    text = (
        """start: a
nodes:
  a:
    play: [audio/here.wav, audio/gone.wav]
    next: m
  m:
    menu:
      prompt: [{play: audio/also-gone.wav}, "Press 1"]
      items: {1: end}
"""
        + GOOD_TAIL
    )
    found = [f for f in _findings(write, text) if f[3] == "audio"]
    assert [(f[0], f[1]) for f in found] == [(4, 28), (8, 23)]
    assert "gone.wav" in found[0][4]


def test_template_fields_warn_without_contacts_and_fail_with_them(write) -> None:
    text = (
        """start: a
contact_fields: [first_name]
variables: {amount: "0"}
nodes:
  a:
    say: "Hi {first_name}, you owe {amount} by {due_date}. Caller {caller_id}."
    next: g
  g:
    gather: {prompt: "Date?", variable: date}
    next: b
  b:
    say: "Noted {date}."
"""
        + GOOD_TAIL
    )
    line, _, severity, message = _one(write, text, "field")
    assert (line, severity) == (6, "warning") and "{due_date}" in message
    found = [f for f in _findings(write, text, contact_fields=["amount"]) if f[3] == "field"]
    assert sorted((f[2], f[4].split()[0]) for f in found) == [
        ("error", "{due_date}"),
        ("error", "{first_name}"),
    ]


def test_malformed_template(write) -> None:
    text = 'start: a\nnodes:\n  a:\n    say: "Hi {name!r} {"\n' + GOOD_TAIL
    line, _, severity, _ = _one(write, text, "template")
    assert (line, severity) == (4, "error")


def test_transfer_target_must_be_listed(write) -> None:
    text = (
        """start: t
transfer_targets: ["#101#", "abc"]
nodes:
  t:
    transfer: "*102#"
    on_failure: end
"""
        + GOOD_TAIL
    )
    found = sorted((f[0], f[4]) for f in _findings(write, text) if f[3] == "transfer")
    assert [line for line, _ in found] == [2, 5]
    assert "'102'" in found[1][1]


def test_clean_tree_has_no_findings(write) -> None:
    text = "start: a\nnodes:\n  a:\n    say: hi\n    next: end\n" + GOOD_TAIL
    assert _findings(write, text) == []


def test_load_raises_tree_error_with_all_problems(write) -> None:
    path = write("bad.yaml", "start: a\nnodes:\n  a: {sya: x}\n  b: {say: 1, nxt: a}\n")
    with pytest.raises(TreeError) as info:
        load(path)
    text = str(info.value)
    assert f"{path}:3:" in text and f"{path}:4:" in text
    with pytest.raises(TreeError):
        load_text("nodes: 3")


def test_unreadable_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"start: \xff\xfe\n")
    report = validate_file(bad)
    assert not report.ok and report.errors[0].code == "file"
    report = validate_file(tmp_path / "missing.yaml")
    assert not report.ok


def test_tree_files_skips_cases(tmp_path: Path) -> None:
    for name in ("a.yaml", "a.cases.yaml", "b.yml", "tests/c.yaml"):
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("x: 1\n")
    assert sorted(p.name for p in tree_files([tmp_path])) == ["a.yaml", "b.yml"]


def test_bad_menu_key_and_node_id_point_at_the_key(write) -> None:
    text = (
        "start: m\nnodes:\n  m:\n    menu:\n      prompt: P\n      items:\n"
        "        1: end\n        x: end\n  bad id:\n    hangup: x\n" + GOOD_TAIL
    )
    found = sorted((f[0], f[1], f[4]) for f in _findings(write, text) if f[3] == "value")
    assert [(line, col) for line, col, _ in found] == [(8, 9), (9, 3)]
    assert "a menu key is one of 0-9, * or #" in found[0][2]
    assert "a node id is letters" in found[1][2]


def test_bad_regular_expressions_are_load_errors(write) -> None:
    text = (
        """start: b
nodes:
  b:
    branch:
      - if: {var: x, matches: "(unclosed"}
        next: g
    else: g
  g:
    gather: {prompt: P, variable: v, pattern: "[z-a]"}
"""
        + GOOD_TAIL
    )
    found = sorted((f[0], f[4]) for f in _findings(write, text) if f[3] == "value")
    assert [line for line, _ in found] == [5, 9]
    assert "not a valid regular expression" in found[0][1]


def test_repeat_key_hiding_an_item_is_a_warning(write) -> None:
    text = (
        """start: m
nodes:
  m:
    menu:
      prompt: P
      items: {1: end, "*": end}
      repeat_key: "*"
"""
        + GOOD_TAIL
    )
    line, _, severity, message = _one(write, text, "menu")
    assert (line, severity) == (7, "warning") and "never be chosen" in message


def test_silence_loop_is_an_error(write) -> None:
    text = (
        """start: m
nodes:
  m:
    menu:
      prompt: Press 1
      items: {1: end}
      default: again
  again:
    say: Are you there?
    next: m
"""
        + GOOD_TAIL
    )
    line, _, severity, message = _one(write, text, "silence-loop")
    assert (line, severity) == (3, "error") and "m → again → m" in message


def test_silence_loop_through_gather_failure_and_a_bounded_menu_is_fine(write) -> None:
    looping = (
        """start: g
nodes:
  g:
    gather: {prompt: Code, variable: c}
    next: end
    on_failure: g
"""
        + GOOD_TAIL
    )
    assert _one(write, looping, "silence-loop")[2] == "error"
    bounded = (
        """start: m
nodes:
  m:
    menu: {prompt: P, items: {1: m, 2: end}}
"""
        + GOOD_TAIL
    )
    assert [f for f in _findings(write, bounded) if f[3] == "silence-loop"] == []


SPEECH_TREE = (
    """start: m
language: ko
nodes:
  m:
    menu:
      prompt: P
      speech: true
      items:
        1: {next: end, say: ["예", "xyzzy"]}
        2: {next: g, say: ["아니요"]}
  g:
    gather: {prompt: P, variable: v, speech: true, grammar: ["네 맞아요"]}
    next: end
"""
    + GOOD_TAIL
)


def test_speech_phrases_are_checked_against_the_real_model(write) -> None:
    found = [f for f in _findings(write, SPEECH_TREE, speech=True) if f[3] == "speech"]
    assert [(f[0], f[1]) for f in found] == [(9, 35), (12, 62)]
    assert "xyzzy" in found[0][4] and "맞아요" in found[1][4]
    assert [f for f in _findings(write, SPEECH_TREE) if f[3] == "speech"] == []


def test_missing_speech_model_is_reported_at_the_first_speech_node(write, tmp_path) -> None:
    found = _findings(write, SPEECH_TREE, speech=True, speech_model=str(tmp_path / "none"))
    speech = [f for f in found if f[3] == "speech"]
    assert len(speech) == 1 and speech[0][0] == 7 and "no such directory" in speech[0][4]
