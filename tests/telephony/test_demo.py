"""`autocall demo` end to end with a few contacts: real SIP/RTP, store, CSV, report."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autocall.campaign.store import attempts as attempts_table
from autocall.cli import app

pytestmark = pytest.mark.peers


def test_demo_dials_every_contact_and_leaves_store_and_csv(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--contacts", "8",
                                      "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["unexpected"] == []
    assert report["contacts"] == 8
    # persona 5 is busy then answers; persona 7 never answers (2 attempts each)
    assert report["attempts"] == 10
    assert report["outcomes"] == {"completed": 6, "no-answer": 1, "opt-out": 1}
    assert sorted(report["scores"]) == ["3", "7"]
    assert report["seconds"] < 60
    assert report["campaign"].startswith("demo-")
    with sqlite3.connect(tmp_path / "autocall.db") as db:
        (n,) = db.execute(f"select count(*) from {attempts_table.name} where campaign = ?",
                          (report["campaign"],)).fetchone()
    assert n == 10
    with (tmp_path / "autocall-demo-calls.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 10
    inband = [r for r in rows if r["number"] == "+12025550102"]
    assert inband[0]["digits"] == "1" and inband[0]["path"].endswith("happy > thanks")
    assert {r["status"] for r in rows} == {"completed", "busy", "no-answer"}


def test_a_second_run_adds_a_campaign_and_keeps_the_first(tmp_path: Path) -> None:
    runner = CliRunner()
    names = []
    for _ in range(2):
        result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--contacts", "2",
                                     "--json"])
        assert result.exit_code == 0, result.output
        names.append(json.loads(result.stdout[result.stdout.index("{"):])["campaign"])
    assert names[0] != names[1]
    with sqlite3.connect(tmp_path / "autocall.db") as db:
        counts = dict(db.execute(f"select campaign, count(*) from {attempts_table.name} "
                                 "group by campaign").fetchall())
    assert counts == {names[0]: 2, names[1]: 2}
