"""Property (issue 13): valid trees mutated as a careless editor would (a key deleted,
duplicated, retyped or re-indented) never crash, hang or bloat a command, and every
finding is located.

The mutations work on the YAML text, so they also make what the loader sees first:
duplicate keys, bad indentation, impossible dates, aliases without anchors. Each mutated
file runs as its own process through ``validate``, ``simulate`` and ``graph`` (the
corpus harness's rules), and through the in-process validator, whose every problem
must sit on a line of the file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autocall.dialogue.validate import validate_file

from .harness import Runner, check_run
from .mutate import mutate

ROOT = Path(__file__).resolve().parents[2]
VALID = {
    p.name: p.read_text(encoding="utf-8")
    for p in [
        *sorted((ROOT / "prompts").glob("*.yaml")),
        ROOT / "tests" / "corpus" / "trees" / "good-base.yaml",
        ROOT / "tests" / "corpus" / "trees" / "good-hours.yaml",
    ]
    if not p.name.endswith(".cases.yaml")
}

VALUES = [
    "",
    " 42",
    " -1",
    " 1e400",
    " true",
    " no",
    " ~",
    " []",
    " {}",
    " [a, [b, {c: d}]]",
    ' "Hello {first_name"',
    " 2026-02-30",
    " 2026-13-01T25:00",
    " optout",
    " opted-out",
    " &x hello",
    " *x",
    " !!str 7",
    " !!python/object:os.system x",
    " 'unclosed",
    " [",
    " {",
    " 99999999999999999999",
    " ../../etc/passwd",
    " |\n  block text",
]

@st.composite
def mutated_tree(draw: st.DrawFn) -> tuple[str, str]:
    _, text, how = mutate(draw, VALID, VALUES)
    return text, how


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=mutated_tree())
def test_mutated_trees_get_located_answers(case: tuple[str, str], runner: Runner) -> None:
    text, how = case
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        folder = Path(tmp)
        tree = folder / "mutant.yaml"
        tree.write_text(text, encoding="utf-8")
        n_lines = text.count("\n") + 1

        report = validate_file(tree)  # in-process: never raises, every problem on a line
        for problem in report.problems:
            assert 1 <= problem.line <= n_lines and problem.column >= 1, (how, problem)

        for argv in (
            ["prompts", "validate", str(tree)],
            ["prompts", "simulate", str(tree), "--input", "1,2,t,h"],
            ["prompts", "graph", str(tree), "-o", str(folder / "g.dot")],
        ):
            run = runner.run(argv, folder)
            failures = check_run(run, clean=False)
            assert not failures, f"{how}: {argv[1]}: {failures}\n--- mutant:\n{text}"
            if argv[1] == "validate":
                assert run.code == (1 if report.errors else 0), (how, run.output)
