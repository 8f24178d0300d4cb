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

from dataclasses import dataclass, field
from pathlib import Path

from autocall.campaign.contacts import ContactsError, ListsRead, Rejected, read_contacts
from autocall.campaign.model import Campaign
from autocall.campaign.schedule import DncList
from autocall.dialogue.loader import Problem
from autocall.dialogue.validate import validate_file

__all__ = ["CampaignCheck", "Problem", "check_campaign", "preflight"]


@dataclass
class CampaignCheck:
    """Findings for a campaign, and what was read on the way."""

    problems: list[Problem] = field(default_factory=list)
    lists: ListsRead = field(default_factory=ListsRead)
    dnc: DncList | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors


def _row_problem(r: Rejected, severity: str, code: str) -> Problem:
    return Problem(r.source, r.row, r.column or 1,
                   "error" if severity == "error" else "warning", code, r.reason)


def check_campaign(campaign: Campaign) -> CampaignCheck:
    """Read the campaign's lists, DNC files and tree; never raises on bad content."""
    out = CampaignCheck()
    problems = out.problems
    seen: dict[str, str] = {}
    available: set[str] | None = None
    for source in campaign.contacts:
        try:
            result = read_contacts(source, region=campaign.default_region,
                                   columns=campaign.columns,
                                   default_timezone=campaign.default_timezone, seen=seen)
        except ContactsError as exc:
            problems.append(Problem(exc.source, exc.row, exc.column, "error", "contacts",
                                    exc.message))
            continue
        out.lists.contacts.extend(result.contacts)
        out.lists.rejected.extend(result.rejected)
        out.lists.duplicate_rows.extend(result.duplicate_rows)
        out.lists.warnings.extend(result.warnings)
        out.lists.headers[source] = result.header
        problems.extend(_row_problem(r, "warning", "rejected") for r in result.rejected)
        problems.extend(_row_problem(r, "warning", "duplicate") for r in result.duplicate_rows)
        problems.extend(_row_problem(r, "warning", "contacts") for r in result.warnings)
        names = {*result.header, *campaign.columns.field_map()}
        if result.contacts and any("extension" in c.fields for c in result.contacts):
            names.add("extension")
        available = names if available is None else available & names
    tree_path = Path(campaign.tree)
    if not tree_path.is_file():
        problems.append(Problem(campaign.tree, 1, 1, "error", "tree",
                                "prompt tree not found; fix tree: in the campaign"))
    else:
        report = validate_file(tree_path, available)
        problems.extend(report.problems)
        _declared_fields(tree_path, campaign, out, problems)
    out.dnc = DncList.from_files(campaign.dnc, campaign.default_region)
    problems.extend(Problem(p.source, p.line, p.column, "error", "dnc", p.message)
                    for p in out.dnc.problems)
    problems.sort(key=lambda p: (p.severity != "error", p.file, p.line, p.column))
    return out


def _declared_fields(tree_path: Path, campaign: Campaign, out: CampaignCheck,
                     problems: list[Problem]) -> None:
    """Fields the tree declares in ``contact_fields`` must be a column of every list."""
    from autocall.dialogue.loader import TreeError, load

    try:
        needed = list(load(tree_path).contact_fields or [])
    except TreeError:
        return  # validate_file has reported why
    mapped = campaign.columns.field_map()
    for source, header in out.lists.headers.items():
        missing = [f for f in needed if f not in header and f not in mapped]
        if missing:
            problems.append(Problem(
                source, 1, 1, "error", "field",
                f"no column for the tree's field(s) {', '.join(missing)} (headers: "
                f"{', '.join(header)}); add it or map it with columns: {{{missing[0]}: "
                "<header>}"))


def preflight(campaign: Campaign) -> list[Problem]:
    """Every finding for ``campaign``; dial only if none has severity ``error``.

    The one check ``campaign validate/import/run`` and ``serve`` share.
    """
    return check_campaign(campaign).problems
