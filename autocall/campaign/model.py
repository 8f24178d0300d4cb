"""Campaign vocabulary: what a campaign is, who is called, and what became of each try.

The models are pydantic so a campaign YAML is validated once, at the edge, and every
error can name the file, line and field (see :func:`load_campaign`).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from autocall.campaign.amd import AmdSettings
from autocall.campaign.outbox import WebhookTarget
from autocall.telephony.record import HUNG_UP_EARLY, OPT_OUT, StoredRecord
from autocall.telephony.record import CallStatus as CallStatus  # re-exported


def _caller_id(value: str) -> str:
    """The SIP rule for a caller ID, loaded when a campaign is checked: importing the
    model loads no part of the SIP stack (issue 14)."""
    from autocall.sip.callerid import check_caller_id

    return check_caller_id(value)


# TCPA (47 U.S.C. § 227; 47 CFR 64.1200(c)(1)): no calls before 08:00 or after 21:00 at
# the called party's location.
LEGAL_START = time(8, 0)
LEGAL_END = time(21, 0)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class Outcome(enum.StrEnum):
    """What one attempt means for the contact: the key of the retry policy."""

    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    DECLINED = "declined"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    HUNG_UP_EARLY = HUNG_UP_EARLY
    INVALID = "invalid"
    DNC = "dnc"
    OPTED_OUT = OPT_OUT  # the trees' spelling; "opted-out" (before issue 14) still reads

    @classmethod
    def _missing_(cls, value: object) -> Outcome | None:
        return cls.OPTED_OUT if value == "opted-out" else None
    INTERRUPTED = "interrupted"
    # The trunk could not be reached (connection refused, no response at all): says
    # nothing about the callee, so it has its own retry rule and cap and does not use
    # up one of the contact's attempts.
    NETWORK_FAULT = "network-fault"
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
    """``"90s"``, ``"10m"``, ``"2h"``, ``"1d"`` or bare seconds as a timedelta; else as is.

    A value no timedelta can hold (``1e400`` reads as infinity, ``1e20d``) is a ValueError,
    so the campaign's validation reports it at its line instead of an OverflowError.
    """
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            seconds = float(m.group(1)) * _UNIT[m.group(2)]
    if seconds is None:
        return value
    try:
        return timedelta(seconds=seconds)
    except (OverflowError, ValueError):  # infinity, NaN, or beyond 999,999,999 days
        raise ValueError(f"{value!r} is not a usable duration") from None


# A dead trunk is usually back within minutes; not the callee's doing, so retried soon.
NETWORK_FAULT_DELAY = timedelta(minutes=2)


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
            Outcome.NETWORK_FAULT: NETWORK_FAULT_DELAY,
            Outcome.MACHINE: timedelta(hours=3),
        }
    )
    # Network faults per contact before it is closed (they do not count in max_attempts).
    max_network_faults: int = Field(default=5, ge=1, le=50)

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

    def next_try(self, outcome: Outcome, attempts_made: int, now: datetime,
                 network_faults: int = 0) -> datetime | None:
        """When to try again after ``attempts_made`` tries ending in ``outcome``; None: never.

        ``attempts_made`` counts every try, ``network_faults`` those among them that
        ended as network faults (they use up ``max_network_faults``, not attempts).
        """
        if outcome in NEVER_RETRY or attempts_made - network_faults >= self.max_attempts:
            return None
        if outcome is Outcome.NETWORK_FAULT and network_faults >= self.max_network_faults:
            return None
        delay = self.delays.get(outcome)
        if delay is None and outcome is Outcome.NETWORK_FAULT:
            delay = NETWORK_FAULT_DELAY  # its own rule even where delays do not name it
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
        # "mon" or "Monday"; anything else is named as written ("funday" is not "fun").
        keys = [d.strip().lower() for d in value]
        days = [k[:3] if k in WEEKDAYS or k in _DAY_NAMES else d
                for k, d in zip(keys, value, strict=True)]
        bad = [d for d in days if d not in WEEKDAYS]
        if bad:
            raise ValueError(f"unknown day(s) {', '.join(map(repr, bad))}; use "
                             f"{', '.join(WEEKDAYS)}")
        if not days:
            raise ValueError("at least one day is needed")
        return days

    @field_validator("start", "end", mode="before")
    @classmethod
    def _wall_clock(cls, value: object) -> object:
        # pydantic reads a number as seconds after midnight UTC (``start: 42`` would be
        # 00:00:42+00:00): a window's hours are written as text.
        if not isinstance(value, str | time):
            raise ValueError(f"expected a time of day as HH:MM, got {value!r}")
        return value

    @field_validator("start", "end")
    @classmethod
    def _local(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError(f"{value.isoformat()} has a UTC offset, but the window is each "
                             "contact's local time: give HH:MM alone")
        return value

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


_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ContactColumns(BaseModel):
    """Header mapping: which CSV column holds what (the rest become template fields).

    Besides ``phone``, ``timezone``, ``id`` and ``country`` (a per-row ISO 3166 region
    for national numbers), any other key maps a template field to a header, e.g.
    ``columns: {phone: "Phone Number", first_name: "First Name"}`` fills ``{first_name}``.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    phone: str = "phone"
    timezone: str | None = None
    id: str | None = None
    country: str | None = None

    @model_validator(mode="after")
    def _fields_are_headers(self) -> ContactColumns:
        for key, value in (self.model_extra or {}).items():
            if not _FIELD_NAME.match(key):
                raise ValueError(f"field name {key!r}: use letters, digits and _ only")
            if not isinstance(value, str) or not value:
                raise ValueError(f"{key}: give the CSV header (a text) that fills {{{key}}}")
        return self

    def field_map(self) -> dict[str, str]:
        """Template field -> CSV header, for the extra keys."""
        return {k: str(v) for k, v in (self.model_extra or {}).items()}


class Campaign(_Model):
    """A campaign as written in YAML (paths resolved relative to the YAML file)."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    tree: str
    contacts: list[str] = Field(default_factory=list)
    columns: ContactColumns = Field(default_factory=ContactColumns)
    default_region: str = "US"
    default_timezone: str = "UTC"
    # each one is a SIP URI user (it goes into From, P-Asserted-Identity or
    # Remote-Party-ID): "+1 555 0100" or a line break is an error at its line, not a
    # broken INVITE for every contact
    caller_ids: list[Annotated[str, AfterValidator(_caller_id)]] = Field(min_length=1)
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
    # This many calls in a row ending as network faults pause the campaign (with the
    # reason in its state), rather than burn through the list against a dead trunk.
    pause_after_network_faults: int = Field(default=10, ge=1, le=10000)
    amd: AmdSettings = Field(default_factory=lambda: AmdSettings(enabled=False))
    # where the campaign's events go (the outbox delivers them, signed, with retries)
    webhooks: tuple[WebhookTarget, ...] = Field(default=(), max_length=20)

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
class NewContact:
    """A contact read from a list, ready for the store (``row`` is its line there)."""

    number: str
    timezones: tuple[str, ...]
    fields: dict[str, str]
    source: str
    row: int


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
    network_faults: int = 0  # attempts that ended as network faults (not the callee's)


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt(StoredRecord):
    """One try to reach a contact: the call record (DESIGN.md §4) as its attempt row holds
    it, with the claim time; who and where are always known for an attempt."""

    created_at: datetime
    campaign: str
    contact_id: int
    attempt_no: int
    number: str
    caller_id: str
    node: str
    outcome: Outcome | None = None  # the retry outcome, once finished


class CampaignError(ValueError):
    """A campaign file that cannot be used; ``problems`` are ``file:line:col: error: …``
    (the one error format shared with prompt trees)."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def load_campaign(path: str | Path) -> Campaign:
    """Read and validate a campaign YAML; raise :class:`CampaignError` naming file:line:col.

    The YAML goes through :mod:`autocall.yamlfile` (impossible dates, non-UTF-8 bytes,
    alias bombs and deep nesting become errors at their line, never a traceback).
    """
    from autocall.yamlfile import YamlFileError, read_yaml

    path = Path(path)
    try:
        data, positions = read_yaml(path)
    except YamlFileError as exc:
        raise CampaignError([str(exc)]) from None
    if not isinstance(data, dict):
        raise CampaignError([f"{path}:1:1: error: a campaign is a mapping "
                             "(name:, tree:, contacts: …)"])
    try:
        campaign = Campaign.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if isinstance(p, (int, str)))
            missing = err["type"] == "missing"
            # A whole mapping/list (``window:``) is pointed at by its key, a value at itself.
            at_key = err["type"] == "extra_forbidden" or isinstance(
                _value_at(data, loc), (dict, list))
            line, col = positions.locate(loc[:-1] if missing else loc, key=at_key)
            msg = str(err["msg"]).removeprefix("Value error, ")
            if not loc:  # a whole-campaign rule: point at the first field it names
                named = [k for k in data if isinstance(k, str) and k in msg]
                if named:
                    loc = (min(named, key=msg.index),)
                    line, col = positions.locate(loc, key=True)
            dotted = ".".join(str(p) for p in loc) or "(top)"
            if missing:
                msg = "this field is required"
            elif err["type"] == "extra_forbidden":
                msg = "unknown field" + _did_you_mean(str(loc[-1]), _known_fields(data, loc))
            problems.append(f"{path}:{line}:{col}: error: {dotted}: {msg}")
        raise CampaignError(problems) from None
    base = path.resolve().parent
    return campaign.model_copy(
        update={
            # a tree in the store (store:NAME@N) is not a path
            "tree": campaign.tree if campaign.tree.startswith("store:")
            else str(_resolve(base, campaign.tree)),
            "contacts": [str(_resolve(base, c)) for c in campaign.contacts],
            "dnc": [str(_resolve(base, d)) for d in campaign.dnc],
        }
    )


def _known_fields(data: object, loc: tuple[int | str, ...]) -> list[str]:
    """Field names allowed where ``loc`` points (top level or a nested model)."""
    model: type[BaseModel] = Campaign
    for part in loc[:-1]:
        info = model.model_fields.get(str(part))
        ann = info.annotation if info is not None else None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            return []
    return list(model.model_fields)


def _did_you_mean(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known fields: {', '.join(known)}" if known else ""


def _value_at(data: object, loc: tuple[int | str, ...]) -> object:
    for part in loc:
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if not (in_list or (isinstance(data, dict) and part in data)):
            return None
        data = data[part]  # type: ignore[index]
    return data


def _resolve(base: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else base / p


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


def start_state(campaign: Campaign, now: datetime) -> CampaignState:
    """What starting makes a campaign (``run`` and ``POST …/start`` alike): scheduled
    until its ``start_at``, else running."""
    s = campaign.start_at
    if s is not None and now < (s if s.tzinfo else s.replace(tzinfo=UTC)):
        return CampaignState.SCHEDULED
    return CampaignState.RUNNING
