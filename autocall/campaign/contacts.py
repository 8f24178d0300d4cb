"""Contact lists from CSV: E.164 numbers, each callee's time zone, and a reject report.

A bad row is reported (row number and reason) and skipped; it never stops the import,
because a 100,000-row list from a CRM always has a few.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import PhoneNumberType, is_number_type_geographical
from phonenumbers import timezone as pn_timezone

from autocall.campaign.model import Campaign, ContactColumns

if TYPE_CHECKING:
    from autocall.campaign.store import Store

_UNKNOWN_TZ = "Etc/Unknown"


@dataclass(frozen=True)
class NewContact:
    """A contact ready for the store."""

    number: str
    timezones: tuple[str, ...]
    fields: dict[str, str]
    source: str
    row: int


@dataclass(frozen=True)
class Rejected:
    """A row that was skipped and why (``row`` is the file's line number, header = 1)."""

    source: str
    row: int
    reason: str


@dataclass
class ImportResult:
    contacts: list[NewContact] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    duplicates: int = 0
    header: list[str] = field(default_factory=list)


class ContactsError(ValueError):
    """The file as a whole cannot be read (missing column, not CSV…)."""


def _valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


class _ZoneCheck:
    """Validity of time-zone names, remembered (a column repeats a handful of names)."""

    def __init__(self) -> None:
        self._known: dict[str, bool] = {}

    def __call__(self, name: str) -> bool:
        ok = self._known.get(name)
        if ok is None:
            ok = self._known[name] = _valid_zone(name)
        return ok


def read_contacts(
    path: str | Path,
    *,
    region: str = "US",
    columns: ContactColumns | None = None,
    default_timezone: str = "UTC",
    seen: set[str] | None = None,
) -> ImportResult:
    """Parse one CSV; ``seen`` carries numbers across files so dedupe spans a campaign."""
    path = Path(path)
    columns = columns or ContactColumns()
    seen = set() if seen is None else seen
    result = ImportResult()
    zone_ok = _ZoneCheck()
    source = str(path)
    try:
        fh = open(path, newline="", encoding="utf-8-sig", errors="replace")  # noqa: SIM115
    except OSError as exc:
        raise ContactsError(f"{path}: cannot read: {exc.strerror}") from exc
    with fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration as exc:
            raise ContactsError(f"{path}: empty file; the first line must be a header") from exc
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ContactsError(f"{path}:1: not a CSV header: {exc}") from exc
        result.header = header
        index = {h: i for i, h in enumerate(header)}
        if columns.phone not in index:
            raise ContactsError(
                f"{path}:1: no column {columns.phone!r} (headers: {', '.join(header)}); "
                "map yours with columns: {phone: <header>} in the campaign"
            )
        phone_i = index[columns.phone]
        tz_i = index.get(columns.timezone) if columns.timezone else None
        if columns.timezone and tz_i is None:
            raise ContactsError(f"{path}:1: no time-zone column {columns.timezone!r}")
        for row_no, row in _rows(reader, result, source):
            if len(row) != len(header):
                result.rejected.append(Rejected(
                    source, row_no, f"has {len(row)} fields, header has {len(header)}"))
                continue
            raw = row[phone_i].strip()
            if not raw:
                result.rejected.append(Rejected(source, row_no, f"empty {columns.phone!r}"))
                continue
            try:
                parsed = phonenumbers.parse(raw, region)
            except phonenumbers.NumberParseException as exc:
                why = str(exc).split(") ", 1)[-1]
                result.rejected.append(Rejected(source, row_no, f"{raw!r} is not a number: {why}"))
                continue
            # One number_type() answers both "valid?" and "geographic?" (it is the costly
            # step; is_valid_number and time_zones_for_number would each redo it).
            kind = phonenumbers.number_type(parsed)
            if kind == PhoneNumberType.UNKNOWN:
                result.rejected.append(Rejected(
                    source, row_no, f"{raw!r} is not a valid number in region {region}"))
                continue
            number = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            if number in seen:
                result.duplicates += 1
                continue
            if tz_i is not None and row[tz_i].strip():
                tz = row[tz_i].strip()
                if not zone_ok(tz):
                    result.rejected.append(Rejected(source, row_no, f"unknown time zone {tz!r}"))
                    continue
                zones: tuple[str, ...] = (tz,)
            else:
                zones = _zones(parsed, kind) or (default_timezone,)
            seen.add(number)
            fields = {h: v.strip() for h, v in zip(header, row, strict=True)}
            result.contacts.append(NewContact(number, zones, fields, source, row_no))
    return result


def _zones(parsed: phonenumbers.PhoneNumber, kind: int) -> tuple[str, ...]:
    if is_number_type_geographical(kind, parsed.country_code or 0):
        found = pn_timezone.time_zones_for_geographical_number(parsed)
    else:
        found = pn_timezone._country_level_time_zones_for_number(parsed)
    return tuple(z for z in found if z != _UNKNOWN_TZ)


def _rows(reader: Iterator[list[str]], result: ImportResult, source: str
          ) -> Iterator[tuple[int, list[str]]]:
    """Data rows with their line numbers; blank lines skipped, broken quoting reported."""
    line_num = getattr(reader, "line_num", 0)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line_num = getattr(reader, "line_num", line_num)
            result.rejected.append(Rejected(source, line_num, str(exc)))
            continue
        line_num = getattr(reader, "line_num", line_num)
        if not row or all(not c.strip() for c in row):
            continue
        yield line_num, row


@dataclass
class ImportReport:
    """Outcome of importing a campaign's lists into the store."""

    added: int
    duplicates: int
    rejected: list[Rejected]


def import_campaign(store: Store, campaign: Campaign) -> ImportReport:
    """Save the campaign definition and import all its contact lists (dedupe across them)."""
    store.save_campaign(campaign)
    seen: set[str] = set()
    rejected: list[Rejected] = []
    dup = 0
    new: list[NewContact] = []
    for source in campaign.contacts:
        result = read_contacts(source, region=campaign.default_region,
                               columns=campaign.columns,
                               default_timezone=campaign.default_timezone, seen=seen)
        new.extend(result.contacts)
        rejected.extend(result.rejected)
        dup += result.duplicates
    added, already = store.add_contacts(campaign.name, new)
    return ImportReport(added, dup + already, rejected)
