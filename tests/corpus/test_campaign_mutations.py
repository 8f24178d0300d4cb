"""Property (issue 13): valid campaigns mutated as a careless editor would (a key
deleted, duplicated, retyped or re-indented) never crash, hang or bloat ``campaign
validate`` / ``campaign import``, and every finding is located (file:line:col).

Mutations work on the YAML text (as ``test_mutations.py`` does for trees), so they also
make duplicate keys, bad indentation, impossible dates and aliases without anchors.
Each mutant runs as its own process through the corpus harness's rules, and through the
in-process loader, whose every problem must name a line of the file.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autocall.campaign.check import check_campaign
from autocall.campaign.model import CampaignError, load_campaign

from .harness import Runner, check_run
from .mutate import mutate

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "corpus" / "campaigns"
VALID = {
    "example.yaml": (ROOT / "campaigns" / "example.yaml").read_text(encoding="utf-8"),
    "good.yaml": (CORPUS / "good.yaml").read_text(encoding="utf-8"),
    "good-mapped-columns.yaml": (CORPUS / "good-mapped-columns.yaml").read_text(encoding="utf-8"),
}
SUPPORT = {
    "example.yaml": [
        ROOT / "campaigns" / "example-contacts.csv",
        ROOT / "campaigns" / "example-dnc.txt",
    ],
    "good.yaml": sorted(CORPUS.glob("_*")),
    "good-mapped-columns.yaml": sorted(CORPUS.glob("_*")),
}

_LOCATED = re.compile(r"^(?P<file>\S[^:]*?):(?P<line>\d+):(?P<col>\d+): (error|warning): ")

VALUES = [
    "",
    " 42",
    " -1",
    " 0",
    " 1e400",
    " true",
    " no",
    " ~",
    " []",
    " {}",
    " [a, [b, {c: d}]]",
    " 2026-02-30",
    " 2026-13-01T25:00",
    " 25:61",
    ' "09:00"',
    " &x hello",
    " *x",
    " !!str 7",
    " !!python/object:os.system x",
    " 'unclosed",
    " [",
    " {",
    " 99999999999999999999",
    " ../../etc/passwd",
    " /dev/zero",
    " Mars/Olympus",
    " [funday]",
    " optout",
    ' "+1 202 555 0143"',
    " |\n  block text",
]

@st.composite
def mutated_campaign(draw: st.DrawFn) -> tuple[str, str, str]:
    return mutate(draw, VALID, VALUES)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=mutated_campaign())
def test_mutated_campaigns_get_located_answers(case: tuple[str, str, str], runner: Runner) -> None:
    name, text, how = case
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        folder = Path(tmp)
        for support in SUPPORT[name]:
            shutil.copy(support, folder / support.name)
        (folder / "prompts").mkdir()
        shutil.copy(ROOT / "prompts" / "survey.yaml", folder / "prompts" / "survey.yaml")
        (folder / "sub").mkdir()
        path = folder / "sub" / name if name == "example.yaml" else folder / name
        if name == "example.yaml":  # its tree is ../prompts/survey.yaml
            for support in SUPPORT[name]:
                shutil.move(folder / support.name, folder / "sub" / support.name)
        path.write_text(text, encoding="utf-8")
        n_lines = text.count("\n") + 1

        try:  # in-process: a CampaignError whose every problem is located in the file
            campaign = load_campaign(path)
        except CampaignError as exc:
            for problem in exc.problems:
                m = _LOCATED.match(problem)
                assert m is not None, (how, problem)
                assert 1 <= int(m["line"]) <= n_lines + 1, (how, problem)
        else:
            for p in check_campaign(campaign, path).problems:
                assert p.line >= 1 and p.column >= 1, (how, p)

        for argv in (
            ["campaign", "validate", str(path)],
            ["campaign", "import", str(path), "--db", f"sqlite:///{folder / 's.db'}"],
        ):
            run = runner.run(argv, folder)
            failures = check_run(run, clean=False)
            assert not failures, f"{how}: {argv[1]}: {failures}\n--- mutant:\n{text}"
