"""`autocall prompts …` end to end through typer (real files, real dot, real espeak-ng)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autocall.cli import app

from .conftest import PROMPTS_DIR

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["prompts", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_every_command_has_help_with_an_example() -> None:
    for command in ("schema", "validate", "simulate", "test", "graph", "render"):
        code, out = _run(command, "--help")
        assert code == 0 and "Example:" in out, command


def test_schema_is_json_schema_of_the_tree(tmp_path: Path) -> None:
    code, out = _run("schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"start", "nodes"} <= set(schema["required"])
    assert schema["additionalProperties"] is False
    for node in ("SayNode", "PlayNode"):  # editors offer it, and flag `skippable: no`
        option = schema["$defs"][node]["properties"]["skippable"]
        assert option["type"] == "boolean" and option["default"] is True
    target = tmp_path / "s.json"
    assert _run("schema", "-o", str(target))[0] == 0
    assert json.loads(target.read_text()) == schema


def test_validate_examples_clean_and_bad_tree_exit_1(write) -> None:
    code, out = _run("validate", str(PROMPTS_DIR))
    assert code == 0 and "0 error(s)" in out
    bad = write("bad.yaml", "start: a\nnodes:\n  a:\n    say: hi\n    next: b\n")
    code, out = _run("validate", str(bad))
    assert code == 1 and f"{bad}:5:11: error:" in out
    code, out = _run("validate", "--json", str(bad))
    data = json.loads(out)
    assert code == 1 and data["errors"] == 1
    assert data["files"][0]["problems"][0]["line"] == 5


def test_validate_warnings_alone_pass(write) -> None:
    tree = write("w.yaml", "start: a\nnodes:\n  a: {hangup: completed}\n  b: {hangup: opt-out}\n")
    code, out = _run("validate", str(tree))
    assert code == 0 and "1 warning(s)" in out


def test_validate_with_contacts_header(write) -> None:
    tree = write("t.yaml", 'start: a\nnodes:\n  a:\n    say: "Hi {first_name} {amount}"\n')
    contacts = write("c.csv", "number,first_name\n+15550100,Ann\n")
    code, out = _run("validate", "--contacts", str(contacts), str(tree))
    assert code == 1 and "{amount} is not a column" in out
    code, _ = _run("validate", "--fields", "first_name,amount", str(tree))
    assert code == 0


def test_validate_missing_path_is_usage_error() -> None:
    assert _run("validate", "/nonexistent/tree.yaml")[0] == 2


def test_simulate_scripted_shows_prompts_and_path() -> None:
    code, out = _run(
        "simulate",
        str(PROMPTS_DIR / "informer.yaml"),
        "--var",
        "first_name=Ann",
        "--input",
        "2,1",
    )
    assert code == 0
    assert "Hello Ann" in out
    assert "path:      message → confirm → message → confirm → confirmed → confirmed_end" in out
    assert "outcome:   confirmed" in out


def test_simulate_json_and_time_of_day() -> None:
    code, out = _run(
        "simulate",
        str(PROMPTS_DIR / "office.yaml"),
        "--at",
        "2026-11-22T11:00",
        "--json",
    )
    data = json.loads(out)
    assert code == 0 and data["path"][:2] == ["hours", "after_hours"]
    assert data["outcome"] == "voicemail"
    assert any(step["kind"] == "record" for step in data["transcript"])


def test_simulate_reads_piped_input() -> None:
    result = runner.invoke(
        app, ["prompts", "simulate", str(PROMPTS_DIR / "optout.yaml")], input="9\n"
    )
    assert result.exit_code == 0 and "outcome:   opt-out" in result.output


def test_simulate_bad_inputs_are_usage_errors(write) -> None:
    tree = str(PROMPTS_DIR / "informer.yaml")
    assert _run("simulate", tree, "--var", "novalue", "--input", "1")[0] == 2
    assert _run("simulate", tree, "--at", "yesterday", "--input", "1")[0] == 2
    broken = write("broken.yaml", "start: [\n")
    code, out = _run("simulate", str(broken), "--input", "1")
    assert code == 2 and "YAML syntax" in out


def test_simulate_runaway_loop_exits_1(write) -> None:
    tree = write("loop.yaml", "start: a\nnodes:\n  a: {say: x, next: b}\n  b: {goto: a}\n")
    code, out = _run("simulate", str(tree), "--input", "")
    assert code == 1 and "step limit" in out


def test_test_command_reports_pass_and_fail(write) -> None:
    tree = str(PROMPTS_DIR / "informer.yaml")
    code, out = _run("test", tree, str(PROMPTS_DIR / "informer.cases.yaml"))
    assert code == 0 and "6 passed, 0 failed" in out
    cases = write(
        "wrong.cases.yaml",
        "cases:\n  - name: expects the wrong outcome\n    input: [1]\n"
        "    expect: {outcome: declined, variables: {x: '1'}}\n",
    )
    code, out = _run("test", tree, str(cases))
    assert code == 1
    assert f"FAIL {cases}:2: expects the wrong outcome" in out
    assert "outcome: expected 'declined', got 'confirmed'" in out
    assert "variable x: expected '1', got None" in out
    code, out = _run("test", "--json", tree, str(cases))
    data = json.loads(out)
    assert data["failed"] == 1 and data["cases"][0]["result"]["outcome"] == "confirmed"


def test_test_command_locates_bad_cases_files(write) -> None:
    tree = str(PROMPTS_DIR / "informer.yaml")
    cases = write("bad.cases.yaml", "cases:\n  - name: x\n    inptu: [1]\n    expect: {}\n")
    code, out = _run("test", tree, str(cases))
    assert code == 2 and f"{cases}:3:5:" in out and "did you mean 'input'" in out


def test_graph_text_formats(tmp_path: Path) -> None:
    tree = str(PROMPTS_DIR / "office.yaml")
    code, out = _run("graph", tree)
    assert code == 0 and out.startswith("flowchart TD") and "-->|1 'sales'|" in out
    code, out = _run("graph", tree, "--format", "dot")
    assert code == 0 and out.startswith('digraph "office"') and '[label="closed"]' in out
    assert _run("graph", tree, "--format", "gif")[0] == 2


def test_graph_svg_and_png_via_graphviz(tmp_path: Path) -> None:
    if shutil.which("dot") is None:
        pytest.fail("graphviz is not installed: scripts/setup.sh installs it")
    tree = str(PROMPTS_DIR / "reminder.yaml")
    svg, png = tmp_path / "r.svg", tmp_path / "r.png"
    assert _run("graph", tree, "-f", "svg", "-o", str(svg))[0] == 0
    assert _run("graph", tree, "-f", "png", "-o", str(png))[0] == 0
    assert b"<svg" in svg.read_bytes() and "ask_date" in svg.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_render_offline_reports_rendered_cached_and_runtime(write, tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: run scripts/test.sh, which installs it")
    tree = write(
        "r.yaml",
        'start: a\nnodes:\n  a:\n    say: ["Hello there.", "Hi {first_name}."]\n'
        "    next: b\n  b:\n    say: Goodbye.\n",
    )
    cache = tmp_path / "cache"
    code, out = _run("render", "--offline", "--cache-dir", str(cache), "--json", str(tree))
    data = json.loads(out)
    assert code == 0, out
    assert data["counts"] == {"rendered": 2, "cached": 0, "failed": 0, "runtime": 1}
    assert {p["engine"] for p in data["prompts"] if p["status"] == "rendered"} == {"espeak-ng"}
    assert all(Path(p["path"]).is_file() for p in data["prompts"] if p["path"])
    code, out = _run("render", "--offline", "--cache-dir", str(cache), str(tree))
    assert code == 0 and "0 rendered, 2 cached, 0 failed, 1 runtime" in out


def test_examples_and_mistakes_under_the_exported_schema() -> None:
    """What an editor would say: the examples pass, a misspelt key or a bad verb fails."""
    import jsonschema
    from ruamel.yaml import YAML

    from autocall.dialogue.schema import json_schema

    validator = jsonschema.Draft202012Validator(json_schema())
    yaml = YAML(typ="safe")
    for path in sorted(PROMPTS_DIR.glob("*.yaml")):
        if path.name.endswith(".cases.yaml"):
            continue
        data = json.loads(json.dumps(yaml.load(path.read_text()), default=str))
        errors = [e.message for e in validator.iter_errors(data)]
        assert errors == [], (path.name, errors)
    for bad in (
        {"start": "a", "nodes": {"a": {"say": "x", "nxt": "b"}}},
        {"start": "a", "nodes": {"a": {"sya": "x"}}},
        {"start": "a", "nodes": {"a": {"menu": {"prompt": "p", "items": {"x": "a"}}}}},
        {"start": "a", "nodes": {"a": {"gather": {"prompt": "p"}}}},
        {"nodes": {"a": {"hangup": None}}},
    ):
        assert not validator.is_valid(bad), bad


def test_simulate_play_falls_back_to_showing_without_a_sound_card(tmp_path: Path) -> None:
    """--play renders through the TTS cache and plays with sox; no device is not fatal."""
    if shutil.which("play") is None or shutil.which("espeak-ng") is None:
        pytest.fail("sox and espeak-ng are installed by scripts/setup.sh --test")
    tree = tmp_path / "t.yaml"
    tree.write_text("start: a\nnodes:\n  a:\n    say: Short test.\n")
    result = runner.invoke(
        app,
        ["prompts", "simulate", str(tree), "--input", "", "--play"],
        env={
            "AUTOCALL_TTS_CACHE": str(tmp_path / "cache"),
            "AUTOCALL_GTTS_URL": "http://127.0.0.1:9",
        },
    )
    assert result.exit_code == 0, result.output
    assert "Short test." in result.output and "outcome:   completed" in result.output
    assert list((tmp_path / "cache").glob("*.wav"))


def test_test_command_runs_a_whole_folder(write) -> None:
    code, out = _run("test", str(PROMPTS_DIR))
    total = sum(out.count(f"PASS {p}") for p in map(str, PROMPTS_DIR.glob("*.cases.yaml")))
    assert code == 0 and total >= 25 and "0 failed" in out
    orphan = write("lost.cases.yaml", "cases:\n  - name: x\n    expect: {}\n")
    code, out = _run("test", str(orphan))
    assert code == 2 and "say which tree it tests" in out
