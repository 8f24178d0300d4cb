"""Issue 13, tree side: the prompts commands answer clearly where they used to crash,
write the wrong thing or stay silent (real files, real dot, the real CLI through typer)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from autocall.cli import app
from autocall.dialogue.validate import validate_file

from .conftest import PROMPTS_DIR

runner = CliRunner()

HOURS_TREE = """\
timezone: Europe/Berlin
outcomes: [open, closed]
start: h
nodes:
  h:
    hours:
      schedule: {mon-fri: "09:00-17:00"}
    open: o
    closed: c
  o:
    hangup: open
  c:
    hangup: closed
"""


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["prompts", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


# --- output paths and formats ------------------------------------------------------------


def test_graph_and_schema_output_into_a_missing_folder_or_onto_a_folder(tmp_path: Path) -> None:
    tree = str(PROMPTS_DIR / "optout.yaml")
    code, out = _run("graph", tree, "-o", str(tmp_path / "nope" / "g.dot"))
    assert code == 2 and "does not exist; create it" in out
    code, out = _run("graph", tree, "-o", str(tmp_path))
    assert code == 2 and "this is a folder; give a file name" in out
    code, out = _run("schema", "-o", str(tmp_path / "nope" / "s.json"))
    assert code == 2 and "does not exist" in out
    code, out = _run("schema", "-o", str(tmp_path))
    assert code == 2 and "this is a folder" in out and "schema.json" in out
    assert list(tmp_path.iterdir()) == []  # nothing half-written anywhere


def test_graph_takes_the_format_from_the_extension(tmp_path: Path) -> None:
    tree = str(PROMPTS_DIR / "optout.yaml")
    assert _run("graph", tree, "-o", str(tmp_path / "g.svg"))[0] == 0
    assert b"<svg" in (tmp_path / "g.svg").read_bytes()  # Graphviz SVG, not Mermaid text
    assert _run("graph", tree, "-o", str(tmp_path / "g.png"))[0] == 0
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _run("graph", tree, "-o", str(tmp_path / "g.dot"))[0] == 0
    assert (tmp_path / "g.dot").read_text().startswith("digraph")
    assert _run("graph", tree, "-o", str(tmp_path / "g.mmd"))[0] == 0
    assert (tmp_path / "g.mmd").read_text().startswith("flowchart")
    code, out = _run("graph", tree, "-o", str(tmp_path / "g.jpeg"))
    assert code == 2 and "unknown picture extension '.jpeg'" in out
    code, out = _run("graph", tree, "--format", "dot", "-o", str(tmp_path / "x.svg"))
    assert code == 2 and "the extension .svg means svg" in out


# --- validate ------------------------------------------------------------------------------


def test_validate_recognises_cases_files_by_content() -> None:
    """`prompts validate prompts/*.yaml` names the cases files too: they are not trees."""
    files = sorted(str(p) for p in PROMPTS_DIR.glob("*.yaml"))
    assert any(f.endswith(".cases.yaml") for f in files)
    code, out = _run("validate", *files)
    assert code == 0, out
    assert "5 tree(s), 5 cases file(s): 0 error(s), 0 warning(s)" in out


def test_a_cases_file_naming_a_missing_tree_is_located(write) -> None:
    cases = write("x.cases.yaml", "tree: gone.yaml\ncases:\n  - name: a\n    expect: {}\n")
    code, out = _run("validate", str(cases))
    assert code == 1 and f"{cases}:1:7: error: tree 'gone.yaml' not found" in out


def test_folder_validation_goes_on_past_broken_files(write) -> None:
    write("a-deep.yaml", "start: a\nnodes:\n  a:\n    say: " + "[" * 10000 + "]" * 10000 + "\n")
    write("b-date.yaml", "start: a\nnodes:\n  a:\n    say: hi\n    note: 2026-11-31\n")
    good = write("c-good.yaml", "start: a\nnodes:\n  a:\n    say: hi\n")
    code, out = _run("validate", str(good.parent))
    assert code == 1
    assert "a-deep.yaml:4:" in out and "nests more than 64" in out
    assert "b-date.yaml:5:11: error: cannot read value '2026-11-31'" in out
    assert "c-good.yaml" not in out and "3 tree(s): 2 error(s)" in out


def test_outcome_typo_is_an_error_with_did_you_mean(write) -> None:
    """hangup: optout would never add the caller to the do-not-call list."""
    tree = write(
        "t.yaml", "start: a\nnodes:\n  a:\n    say: Bye.\n    next: b\n  b:\n    hangup: optout\n"
    )
    report = validate_file(tree)
    [problem] = report.errors
    assert (problem.line, problem.column, problem.code) == (7, 13, "outcome")
    assert "did you mean 'opt-out'" in problem.message
    declared = write("d.yaml", "outcomes: [optin]\nstart: b\nnodes:\n  b:\n    hangup: optin\n")
    assert validate_file(declared).ok  # a declared custom outcome is fine


def test_template_typo_suggests_the_declared_field(write) -> None:
    tree = write(
        "t.yaml",
        'contact_fields: [first_name]\nstart: a\nnodes:\n  a:\n    say: "Hi {firstname}"\n',
    )
    [warning] = validate_file(tree).warnings
    assert (warning.line, warning.column) == (5, 10)
    assert "did you mean {first_name}?" in warning.message


# --- simulate and test ---------------------------------------------------------------------


def test_simulate_warns_for_declared_contact_fields_without_var() -> None:
    tree = str(PROMPTS_DIR / "informer.yaml")
    code, out = _run("simulate", tree, "--input", "1")
    assert code == 0
    assert f"{tree}:4:18: warning: contact field 'first_name' has no value" in out
    assert "--var first_name=" in out
    code, out = _run("simulate", tree, "--input", "1", "--var", "first_name=Ann")
    assert code == 0 and "warning" not in out


def test_simulate_and_test_run_a_tree_with_an_unclosed_brace(write) -> None:
    tree = write("t.yaml", 'start: a\nnodes:\n  a:\n    say: "Hello {first_name, bye"\n')
    cases = write("t.cases.yaml", "cases:\n  - name: a\n    expect: {outcome: completed}\n")
    code, out = _run("simulate", str(tree), "--input", "1", "--json")
    assert code == 0 and f"{tree}:4:10: error: malformed template" in out
    assert "Hello {first_name, bye" in out  # spoken as written, braces and all
    code, out = _run("test", str(tree), str(cases))
    assert code == 0 and "1 passed" in out
    code, out = _run("render", "--dry-run", str(tree))
    assert code == 1 and "1 malformed" in out


def test_cases_without_at_run_on_a_weekday_daytime_and_say_so(write) -> None:
    tree = write("office.yaml", HOURS_TREE)
    cases = write(
        "office.cases.yaml",
        "tree: office.yaml\ncases:\n  - name: no time given\n    expect: {outcome: open}\n",
    )
    code, out = _run("test", str(cases))
    assert code == 0, out  # was the Unix epoch: a Thursday night, always closed
    assert "note: 1 case(s) without at: run on Wednesday 2026-01-07 10:00 (Europe/Berlin)" in out
    code, out = _run("test", str(tree), str(cases), "--json")
    assert json.loads(out)["cases"][0]["default_time"] is True


def test_a_tree_given_to_test_runs_the_cases_beside_it() -> None:
    code, out = _run("test", str(PROMPTS_DIR / "informer.yaml"))
    assert code == 0 and "6 passed, 0 failed" in out
