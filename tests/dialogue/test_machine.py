"""A tree's ``machine:`` node: what an answering machine hears after its beep (issue 16).

Engine, simulator, cases, validate, graph and the AMD options the calls use.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autocall.cli import app
from autocall.dialogue.engine import Engine, Hangup, PromptFinished, Say
from autocall.dialogue.graph import to_dot, to_mermaid
from autocall.dialogue.loader import load_text
from autocall.dialogue.schema import machine_action
from autocall.dialogue.simulate import Simulator
from autocall.dialogue.validate import validate_file
from autocall.telephony.answer import AmdOptions

TREE = """\
name: dentist
contact_fields: [name]
start: hello
machine: voicemail
nodes:
  hello:
    menu:
      prompt: "Press 1 to confirm your appointment."
      items: {1: confirmed}
    on_failure: bye
  confirmed: {hangup: completed}
  bye: {hangup: no-input}
  voicemail:
    say: "Hello {name}, this is your dentist. Please call us back."
    next: left
  left: {hangup: left-message}
"""


def _tree(text: str = TREE):
    return load_text(text)


def _said(actions: list[object]) -> list[str]:
    return [a.text for a in actions if isinstance(a, Say)]


def test_a_machine_starts_at_the_machine_node_and_a_person_at_start() -> None:
    tree = _tree()
    machine = Engine(tree, {"name": "Ann"}, answered_by="machine")
    first = machine.start(0.0)
    assert _said(first) == ["Hello Ann, this is your dentist. Please call us back."]
    assert machine.handle(PromptFinished(), 5.0) == [Hangup("left-message")]
    assert machine.path == ["voicemail", "left"] and machine.outcome == "left-message"
    person = Engine(tree, {"name": "Ann"}, answered_by="human")
    assert _said(person.start(0.0)) == ["Press 1 to confirm your appointment."]
    assert person.path == ["hello"] and person.variables["answered_by"] == "human"


def test_answered_by_is_a_call_fact_no_contact_field_overrides() -> None:
    engine = Engine(_tree(), {"answered_by": "human"}, answered_by="machine")
    engine.start(0.0)
    assert engine.variables["answered_by"] == "machine" and engine.node == "voicemail"
    plain = Engine(_tree())  # no detection: no variable, the tree's start
    plain.start(0.0)
    assert "answered_by" not in plain.variables and plain.node == "hello"


def test_a_tree_without_machine_node_gives_a_machine_its_start() -> None:
    tree = _tree(TREE.replace("machine: voicemail\n", ""))
    engine = Engine(tree, answered_by="machine")
    engine.start(0.0)
    assert engine.path == ["hello"]


def test_a_fax_is_hung_up_on_before_any_node() -> None:
    engine = Engine(_tree(), answered_by="fax")
    assert engine.start(0.0) == [Hangup("fax")]
    assert engine.path == [] and engine.outcome == "fax" and engine.finished


@pytest.mark.parametrize(
    ("machine", "nodes", "action"),
    [
        ("voicemail", "", "message"),
        ("hang", "  hang: {hangup: machine}\n", "hangup"),
        ("jump", "  jump: {goto: hang}\n  hang: {hangup: machine}\n", "hangup"),
        ("loop", "  loop: {goto: loop}\n", "message"),  # validate reports the loop
        (None, "", None),
    ],
)
def test_machine_action_tells_message_from_hangup(
    machine: str | None, nodes: str, action: str | None
) -> None:
    text = TREE.replace("machine: voicemail\n", f"machine: {machine}\n" if machine else "")
    assert machine_action(_tree(text + nodes)) == action


def test_the_trees_machine_word_overrides_on_machine_and_silence_keeps_it() -> None:
    leaves = _tree()
    hangs_up = _tree(TREE.replace("machine: voicemail", "machine: bye"))
    silent = _tree(TREE.replace("machine: voicemail\n", ""))
    hangup = AmdOptions(on_machine="hangup")
    assert hangup.for_tree(leaves).on_machine == "message"
    assert hangup.for_tree(silent) is hangup
    message = AmdOptions(on_machine="message")
    assert message.for_tree(hangs_up).on_machine == "hangup"
    assert message.for_tree(hangs_up).config == message.config
    assert message.for_tree(silent) is message


def test_simulator_and_cases_run_the_machine_path(write) -> None:
    result = Simulator(_tree(), {"name": "Bo"}, answered_by="machine").run([])
    assert (result.path, result.outcome) == (["voicemail", "left"], "left-message")
    tree = write("t.yaml", TREE)
    cases = write(
        "t.cases.yaml",
        "cases:\n"
        "  - name: voicemail\n"
        "    answered_by: machine\n"
        "    expect: {path: [voicemail, left], outcome: left-message}\n"
        "  - name: wrong\n"
        "    answered_by: machine\n"
        "    expect: {path: [hello]}\n",
    )
    done = CliRunner().invoke(app, ["prompts", "test", str(tree), str(cases)])
    assert done.exit_code == 1, done.output
    assert "PASS" in done.output and "voicemail → left" in done.output


def test_cases_reject_an_unknown_answered_by(write) -> None:
    tree = write("t.yaml", TREE)
    cases = write(
        "t.cases.yaml",
        "cases:\n  - name: x\n    answered_by: robot\n    expect: {outcome: x}\n",
    )
    done = CliRunner().invoke(app, ["prompts", "test", str(tree), str(cases)])
    assert done.exit_code != 0
    assert "t.cases.yaml:3" in done.output and "machine" in done.output, done.output


def test_simulate_answered_by_on_the_command_line(write) -> None:
    tree = write("t.yaml", TREE)
    done = CliRunner().invoke(
        app, ["prompts", "simulate", str(tree), "--answered-by", "machine", "--json"]
    )
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["path"] == ["voicemail", "left"] and result["outcome"] == "left-message"
    assert result["transcript"][0]["kind"] == "answered"
    assert "after the beep" in result["transcript"][0]["text"]
    bad = CliRunner().invoke(app, ["prompts", "simulate", str(tree), "--answered-by", "robot"])
    assert bad.exit_code == 2 and "human, machine, fax, unknown" in bad.output
    fax = CliRunner().invoke(app, ["prompts", "simulate", str(tree), "--answered-by", "fax"])
    assert fax.exit_code == 0 and "outcome:   fax" in fax.output


def _problems(write, text: str) -> list[tuple[int, int, str, str, str]]:
    report = validate_file(write("tree.yaml", text))
    return [(p.line, p.column, p.severity, p.code, p.message) for p in report.problems]


def test_validate_a_machine_node_that_does_not_exist(write) -> None:
    found = _problems(write, TREE.replace("machine: voicemail", "machine: voicemial"))
    dangling = [f for f in found if f[3] == "dangling"]
    assert dangling == [
        (
            4,
            10,
            "error",
            "dangling",
            "machine 'voicemial' is not a node of this tree; did you mean 'voicemail'?",
        )
    ]


def test_validate_nodes_only_the_machine_reaches_are_reachable(write) -> None:
    assert _problems(write, TREE) == []
    unset = _problems(write, TREE.replace("machine: voicemail\n", ""))
    assert [(f[0], f[3]) for f in unset] == [(12, "unreachable"), (15, "unreachable")]
    assert "from start 'hello'" in unset[0][4]


def test_validate_warns_of_a_machine_path_that_waits_for_keys(write) -> None:
    text = TREE.replace("machine: voicemail", "machine: ask") + (
        "  ask:\n"
        "    menu:\n"
        "      prompt: Press 1 to call back.\n"
        "      items: {1: agent}\n"
        "    on_failure: voicemail\n"  # silent: on to the message, which is fine
        "  agent: {transfer: '200'}\n"  # only on a key: no warning
        "transfer_targets: ['200']\n"
    )
    found = [f for f in _problems(write, text) if f[3] == "machine"]
    assert [(f[0], f[2]) for f in found] == [(17, "warning")], found
    assert "menu 'ask'" in found[0][4] and "never presses" in found[0][4]


@pytest.mark.parametrize(
    ("node", "word"),
    [
        ("{record: {max_seconds: 5}, next: left}", "record"),
        ("{transfer: '200', next: left}", "voicemail box"),
        ("{gather: {prompt: Your code, variable: code, min_digits: 0}, next: left}", "keys"),
    ],
)
def test_validate_warns_of_records_transfers_and_gathers_a_machine_reaches(
    write, node: str, word: str
) -> None:
    text = TREE.replace("next: left", "next: extra") + f"  extra: {node}\n"
    text += "transfer_targets: ['200']\n"
    found = [f for f in _problems(write, text) if f[3] == "machine"]
    assert len(found) == 1 and found[0][0] == 17 and word in found[0][4], found


def test_graph_draws_the_machine_entry(tmp_path: Path) -> None:
    tree = _tree()
    mermaid = to_mermaid(tree)
    assert "machine((machine)) -->|after the beep| n3" in mermaid
    dot = to_dot(tree)
    assert '"__machine" -> "voicemail" [label="after the beep"];' in dot
    assert "__machine" not in to_dot(_tree(TREE.replace("machine: voicemail\n", "")))
