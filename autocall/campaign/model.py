"""Campaign vocabulary: what a campaign is, who is called, and what became of each try.

The models are pydantic so a campaign YAML is validated once, at the edge, and every
error can name the file, line and field (see :func:`load_campaign`).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from autocall.campaign.amd import AmdSettings
from autocall.telephony.call import CallStatus

# TCPA (47 U.S.C. § 227; 47 CFR 64.1200(c)(1)): no calls before 08:00 or after 21:00 at
# the called party's location.
LEGAL_START = time(8, 0)
LEGAL_END = time(21, 0)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Outcome(enum.StrEnum):
    """What one attempt means for the contact: the key of the retry policy."""

    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    DECLINED = "declined"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    HUNG_UP_EARLY = "hung-up-early"
    INVALID = "invalid"
    DNC = "dnc"
    OPTED_OUT = "opted-out"
    INTERRUPTED = "interrupted"
    # Answering-machine detection (issue 16): a machine is retried later, a fax never.
    MACHINE = "machine"
    LEFT_MESSAGE = "left-message"
    FAX = "fax"


NEVER_RETRY = frozenset(
    {Outcome.COMPLETED, Outcome.DECLINED, Outcome.INVALID, Outcome.DNC, Outcome.OPTED_OUT,
     Outcome.FAX}
)


class ContactState(enum.StrEnum):
    """Where a contact stands: ``pending`` may be dialed once due, ``done`` never again."""

    PENDING = "pending"
    IN_FLIGHT = "in-flight"
    DONE = "done"


class CampaignState(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    STOPPED = "stopped"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*$")
_UNIT = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> Any:
    """``"90s"``, ``"10m"``, ``"2h"``, ``"1d"`` or bare seconds as a timedelta; else as is."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return timedelta(seconds=float(m.group(1)) * _UNIT[m.group(2)])
    return value


class RetryPolicy(_Model):
    """Delays before the next try, by outcome; outcomes in ``NEVER_RETRY`` end the contact."""

    max_attempts: int = Field(default=3, ge=1, le=50)
    delays: dict[Outcome, timedelta] = Field(
        default_factory=lambda: {
            Outcome.BUSY: timedelta(minutes=10),
            Outcome.NO_ANSWER: timedelta(hours=1),
            Outcome.FAILED: timedelta(minutes=30),
            Outcome.UNREACHABLE: timedelta(hours=2),
            Outcome.HUNG_UP_EARLY: timedelta(hours=4),
            Outcome.INTERRUPTED: timedelta(minutes=5),
            Outcome.MACHINE: timedelta(hours=3),
        }
    )

    @field_validator("delays", mode="before")
    @classmethod
    def _parse_delays(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: parse_duration(v) for k, v in value.items()}
        return value

    @field_validator("delays")
    @classmethod
    def _no_delay_for_final(cls, value: dict[Outcome, timedelta]) -> dict[Outcome, timedelta]:
        bad = sorted(o.value for o in value if o in NEVER_RETRY)
        if bad:
            raise ValueError(f"{', '.join(bad)} are never retried; remove them from delays")
        return value

    def next_try(self, outcome: Outcome, attempts_made: int, now: datetime) -> datetime | None:
        """When to try again after ``attempts_made`` tries ending in ``outcome``; None: never."""
        if outcome in NEVER_RETRY or attempts_made >= self.max_attempts:
            return None
        delay = self.delays.get(outcome)
        if delay is None:
            return None
        return now + delay


class CallingWindow(_Model):
    """Days and hours a contact may be called, in the contact's own time zone."""

    days: list[str] = Field(default_factory=lambda: list(WEEKDAYS[:5]))
    start: time = LEGAL_START
    end: time = LEGAL_END
    holidays: list[date] = Field(default_factory=list)
    override_legal_hours: bool = False

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        days = [d.strip().lower()[:3] for d in value]
        bad = [d for d in days if d not in WEEKDAYS]
        if bad:
            raise ValueError(f"unknown day(s) {bad}; use {', '.join(WEEKDAYS)}")
        if not days:
            raise ValueError("at least one day is needed")
        return days

    @model_validator(mode="after")
    def _legal(self) -> CallingWindow:
        if self.start >= self.end:
            raise ValueError(f"start {self.start} must be before end {self.end}")
        if not self.override_legal_hours and (self.start < LEGAL_START or self.end > LEGAL_END):
            raise ValueError(
                f"hours {self.start:%H:%M}-{self.end:%H:%M} go outside the legal "
                f"{LEGAL_START:%H:%M}-{LEGAL_END:%H:%M} local window; narrow them or set "
                "override_legal_hours: true if the law where you call allows it"
            )
        return self


class ContactColumns(_Model):
    """Header mapping: which CSV column holds what (the rest become template fields)."""

    phone: str = "phone"
    timezone: str | None = None
    id: str | None = None


class Campaign(_Model):
    """A campaign as written in YAML (paths resolved relative to the YAML file)."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    tree: str
    contacts: list[str] = Field(default_factory=list)
    columns: ContactColumns = Field(default_factory=ContactColumns)
    default_region: str = "US"
    default_timezone: str = "UTC"
    caller_ids: list[str] = Field(min_length=1)
    trunk: str | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    window: CallingWindow = Field(default_factory=CallingWindow)
    channels: int = Field(default=10, ge=1, le=5000)
    calls_per_second: float = Field(default=5.0, gt=0, le=1000)
    ring_timeout: float = Field(default=30.0, gt=0, le=300)
    retry: RetryPolicy = Field(default_factory=lambda: RetryPolicy())
    dnc: list[str] = Field(default_factory=list)
    recording: bool = False
    on_restart: str = Field(default="retry", pattern="^(retry|give-up)$")
    amd: AmdSettings = Field(default_factory=lambda: AmdSettings(enabled=False))

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        import phonenumbers

        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r}; use an ISO 3166 code such as US or GB")
        return value.upper()

    @field_validator("default_timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name") from exc
        return value

    @model_validator(mode="after")
    def _dates(self) -> Campaign:
        if self.start_at and self.end_at and self.start_at >= self.end_at:
            raise ValueError("start_at must be before end_at")
        return self


@dataclass(frozen=True)
class Contact:
    """One row of the contacts table."""

    id: int
    campaign: str
    number: str
    timezones: tuple[str, ...]
    fields: Mapping[str, str]
    state: ContactState
    attempts: int
    next_at: datetime | None
    last_outcome: Outcome | None
    wait_reason: str | None = None


@dataclass(frozen=True)
class Attempt:
    """One try to reach a contact; the call record (DESIGN.md §4)."""

    id: int
    campaign: str
    contact_id: int
    attempt_no: int
    number: str
    caller_id: str
    node: str
    status: CallStatus
    outcome: Outcome | None
    sip_code: int | None
    q850: int | None
    created_at: datetime
    started_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    duration: float | None
    billable: float | None
    digits: str
    path: list[str] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)
    recording: str | None = None


class CampaignError(ValueError):
    """A campaign file that cannot be used; ``problems`` are ``file:line: field: message``."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _line_of(node: Any, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the deepest key/item of ``loc`` that exists in the YAML tree."""
    line: int | None = None
    for part in loc:
        lc = getattr(node, "lc", None)
        try:
            if isinstance(node, dict) and part in node:
                if lc is not None:
                    line = lc.key(part)[0] + 1
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                if lc is not None:
                    line = lc.item(part)[0] + 1
                node = node[part]
            else:
                break
        except (KeyError, IndexError, TypeError):
            break
    return line


def load_campaign(path: str | Path) -> Campaign:
    """Read and validate a campaign YAML; raise :class:`CampaignError` naming file:line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CampaignError([f"{path}: cannot read: {exc.strerror}"]) from exc
    try:
        data = YAML(typ="rt").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise CampaignError([f"{where}: YAML syntax: {problem}"]) from exc
    if not isinstance(data, dict):
        raise CampaignError([f"{path}:1: a campaign is a mapping (name:, tree:, contacts: …)"])
    try:
        campaign = Campaign.model_validate(_plain(data))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if isinstance(p, (int, str)))
            line = _line_of(data, loc) or 1
            dotted = ".".join(str(p) for p in loc) or "(top)"
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{path}:{line}: {dotted}: {msg}")
        raise CampaignError(problems) from exc
    base = path.resolve().parent
    return campaign.model_copy(
        update={
            "tree": str(_resolve(base, campaign.tree)),
            "contacts": [str(_resolve(base, c)) for c in campaign.contacts],
            "dnc": [str(_resolve(base, d)) for d in campaign.dnc],
        }
    )


def _resolve(base: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else base / p


def _plain(node: Any) -> Any:
    """ruamel's commented containers as plain dicts/lists (pydantic wants exact types)."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


@dataclass(frozen=True)
class Dial:
    """Plan: place a call to this contact now with this caller ID."""

    contact_id: int
    caller_id: str


@dataclass(frozen=True)
class Defer:
    """Plan: not now; look again at ``until`` (``kind`` is ``window`` or ``retry``)."""

    contact_id: int
    until: datetime
    kind: str
    reason: str


@dataclass(frozen=True)
class Close:
    """Plan: never dial this contact again."""

    contact_id: int
    outcome: Outcome
    reason: str


Plan = Dial | Defer | Close
