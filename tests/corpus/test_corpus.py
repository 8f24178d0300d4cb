"""Issue 13: every tree and cases file, however broken, gets a clear located answer.

Each corpus file runs through every command that reads it (see ``harness.py``): no
traceback, no run over 5 s or 500 MB, every finding ``file:line(:col)``, and the finding
``EXPECTED.yaml`` names for that file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import (
    MAX_RSS,
    Run,
    Runner,
    check_folder,
    check_run,
    corpus_files,
    load_expected,
)

HERE = Path(__file__).resolve().parent
FOLDERS = [HERE / "trees", HERE / "cases"]


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_corpus_folder(folder: Path, runner: Runner) -> None:
    failures = check_folder(folder, runner)
    assert not failures, "\n".join(failures)


def test_corpus_is_large_and_every_file_expects_something() -> None:
    total = 0
    for folder in FOLDERS:
        _, specs = load_expected(folder)
        files = corpus_files(folder)
        total += len(files)
        for path in files:
            spec = specs[path.name]
            # a file that expects nothing must at least be declared clean (or be a
            # run-only file whose commands are named)
            assert spec.expect or spec.clean or spec.commands, path
    assert total >= 140


def test_the_console_script_path_gives_the_same_answers() -> None:
    """A few files through a fresh interpreter per run (not forked from the zygote)."""
    with Runner(cold=True) as cold:
        failures = check_folder(
            HERE / "trees",
            cold,
            only=["alias-bomb.yaml", "latin1.yaml", "date-nov-31.yaml", "deep-brackets.yaml"],
        )
    assert not failures, "\n".join(failures)


# --- the harness catches what it must ----------------------------------------------------


def _run(output: str, code: int = 1, timed_out: bool = False) -> Run:
    return Run(["prompts", "validate", "x.yaml"], code, output, 0.1, 50 * 2**20, timed_out)


def test_harness_flags_tracebacks_unlocated_findings_and_limits() -> None:
    assert check_run(_run("x.yaml:3:5: error: bad [value]\n"), clean=False) == []
    assert check_run(_run("  indented detail: error: fine\n"), clean=False) == []
    assert any("Traceback" in f for f in check_run(_run("Traceback (most recent..."), False))
    assert any("without file:line" in f for f in check_run(_run("error: no line\n"), False))
    assert any("without file:line" in f for f in check_run(_run("x.yaml: error: x\n"), False))
    assert any("exit code 3" in f for f in check_run(_run("", code=3), False))
    assert any("killed" in f for f in check_run(_run("", timed_out=True), False))
    big = Run(["x"], 0, "", 0.1, MAX_RSS + 1)
    assert any("peak memory" in f for f in check_run(big, False))
    assert any("expected clean" in f for f in check_run(_run("x.yaml:1:1: error: e\n"), True))


def test_harness_measures_a_real_child(tmp_path: Path, runner: Runner) -> None:
    """The zygote's child really runs the CLI: a missing file is an error, exit 2."""
    run = runner.run(["prompts", "validate", str(tmp_path / "missing.yaml")], tmp_path)
    assert run.code == 2 and "no such file or folder" in run.output
    assert 0 < run.max_rss < MAX_RSS and not run.timed_out
