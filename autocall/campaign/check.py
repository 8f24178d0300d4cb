"""Everything a campaign needs before it may dial, checked in one place (issue 12 item 11).

``campaign validate``, ``campaign import``, ``campaign run`` and ``serve`` all ask
:func:`preflight`; a campaign with any *error* must not dial: its tree (dangling
``next``, audio, templates; the prompt validator's findings), its contact lists
(readable, a phone column, the fields the tree uses) and its do-not-call files (every
line understood: an unreadable DNC line is someone we might call against their wish).
Rejected and duplicate rows are *warnings*: they are skipped, not dialed.

Pure: files in, findings out; nothing is written.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from autocall.campaign.contacts import ContactsError, ListsRead, Rejected, read_contacts
from autocall.campaign.model import Campaign
from autocall.campaign.schedule import DNC_MISSING as _DNC_MISSING
from autocall.campaign.schedule import DncList
from autocall.campaign.trees import STORE_PREFIX, TreeLibrary, TreesError
from autocall.dialogue.loader import Findings, Problem, TreeError, load
from autocall.dialogue.schema import Tree
from autocall.dialogue.validate import validate_file
from autocall.yamlfile import Positions, YamlFileError, read_yaml

__all__ = ["CampaignCheck", "Problem", "check_campaign", "preflight"]


@dataclass
class CampaignCheck(Findings):
    """Findings for a campaign, and what was read on the way."""

    problems: list[Problem] = field(default_factory=list)
    lists: ListsRead = field(default_factory=ListsRead)
    dnc: DncList | None = None


def _row_problem(r: Rejected, severity: str, code: str) -> Problem:
    return Problem(
        r.source,
        r.row,
        r.column or 1,
        "error" if severity == "error" else "warning",
        code,
        r.reason,
    )


class _Where:
    """Where a key of the campaign YAML sits, to point findings about a referenced file
    back at the line that names it (``tree: …``, an item of ``contacts:``)."""

    def __init__(self, source: Path | None) -> None:
        self.file = str(source) if source is not None else None
        self._positions: Positions | None = None
        if source is not None:
            try:
                self._positions = read_yaml(source).positions
            except YamlFileError:
                self._positions = None

    def has(self, loc: tuple[str | int, ...]) -> bool:
        return self._positions is not None and self._positions.has(loc)

    def problem(
        self, loc: tuple[str | int, ...], code: str, message: str, fallback: str
    ) -> Problem:
        if self.file is None or self._positions is None or not self._positions.has(loc):
            return Problem(fallback, 1, 1, "error", code, message)
        line, col = self._positions.locate(loc)
        return Problem(self.file, line, col, "error", code, message)


def check_campaign(campaign: Campaign, source: Path | None = None,
                   trees: TreeLibrary | None = None) -> CampaignCheck:
    """Read the campaign's lists, DNC files and tree; never raises on bad content.

    ``source`` is the campaign YAML, when there is one: findings about a file it names
    are then also pointed at the line that names it. ``trees``: the store's trees, for a
    campaign that pins one (``tree: store:NAME@N``).
    """
    out = CampaignCheck()
    problems = out.problems
    where = _Where(source)
    seen: dict[str, str] = {}
    available: set[str] | None = None
    for i, list_path in enumerate(campaign.contacts):
        if not Path(list_path).exists():
            problems.append(
                where.problem(
                    ("contacts", i),
                    "contacts",
                    f"contact list {list_path} not found; check the path",
                    list_path,
                )
            )
            continue
        try:
            result = read_contacts(
                list_path,
                region=campaign.default_region,
                columns=campaign.columns,
                default_timezone=campaign.default_timezone,
                seen=seen,
            )
        except ContactsError as exc:
            problems.append(
                Problem(exc.source, exc.row, exc.column, "error", "contacts", exc.message)
            )
            loc: tuple[str | int, ...] = (
                ("columns",)
                if "no column" in exc.message and where.has(("columns",))
                else ("contacts", i)
            )
            if where.has(loc):
                problems.append(
                    where.problem(
                        loc,
                        "contacts",
                        f"contact list {Path(list_path).name} cannot be used "
                        f"(see {Path(exc.source).name}:{exc.row})",
                        list_path,
                    )
                )
            continue
        out.lists.contacts.extend(result.contacts)
        out.lists.rejected.extend(result.rejected)
        out.lists.duplicate_rows.extend(result.duplicate_rows)
        out.lists.warnings.extend(result.warnings)
        out.lists.headers[list_path] = result.header
        problems.extend(_row_problem(r, "warning", "rejected") for r in result.rejected)
        problems.extend(_row_problem(r, "warning", "duplicate") for r in result.duplicate_rows)
        problems.extend(_row_problem(r, "warning", "contacts") for r in result.warnings)
        names = {*result.header, *campaign.columns.field_map()}
        if result.contacts and any("extension" in c.fields for c in result.contacts):
            names.add("extension")
        available = names if available is None else available & names
    tree_path = Path(campaign.tree)
    if campaign.tree.startswith(STORE_PREFIX):
        _stored_tree(campaign, trees, where, out, problems)
    elif not tree_path.is_file():
        problems.append(
            where.problem(
                ("tree",), "tree", f"prompt tree {campaign.tree} not found", campaign.tree
            )
        )
    else:
        report = validate_file(tree_path, available)
        problems.extend(report.problems)
        before = len(problems)
        with contextlib.suppress(TreeError):  # validate_file has reported why
            _declared_fields(load(tree_path), campaign, out, problems)
        errors = len(report.errors) + len(problems) - before
        if errors and where.file is not None:
            problems.append(
                where.problem(
                    ("tree",),
                    "tree",
                    f"the prompt tree has {errors} error(s) (listed with "
                    "its file and line); the campaign cannot dial until they are fixed",
                    campaign.tree,
                )
            )
    out.dnc = DncList.from_files(campaign.dnc, campaign.default_region)
    for i, dnc_path in enumerate(campaign.dnc):
        if not Path(dnc_path).exists():
            problems.append(
                where.problem(("dnc", i), "dnc", f"do-not-call file {dnc_path} not found", dnc_path)
            )
    problems.extend(
        Problem(p.source, p.line, p.column, "error", "dnc", p.message)
        for p in out.dnc.problems
        if p.message != _DNC_MISSING
    )
    problems.sort(key=lambda p: (p.severity != "error", p.file, p.line, p.column))
    return out


def _stored_tree(campaign: Campaign, trees: TreeLibrary | None, where: _Where,
                 out: CampaignCheck, problems: list[Problem]) -> None:
    """A pinned version (``store:NAME@N``) must exist in the store and be published."""
    if trees is None:
        problems.append(where.problem(("tree",), "tree", f"{campaign.tree} is a tree in the "
                                      "store: give the store (--db) to use it", campaign.tree))
        return
    try:
        tree = trees.load(campaign.tree)
    except TreesError as exc:
        problems.append(where.problem(("tree",), "tree", str(exc), campaign.tree))
        return
    _declared_fields(tree, campaign, out, problems)


def _declared_fields(
    tree: Tree, campaign: Campaign, out: CampaignCheck, problems: list[Problem]
) -> None:
    """Fields the tree declares in ``contact_fields`` must be a column of every list."""
    needed = list(tree.contact_fields or [])
    mapped = campaign.columns.field_map()
    for source, header in out.lists.headers.items():
        missing = [f for f in needed if f not in header and f not in mapped]
        if missing:
            problems.append(
                Problem(
                    source,
                    1,
                    1,
                    "error",
                    "field",
                    f"no column for the tree's field(s) {', '.join(missing)} (headers: "
                    f"{', '.join(header)}); add it or map it with columns: {{{missing[0]}: "
                    "<header>}",
                )
            )


def preflight(campaign: Campaign, source: Path | None = None,
              trees: TreeLibrary | None = None) -> list[Problem]:
    """Every finding for ``campaign``; dial only if none has severity ``error``.

    The one check ``campaign validate/import/run`` and ``serve`` share (``source``: the
    campaign YAML when there is one, so findings also point at its lines).
    """
    return check_campaign(campaign, source, trees).problems
