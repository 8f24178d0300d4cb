"""Scripted dialogue tests: a designer's CI for prompt trees.

A cases file lists calls (variables, time of day, what the caller does, canned webhook
answers) and what must happen (path, outcome, variables, webhooks, prompts)::

    tree: informer.yaml            # optional, relative to this file
    cases:
      - name: confirms at once
        variables: {first_name: Ann}
        input: [1]                  # or "1,2,timeout"
        expect:
          path: [message, confirm, confirmed, done]
          outcome: confirmed
      - name: voicemail
        answered_by: machine        # human (default), machine, fax or unknown
        expect: {path: [voicemail, left], outcome: left-message}
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from autocall.audio.amd import AnsweredBy
from autocall.dialogue.loader import Document, Problem, TreeError, model_problems, read
from autocall.dialogue.schema import Tree
from autocall.dialogue.simulate import SimulationResult, Simulator, WebhookStub, parse_inputs


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StubSpec(_Model):
    status: int = Field(200, ge=0, le=599)
    body: Any = None


class Expect(_Model):
    path: list[str] | None = Field(None, description="The exact node path.")
    visits: list[str] | None = Field(None, description="Nodes visited, in this order.")
    not_visits: list[str] | None = None
    outcome: str | None = None
    variables: dict[str, str | int | float | bool] | None = None
    digits: str | None = None
    webhooks: list[str] | None = Field(None, description="Webhook nodes or URLs, in order.")
    says: list[str] | None = Field(None, description="Texts said (substrings), in order.")

    @field_validator("digits", mode="before")
    @classmethod
    def _digits(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class Case(_Model):
    name: str
    variables: dict[str, str | int | float | bool] = Field(default_factory=dict)
    at: dt.datetime | None = Field(None, description="Wall-clock time of the call (ISO 8601).")
    input: list[str | int] | str = Field(default_factory=list)
    webhooks: dict[str, StubSpec] = Field(default_factory=dict)
    transfer: Literal["ok", "fail"] = "ok"
    answered_by: AnsweredBy | None = Field(
        None,
        description="Who answering-machine detection says answered: machine starts at the "
        "tree's machine: node (after the beep), fax hangs up. Unset: no detection.",
    )
    expect: Expect

    def tokens(self) -> list[str]:
        if isinstance(self.input, str):
            return parse_inputs(self.input)
        return [str(t) for t in self.input]


class CasesFile(_Model):
    tree: str | None = None
    variables: dict[str, str | int | float | bool] = Field(default_factory=dict)
    at: dt.datetime | None = None
    cases: list[Case] = Field(min_length=1)


DEFAULT_AT = dt.datetime(2026, 1, 7, 10, 0)
"""When a case gives no ``at:``: a Wednesday at 10:00 in the tree's time zone, inside any
office hours, so an ``hours`` node is open unless a case says otherwise (the Unix epoch
was a Thursday night in UTC, when every office is closed)."""

DEFAULT_AT_TEXT = "Wednesday 2026-01-07 10:00"


@dataclass
class CaseResult:
    name: str
    failures: list[str]
    result: SimulationResult
    line: int = 0
    default_time: bool = False

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class CasesReport:
    file: str
    results: list[CaseResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)


def load_cases(path: Path) -> tuple[CasesFile, Document]:
    """Read a cases file; raises :class:`TreeError` with located problems."""
    doc, problems = read(path)
    if doc is None:
        raise TreeError(problems)
    return cases_from(doc), doc


def cases_from(doc: Document) -> CasesFile:
    """Validate a parsed cases file; raises :class:`TreeError` with located problems."""
    if not isinstance(doc.data, dict):
        raise TreeError(
            [Problem(doc.file, 1, 1, "error", "type", "a cases file is a mapping with 'cases'")]
        )
    try:
        return CasesFile.model_validate(_plain(doc.data))
    except ValidationError as exc:
        raise TreeError(model_problems(doc, exc, CasesFile)) from None


def is_cases_document(data: object) -> bool:
    """A cases file by its content (``cases:`` and no ``nodes:``), whatever its name."""
    return isinstance(data, dict) and "cases" in data and "nodes" not in data


def check_cases(doc: Document) -> list[Problem]:
    """Every problem of a cases file that ``validate`` can see without running it."""
    try:
        cases = cases_from(doc)
    except TreeError as exc:
        return exc.problems
    if cases.tree is not None:
        tree = Path(doc.file).parent / cases.tree
        if not tree.is_file():
            return [
                doc.problem(
                    ["tree"],
                    "error",
                    "file",
                    f"tree {cases.tree!r} not found (looked at {tree}); the path is relative "
                    "to this cases file",
                )
            ]
    return []


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def run_case(tree: Tree, case: Case, defaults: CasesFile | None = None) -> CaseResult:
    variables = {k: _text(v) for k, v in (defaults.variables if defaults else {}).items()}
    variables.update({k: _text(v) for k, v in case.variables.items()})
    at = case.at or (defaults.at if defaults else None)
    start = _timestamp(at or DEFAULT_AT, tree)
    stubs = {k: WebhookStub(v.status, v.body) for k, v in case.webhooks.items()}
    sim = Simulator(
        tree,
        variables,
        start_time=start,
        webhooks=stubs,
        transfer_ok=case.transfer == "ok",
        answered_by=case.answered_by,
    )
    result = sim.run(case.tokens())
    return CaseResult(case.name, _compare(case.expect, result), result, default_time=at is None)


def _timestamp(at: dt.datetime, tree: Tree) -> float:
    if at.tzinfo is None:
        from zoneinfo import ZoneInfo

        at = at.replace(tzinfo=ZoneInfo(tree.timezone))
    return at.timestamp()


def run_cases(tree: Tree, path: Path) -> CasesReport:
    """Run every case of a cases file against ``tree``."""
    cases, doc = load_cases(path)
    report = CasesReport(str(path))
    for i, case in enumerate(cases.cases):
        outcome = run_case(tree, case, cases)
        outcome.line = doc.locate(["cases", i])[0]
        report.results.append(outcome)
    return report


def tree_for_cases(path: Path) -> str | None:
    """The ``tree:`` a cases file names, resolved against the cases file, if any."""
    cases, _ = load_cases(path)
    return str(path.parent / cases.tree) if cases.tree else None


def _in_order(wanted: Sequence[str], seen: Sequence[str], match: Any) -> str | None:
    """First wanted item not found after the previous one, or None."""
    position = 0
    for item in wanted:
        while position < len(seen) and not match(item, seen[position]):
            position += 1
        if position == len(seen):
            return item
        position += 1
    return None


def _said_in_order(wanted: Sequence[str], said: Sequence[str]) -> str | None:
    """First text not said after the previous one (several may be in one prompt)."""
    transcript = "\n".join(said).casefold()
    position = 0
    for text in wanted:
        found = transcript.find(text.casefold(), position)
        if found < 0:
            return text
        position = found + len(text)
    return None


def _compare(expect: Expect, got: SimulationResult) -> list[str]:
    failures: list[str] = []
    if got.error:
        failures.append(f"engine error: {got.error}")
    if expect.path is not None and expect.path != got.path:
        failures.append(
            f"path: expected {' → '.join(expect.path)}\n      got      {' → '.join(got.path)}"
        )
    if expect.visits is not None:
        missing = _in_order(expect.visits, got.path, lambda a, b: a == b)
        if missing is not None:
            failures.append(
                f"visits: {missing!r} not visited in order (path {' → '.join(got.path)})"
            )
    for node in expect.not_visits or []:
        if node in got.path:
            failures.append(f"not_visits: {node!r} was visited")
    if expect.outcome is not None and expect.outcome != got.outcome:
        failures.append(f"outcome: expected {expect.outcome!r}, got {got.outcome!r}")
    for name, value in (expect.variables or {}).items():
        actual = got.variables.get(name)
        if actual != _text(value):
            failures.append(f"variable {name}: expected {_text(value)!r}, got {actual!r}")
    if expect.digits is not None and expect.digits != got.digits:
        failures.append(f"digits: expected {expect.digits!r}, got {got.digits!r}")
    if expect.webhooks is not None:
        called = [w.node or w.url for w in got.webhooks]
        urls = [w.url for w in got.webhooks]
        if len(expect.webhooks) != len(called) or any(
            want not in (node, url)
            for want, node, url in zip(expect.webhooks, called, urls, strict=True)
        ):
            failures.append(f"webhooks: expected {expect.webhooks}, called {called}")
    if expect.says is not None:
        missing = _said_in_order(expect.says, got.said)
        if missing is not None:
            failures.append(f"says: {missing!r} was not said (in order)")
    return failures
