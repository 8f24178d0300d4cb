"""The example trees in prompts/ validate clean and pass their own cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from autocall.dialogue.loader import load
from autocall.dialogue.testing import run_cases, tree_for_cases
from autocall.dialogue.validate import tree_files, validate_file

from .conftest import PROMPTS_DIR

TREES = tree_files([PROMPTS_DIR])
CASES = sorted(PROMPTS_DIR.glob("*.cases.yaml"))


def test_every_example_named_in_the_issue_exists() -> None:
    names = {p.stem for p in TREES}
    assert {"survey", "informer", "office", "reminder", "optout"} <= names
    assert {p.name.removesuffix(".cases.yaml") for p in CASES} >= names


@pytest.mark.parametrize("tree", TREES, ids=lambda p: p.stem)
def test_example_validates_clean(tree: Path) -> None:
    report = validate_file(tree)
    assert report.problems == [], "\n".join(map(str, report.problems))


@pytest.mark.parametrize("cases", CASES, ids=lambda p: p.name)
def test_example_cases_pass(cases: Path) -> None:
    named = tree_for_cases(cases)
    assert named is not None
    report = run_cases(load(named), cases)
    failed = {r.name: r.failures for r in report.results if not r.passed}
    assert not failed
    assert len(report.results) >= 4


def test_opt_out_examples_end_with_the_dnc_outcome() -> None:
    """Each outbound example offers 9 to stop the calls, ending in outcome opt-out."""
    for name in ("survey", "reminder", "optout"):
        tree = load(PROMPTS_DIR / f"{name}.yaml")
        outcomes = {getattr(n, "outcome", None) for n in tree.nodes.values()}
        assert "opt-out" in outcomes, name
