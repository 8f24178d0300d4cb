"""`autocall campaign …` end to end through typer with a real SQLite file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from autocall.cli import app

EXAMPLES = Path(__file__).parents[2] / "campaigns"
SURVEY = EXAMPLES.parent / "prompts" / "survey.yaml"


def _examples(tmp_path: Path) -> Path:
    for name in ("example.yaml", "example-contacts.csv", "example-dnc.txt"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    text = (tmp_path / "example.yaml").read_text()
    # Let the CLI test dial whenever it runs: every day, a window widened on purpose.
    text = text.replace("tree: ../prompts/survey.yaml", f"tree: {SURVEY}")
    text = text.replace("  days: [mon, tue, wed, thu, fri, sat]",
                        "  days: [mon, tue, wed, thu, fri, sat, sun]")
    text = text.replace('  start: "09:00"', '  start: "00:00"\n  override_legal_hours: true')
    text = text.replace('  end: "20:00"', '  end: "23:59:59.999999"')
    text = text.replace("calls_per_second: 2", "calls_per_second: 50")
    (tmp_path / "example.yaml").write_text(text)
    return tmp_path / "example.yaml"


def test_validate_reports_rows_and_yaml_lines(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["campaign", "validate", str(EXAMPLES / "example.yaml"),
                                 "--json"])
    data = json.loads(result.output)
    assert result.exit_code == 1  # the example list has bad rows on purpose
    assert data["contacts"] == 7
    assert any("example-contacts.csv:8" in p for p in data["problems"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntree: t\ncaller_ids: [a]\nchannels: many\n")
    result = runner.invoke(app, ["campaign", "validate", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:4:11: error: channels" in result.output


def test_import_run_status_explain_report(tmp_path: Path) -> None:
    yaml = _examples(tmp_path)
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    result = runner.invoke(app, ["campaign", "import", str(yaml), "--db", db, "--json",
                                 "--rejects", str(tmp_path / "rejects.csv")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["added"], data["duplicates"], len(data["rejected"])) == (7, 1, 4)
    assert data["dnc"] == 1
    # header + 4 rejected + the duplicate (issue 13: every duplicate is listed)
    assert (tmp_path / "rejects.csv").read_text().count("\n") == 6

    result = runner.invoke(app, ["campaign", "explain", "spring-survey", "202 555 0143",
                                 "--db", db, "--json"])
    assert result.exit_code == 1
    assert any("draft" in line for line in json.loads(result.output)["reasons"])

    result = runner.invoke(app, ["campaign", "pause", "spring-survey", "--db", db])
    assert result.exit_code == 1 and "draft" in result.output  # nothing to pause yet

    result = runner.invoke(app, ["campaign", "run", "spring-survey", "--db", db,
                                 "--placer", "farend:answer_all", "--json"])
    assert result.exit_code == 0, result.output
    final = json.loads(result.output.strip().splitlines()[-1])
    assert final["state"] == "completed" and final["dialed"] == 6  # one is on the DNC list

    result = runner.invoke(app, ["campaign", "status", "spring-survey", "--db", db, "--json"])
    status = json.loads(result.output)
    assert status["outcomes"] == {"completed": 6, "dnc": 1}

    result = runner.invoke(app, ["campaign", "explain", "spring-survey", "+13055550122",
                                 "--db", db])
    assert result.exit_code == 1 and "dnc" in result.output

    result = runner.invoke(app, ["campaign", "report", "spring-survey", "--db", db,
                                 "--format", "json", "--cdr", str(tmp_path / "cdr.csv"),
                                 "--charts", str(tmp_path / "charts")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["answered"] == 6 and report["completion_rate"] == 6 / 7
    assert (tmp_path / "cdr.csv").read_text().count("\n") == 7
    assert len(list((tmp_path / "charts").glob("*.png"))) == 2

    result = runner.invoke(app, ["campaign", "stop", "nope", "--db", db, "--yes"])
    assert result.exit_code == 2 and "no campaign" in result.output


def test_help_has_examples() -> None:
    runner = CliRunner()
    for cmd in ("validate", "import", "run", "status", "pause", "resume", "stop", "report",
                "explain"):
        result = runner.invoke(app, ["campaign", cmd, "--help"])
        assert result.exit_code == 0 and "Example" in result.output, cmd


def test_validate_checks_tree_fields_against_columns(tmp_path: Path) -> None:
    yaml = _examples(tmp_path)
    csv_path = tmp_path / "example-contacts.csv"
    csv_path.write_text(csv_path.read_text().replace("first_name", "given", 1))
    result = CliRunner().invoke(app, ["campaign", "validate", str(yaml), "--json"])
    problems = json.loads(result.output)["problems"]
    assert result.exit_code == 1
    assert any("no column for the tree's field(s) first_name" in p for p in problems)


def test_final_json_of_a_finished_campaign_waits_for_nothing(tmp_path: Path) -> None:
    """Issue 12: the last --json line said "waiting for 1 call(s) in flight to end"."""
    yaml = _examples(tmp_path)
    db = f"sqlite:///{tmp_path / 'final.db'}"
    runner = CliRunner()
    assert runner.invoke(app, ["campaign", "import", str(yaml), "--db", db]).exit_code == 0
    result = runner.invoke(app, ["campaign", "run", "spring-survey", "--db", db,
                                 "--placer", "farend:answer_all", "--json"])
    assert result.exit_code == 0, result.output
    final = json.loads(result.output.strip().splitlines()[-1])
    assert (final["state"], final["in_progress"], final["waiting"]) == ("completed", 0, 0)
    assert final["idle"] == "campaign is completed"
