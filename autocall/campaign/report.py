"""Campaign statistics, CDR export and charts, computed from the store's attempt rows."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autocall.campaign.model import Attempt, Campaign, Contact, Outcome
from autocall.campaign.store import Store

CDR_FIELDS = (
    "campaign", "contact_id", "attempt", "number", "caller_id", "node", "start", "answer",
    "end", "duration", "billable", "status", "outcome", "sip_code", "q850", "digits", "path",
    "variables", "recording", "dialogue_outcome", "answered_by",
)


@dataclass
class Report:
    """The numbers a campaign manager asks for; rates are fractions (0..1) or None."""

    campaign: str
    contacts: int
    contacts_done: int
    attempts: int
    dialed: int
    answered: int
    answer_rate: float | None
    completion_rate: float | None
    average_handle_time: float | None
    by_status: dict[str, int] = field(default_factory=dict)
    by_outcome: dict[str, int] = field(default_factory=dict)
    contacts_by_outcome: dict[str, int] = field(default_factory=dict)
    menu_choices: dict[str, int] = field(default_factory=dict)
    digits: dict[str, int] = field(default_factory=dict)
    per_hour: dict[str, int] = field(default_factory=dict)
    imported: dict[str, int] = field(default_factory=dict)
    """Import summary: added (contacts stored), duplicates and rejected rows (the lists
    as they are now), dnc (stored contacts on the do-not-call list now)."""

    def rows(self) -> list[tuple[str, str]]:
        """(metric, value) pairs, flat, for tables and CSV."""
        out: list[tuple[str, str]] = [
            ("campaign", self.campaign),
            ("contacts", str(self.contacts)),
            ("contacts done", str(self.contacts_done)),
            ("attempts", str(self.attempts)),
            ("dialed", str(self.dialed)),
            ("answered", str(self.answered)),
            ("answer rate", _pct(self.answer_rate)),
            ("completion rate", _pct(self.completion_rate)),
            ("average handle time (s)", _num(self.average_handle_time)),
        ]
        for title, data in (("status", self.by_status), ("outcome", self.by_outcome),
                            ("contact outcome", self.contacts_by_outcome),
                            ("menu", self.menu_choices), ("digits", self.digits),
                            ("hour", self.per_hour), ("import", self.imported)):
            out.extend((f"{title} {k}", str(v)) for k, v in data.items())
        return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def build(attempts: list[Attempt], contacts: list[Contact], name: str) -> Report:
    """Pure: a report from rows (the store reads them, see :func:`campaign_report`)."""
    # A call canceled before dialing (DNC at dial time) never reached the network.
    dialed = [a for a in attempts if a.outcome is not Outcome.DNC]
    answered = [a for a in dialed if a.answered_at is not None]
    handle = [a.billable for a in answered if a.billable is not None]
    done = [c for c in contacts if c.state.value == "done"]
    completed = sum(1 for c in contacts if c.last_outcome is Outcome.COMPLETED)
    menu: Counter[str] = Counter()
    digits: Counter[str] = Counter()
    for a in answered:
        menu.update(a.path)
        if a.digits:
            digits[a.digits] += 1
    hours: Counter[str] = Counter(
        (a.started_at or a.created_at).strftime("%Y-%m-%d %H:00") for a in dialed)
    return Report(
        campaign=name, contacts=len(contacts), contacts_done=len(done),
        attempts=len(attempts), dialed=len(dialed), answered=len(answered),
        answer_rate=len(answered) / len(dialed) if dialed else None,
        completion_rate=completed / len(contacts) if contacts else None,
        average_handle_time=sum(handle) / len(handle) if handle else None,
        by_status=dict(Counter(a.status.value for a in attempts).most_common()),
        by_outcome=dict(Counter(a.outcome.value for a in attempts if a.outcome).most_common()),
        contacts_by_outcome=dict(Counter(
            c.last_outcome.value if c.last_outcome else "not yet" for c in contacts
        ).most_common()),
        menu_choices=dict(menu.most_common()), digits=dict(digits.most_common()),
        per_hour=dict(sorted(hours.items())),
    )


def campaign_report(store: Store, name: str) -> Report:
    campaign, _, _ = store.campaign(name)  # raises a clear error for an unknown campaign
    contacts = store.contacts(name)
    report = build(store.attempts(name), contacts, name)
    report.imported = import_summary(campaign, contacts)
    return report


def import_summary(campaign: Campaign, contacts: list[Contact]) -> dict[str, int]:
    """Added, duplicate and rejected rows and contacts on the DNC list (issue 13).

    Duplicates and rejected rows come from reading the campaign's lists again (the store
    keeps only the contacts); a list that cannot be read now counts -1.
    """
    from autocall.campaign.contacts import ContactsError, read_lists
    from autocall.campaign.schedule import DncList

    dnc = DncList.from_files(campaign.dnc, campaign.default_region)
    summary = {"added": len(contacts), "duplicates": -1, "rejected": -1,
               "dnc": sum(1 for c in contacts if c.number in dnc)}
    try:
        lists = read_lists(campaign)
    except ContactsError:
        return summary
    summary["duplicates"] = len(lists.duplicate_rows)
    summary["rejected"] = len(lists.rejected)
    return summary


def to_json(report: Report) -> str:
    return json.dumps(asdict(report), indent=2)


def to_csv(report: Report) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(("metric", "value"))
    writer.writerows(report.rows())
    return buf.getvalue()


def cdr_rows(attempts: list[Attempt]) -> list[dict[str, Any]]:
    """Call records with the fields of DESIGN.md §4."""
    def iso(x: Any) -> str:
        return x.isoformat() if x is not None else ""

    return [{
        "campaign": a.campaign, "contact_id": a.contact_id, "attempt": a.attempt_no,
        "number": a.number, "caller_id": a.caller_id, "node": a.node,
        "start": iso(a.started_at), "answer": iso(a.answered_at), "end": iso(a.ended_at),
        "duration": "" if a.duration is None else f"{a.duration:.3f}",
        "billable": "" if a.billable is None else f"{a.billable:.3f}",
        "status": a.status.value, "outcome": a.outcome.value if a.outcome else "",
        "sip_code": a.sip_code or "", "q850": a.q850 or "", "digits": a.digits,
        "path": " > ".join(a.path), "variables": json.dumps(a.variables, sort_keys=True),
        "recording": a.recording or "", "dialogue_outcome": a.dialogue_outcome or "",
        "answered_by": a.answered_by or "",
    } for a in attempts]


def write_cdr(store: Store, name: str, path: str | Path) -> int:
    """Write the campaign's call records as CSV; returns the number of records."""
    rows = cdr_rows(store.attempts(name))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CDR_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


CHARTS = {"outcomes": "Attempts by outcome", "per-hour": "Calls per hour (UTC)"}
"""The charts a report draws, by slug (also the end of their file names)."""


def render_chart(report: Report, slug: str) -> bytes:
    """One chart (a key of ``CHARTS``) as PNG bytes: the console serves them from memory."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    title = CHARTS[slug]
    data, ylabel = ((report.by_outcome, "attempts") if slug == "outcomes"
                    else (report.per_hour, "calls"))
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    try:
        labels = list(data) or ["(none)"]
        values = list(data.values()) or [0]
        ax.bar(labels, values, color="#3b7dd8")
        # Counts: whole numbers from 0 up (an empty campaign gave a -0.05..0.05 axis).
        ax.set_ylim(0, max(1, max(values)) * 1.05)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if not data:
            ax.text(0.5, 0.5, "no calls yet", transform=ax.transAxes, ha="center",
                    va="center", color="#666666")
        ax.set_title(f"{report.campaign}: {title}")
        ax.set_ylabel(ylabel)
        ax.tick_params(axis="x", labelrotation=30)
        fig.tight_layout()
        out = io.BytesIO()
        fig.savefig(out, format="png")
        return out.getvalue()
    finally:
        plt.close(fig)


def write_charts(report: Report, out_dir: str | Path) -> list[Path]:
    """PNG charts: attempts by outcome, and dialing activity per hour."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for slug in CHARTS:
        path = out / f"{report.campaign}-{slug}.png"
        path.write_bytes(render_chart(report, slug))
        written.append(path)
    return written
