"""Contact lists from CSV: E.164 numbers, each callee's time zone, and a reject report.

A bad row is reported (row number and reason) and skipped; it never stops the import,
because a 100,000-row list from a CRM always has a few.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import PhoneNumberType, is_number_type_geographical
from phonenumbers import timezone as pn_timezone

from autocall.campaign.model import Campaign, ContactColumns, NewContact

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from autocall.campaign.store import Store

_UNKNOWN_TZ = "Etc/Unknown"

if TYPE_CHECKING:
    from _csv import Reader as _Reader


@dataclass(frozen=True)
class Rejected:
    """A row that was skipped (or kept with a warning) and why.

    ``row`` is the file's line number (header = 1); ``column`` the 1-based field, 0 when
    the whole row is meant.
    """

    source: str
    row: int
    reason: str
    column: int = 0

    def where(self) -> str:
        return f"{self.source}:{self.row}:{self.column or 1}"


@dataclass
class ImportResult:
    contacts: list[NewContact] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    duplicates: int = 0
    header: list[str] = field(default_factory=list)
    duplicate_rows: list[Rejected] = field(default_factory=list)
    warnings: list[Rejected] = field(default_factory=list)
    encoding: str = "utf-8"
    delimiter: str = ","


class ContactsError(ValueError):
    """The file as a whole cannot be read (missing column, not text…).

    ``str()`` is ``file:line:col: error: message`` (the one error format).
    """

    def __init__(self, source: str, row: int, column: int, message: str) -> None:
        self.source = source
        self.row = row
        self.column = column
        self.message = message
        super().__init__(f"{source}:{row}:{column}: error: {message}")


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


# Bytes that never occur in a text export: NUL and the C0 controls other than tab, LF, CR,
# (and form feed / vertical tab, which some spreadsheets emit harmlessly).
_BINARY = re.compile(rb"[\x00-\x06\x0e-\x1a\x1c-\x1f]")  # BEL, BS, ESC: shown escaped

MAX_LIST_BYTES = 512 * 1024 * 1024
"""Largest contact or DNC file read (512 MiB; a 1,000,000-row CRM export is ~100 MiB)."""


def decode_text(raw: bytes, source: str) -> tuple[str, str]:
    """Text of a contact/DNC file and the encoding used; raises :class:`ContactsError`.

    CRMs and spreadsheets export UTF-8 (with or without a BOM), Windows-1252 or Latin-1.
    UTF-8 is strict (any other 8-bit text almost never decodes as UTF-8 by chance), so
    the rule is: BOM or valid UTF-8 -> UTF-8; else cp1252; else (its five unassigned
    bytes) Latin-1. UTF-16 (BOM) is read too. A binary byte is refused with its row.
    """
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise ContactsError(source, 1, 1, f"broken UTF-16 text ({exc.reason}); "
                                "save the file as UTF-8") from None
    bad = _BINARY.search(raw)
    if bad is not None:
        i = bad.start()
        row = raw.count(b"\n", 0, i) + 1
        col = i - (raw.rfind(b"\n", 0, i) + 1) + 1
        raise ContactsError(source, row, col, f"byte 0x{raw[i]:02X} is not text; this does "
                            "not look like a CSV/text file (export it as CSV)")
    encoding = "utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "utf-8"
    try:
        return raw.decode(encoding), encoding
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


def read_text_file(path: Path) -> tuple[str, str]:
    """Read and decode a contact/DNC file; raises :class:`ContactsError`."""
    source = str(path)
    try:
        if path.is_dir():
            raise ContactsError(source, 1, 1, "this is a folder, not a file")
        if path.stat().st_size > MAX_LIST_BYTES:
            raise ContactsError(source, 1, 1, "the file is over 512 MiB; split it")
        raw = path.read_bytes()
    except OSError as exc:
        raise ContactsError(source, 1, 1,
                            f"cannot read: {exc.strerror or exc}; check the path") from None
    return decode_text(raw, source)


_DELIMITERS = (",", ";", "\t", "|")


def sniff_delimiter(text: str, wanted: str) -> str:
    """The delimiter of the header line: the one that yields the phone header, else the
    one that splits the header into the most fields (Excel in much of Europe writes ``;``)."""
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    best, best_n = ",", 1
    for d in _DELIMITERS:
        try:
            cells = [c.strip() for c in next(csv.reader([first], delimiter=d))]
        except (csv.Error, StopIteration):
            continue
        if wanted in cells:
            return d
        if len(cells) > best_n:
            best, best_n = d, len(cells)
    return best


def read_header(text: str, source: str, wanted: str = "phone") -> tuple[str, list[str]]:
    """The delimiter and the header (first non-blank line) of a decoded list, before any
    column is mapped (the import wizard shows them to choose the phone column).
    Raises :class:`ContactsError` for a file with no header."""
    delimiter = sniff_delimiter(text, wanted)
    lines = text.splitlines()
    at = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if at is None:
        raise ContactsError(source, 1, 1, "empty file; the first line must be a header")
    try:
        header = [h.strip() for h in next(csv.reader([lines[at]], delimiter=delimiter))]
    except (csv.Error, StopIteration) as exc:
        raise ContactsError(source, at + 1, 1, f"not a CSV header: {exc}") from None
    return delimiter, header


_REGION_ALIASES = {"UK": "GB"}


def _region_of(cell: str) -> str | None:
    code = cell.strip().upper()
    code = _REGION_ALIASES.get(code, code)
    return code if code in phonenumbers.SUPPORTED_REGIONS else None


def read_contacts(
    path: str | Path,
    *,
    region: str = "US",
    columns: ContactColumns | None = None,
    default_timezone: str = "UTC",
    seen: dict[str, str] | set[str] | None = None,
) -> ImportResult:
    """Parse one CSV; ``seen`` carries numbers across files so dedupe spans a campaign.

    ``seen`` maps each number to where it was first seen (``file:row``) so that every
    duplicate can say which row it repeats; a plain set is accepted too.
    """
    text, encoding = read_text_file(Path(path))
    return read_contacts_text(text, encoding, str(path), region=region, columns=columns,
                              default_timezone=default_timezone, seen=seen)


def read_contacts_text(
    text: str,
    encoding: str,
    source: str,
    *,
    region: str = "US",
    columns: ContactColumns | None = None,
    default_timezone: str = "UTC",
    seen: dict[str, str] | set[str] | None = None,
) -> ImportResult:
    """:func:`read_contacts` on text already read (``decode_text`` of an upload), with
    ``source`` naming it in every rejected row."""
    columns = columns or ContactColumns()
    first_at: dict[str, str] = {} if seen is None or isinstance(seen, set) else seen
    seen_set = seen if isinstance(seen, set) else None
    result = ImportResult()
    zone_ok = _ZoneCheck()
    result.encoding = encoding
    if result.encoding in ("cp1252", "latin-1"):
        result.warnings.append(Rejected(source, 1, f"not UTF-8: read as {result.encoding} "
                                        "(Windows/Latin-1); save as UTF-8 to be sure"))
    delimiter = result.delimiter = sniff_delimiter(text, columns.phone)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] = []
    try:
        while not any(header):  # blank lines before the header are harmless
            header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise ContactsError(source, 1, 1,
                            "empty file; the first line must be a header") from None
    except csv.Error as exc:
        raise ContactsError(source, reader.line_num, 1,
                            f"not a CSV header: {exc}") from None
    header_line = reader.line_num
    result.header = header
    index = {h: i for i, h in enumerate(header)}
    if columns.phone not in index:
        raise ContactsError(
            source, header_line, 1,
            f"no column {columns.phone!r} (headers: {', '.join(header)}); "
            "map yours with columns: {phone: <header>} in the campaign",
        )
    phone_i = index[columns.phone]
    tz_i = index.get(columns.timezone) if columns.timezone else None
    if columns.timezone and tz_i is None:
        raise ContactsError(source, 1, 1, f"no time-zone column {columns.timezone!r} "
                            f"(headers: {', '.join(header)})")
    country_i = index.get(columns.country) if columns.country else None
    if columns.country and country_i is None:
        raise ContactsError(source, 1, 1, f"no country column {columns.country!r} "
                            f"(headers: {', '.join(header)})")
    mapped: list[tuple[str, int]] = []
    for name, head in columns.field_map().items():
        if head not in index:
            raise ContactsError(source, 1, 1, f"no column {head!r} for field {name!r} "
                                f"(headers: {', '.join(header)})")
        mapped.append((name, index[head]))
    for row_no, row in _rows(reader, result, source):
        if len(row) != len(header):
            why = f"has {len(row)} fields, header has {len(header)}"
            if reader.line_num > row_no and any('"' in c or "\n" in c for c in row):
                why += (f"; a quote opened here is not closed before line {reader.line_num}"
                        " (remove the stray \" or close it)")
            result.rejected.append(Rejected(source, row_no, why))
            continue
        raw = row[phone_i].strip()
        if not raw:
            result.rejected.append(Rejected(source, row_no, f"empty {columns.phone!r}",
                                            phone_i + 1))
            continue
        row_region = region
        if country_i is not None and row[country_i].strip():
            found = _region_of(row[country_i])
            if found is None:
                result.rejected.append(Rejected(
                    source, row_no, f"unknown country {row[country_i].strip()!r}; use an "
                    "ISO 3166 code such as GB or DE", country_i + 1))
                continue
            row_region = found
        try:
            parsed = phonenumbers.parse(raw, row_region)
        except phonenumbers.NumberParseException as exc:
            why = str(exc).split(") ", 1)[-1]
            if _SCIENTIFIC.match(raw):
                why = ("a spreadsheet turned it into scientific notation and lost digits; "
                       "format the column as text and export again")
            result.rejected.append(Rejected(source, row_no, f"{raw!r} is not a number: {why}",
                                            phone_i + 1))
            continue
        # One number_type() answers both "valid?" and "geographic?" (it is the costly
        # step; is_valid_number and time_zones_for_number would each redo it).
        kind = phonenumbers.number_type(parsed)
        if kind == PhoneNumberType.UNKNOWN:
            result.rejected.append(Rejected(
                source, row_no, f"{raw!r} is not a valid number in region {row_region}",
                phone_i + 1))
            continue
        number = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        earlier = first_at.get(number) or (
            "an earlier row" if seen_set is not None and number in seen_set else None)
        if earlier is not None:
            result.duplicates += 1
            result.duplicate_rows.append(Rejected(
                source, row_no, f"duplicate of {number} at {earlier}", phone_i + 1))
            continue
        if tz_i is not None and row[tz_i].strip():
            tz = row[tz_i].strip()
            if not zone_ok(tz):
                result.rejected.append(Rejected(source, row_no, f"unknown time zone {tz!r}",
                                                tz_i + 1))
                continue
            zones: tuple[str, ...] = (tz,)
        else:
            zones = _zones(parsed, kind) or (default_timezone,)
        first_at[number] = f"{source}:{row_no}"
        if seen_set is not None:
            seen_set.add(number)
        fields = {h: v.strip() for h, v in zip(header, row, strict=True)}
        for name, i in mapped:
            fields[name] = row[i].strip()
        if parsed.extension:
            # The dialer cannot key an extension after answer: keep it for the tree/agent.
            fields["extension"] = parsed.extension
            result.warnings.append(Rejected(
                source, row_no, f"extension {parsed.extension} kept as field 'extension' "
                "(it is not dialed)", phone_i + 1))
        result.contacts.append(NewContact(number, zones, fields, source, row_no))
    if not result.contacts and not result.rejected and not result.duplicate_rows:
        result.warnings.append(Rejected(source, header_line, "no contacts: the file has a "
                                        "header and no rows"))
    return result


_SCIENTIFIC = re.compile(r"^\s*[0-9]\.[0-9]+[eE]\+?[0-9]+\s*$")


def _zones(parsed: phonenumbers.PhoneNumber, kind: int) -> tuple[str, ...]:
    if is_number_type_geographical(kind, parsed.country_code or 0):
        found = pn_timezone.time_zones_for_geographical_number(parsed)
    else:
        found = pn_timezone._country_level_time_zones_for_number(parsed)
    return tuple(z for z in found if z != _UNKNOWN_TZ)


def _rows(reader: _Reader, result: ImportResult, source: str
          ) -> Iterator[tuple[int, list[str]]]:
    """Data rows with the line each starts on; blank lines skipped, broken quoting
    reported (a quoted field may span lines: the row is named by its first line)."""
    end = reader.line_num
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            end = reader.line_num
            result.rejected.append(Rejected(source, start, str(exc)))
            continue
        end = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        yield start, row


@dataclass
class ImportReport:
    """Outcome of importing a campaign's lists into the store.

    ``duplicates`` counts repeats inside the lists plus numbers already stored;
    ``duplicate_rows`` lists every repeat inside the lists (for the rejects report);
    ``dnc`` counts added contacts that are on the campaign's do-not-call list.
    """

    added: int
    duplicates: int
    rejected: list[Rejected]
    duplicate_rows: list[Rejected] = field(default_factory=list)
    warnings: list[Rejected] = field(default_factory=list)
    dnc: int = 0
    kept_tree: str | None = None
    """The pinned tree version the stored campaign kept instead of the file's tree."""


@dataclass
class ListsRead:
    """Every contact list of a campaign read (nothing stored yet)."""

    contacts: list[NewContact] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    duplicate_rows: list[Rejected] = field(default_factory=list)
    warnings: list[Rejected] = field(default_factory=list)
    headers: dict[str, list[str]] = field(default_factory=dict)


def read_lists(campaign: Campaign) -> ListsRead:
    """Read all of a campaign's lists (dedupe across them); raises :class:`ContactsError`
    for the first file that cannot be read at all."""
    seen: dict[str, str] = {}
    out = ListsRead()
    for source in campaign.contacts:
        result = read_contacts(source, region=campaign.default_region,
                               columns=campaign.columns,
                               default_timezone=campaign.default_timezone, seen=seen)
        out.contacts.extend(result.contacts)
        out.rejected.extend(result.rejected)
        out.duplicate_rows.extend(result.duplicate_rows)
        out.warnings.extend(result.warnings)
        out.headers[source] = result.header
    return out


def import_campaign(store: Store, campaign: Campaign, lists: ListsRead | None = None,
                    *, tree_from_file: bool = False,
                    unpinned: Callable[[Connection, str], None] | None = None
                    ) -> ImportReport:
    """Save the campaign definition and import all its contact lists (dedupe across them).

    Every list is read (or was, ``lists``) before anything is written, so a list that
    cannot be read leaves the store as it was (no campaign saved without its contacts).
    A stored campaign pinned to a tree version keeps it (``kept_tree`` says which) unless
    ``tree_from_file``: importing the same file again never moves a pin (issue 17);
    ``unpinned(conn, pin)`` runs in the transaction that replaces one (its audit line).
    """
    from autocall.campaign.schedule import DncList

    if lists is None:
        lists = read_lists(campaign)
    dnc = DncList.from_files(campaign.dnc, campaign.default_region)
    on_dnc = sum(1 for c in lists.contacts if c.number in dnc)
    store.save_campaign(campaign, keep_pin=not tree_from_file, unpinned=unpinned)
    runs = store.tree_of(campaign.name)
    added, already = store.add_contacts(campaign.name, lists.contacts)
    return ImportReport(added, len(lists.duplicate_rows) + already, lists.rejected,
                        lists.duplicate_rows, lists.warnings, on_dnc,
                        kept_tree=runs if runs != campaign.tree else None)


def read_upload(data: bytes, source: str, campaign: Campaign,
                columns: ContactColumns | None = None) -> ImportResult:
    """An uploaded list (its bytes) read with the campaign's rules (region, default time
    zone, its ``columns:`` unless ``columns`` maps other headers); nothing stored. This is
    what the API's upload and the console's import wizard both read with.
    Raises :class:`ContactsError` when the file cannot be read at all."""
    text, encoding = decode_text(data, source)
    return read_contacts_text(text, encoding, source, region=campaign.default_region,
                              columns=columns or campaign.columns,
                              default_timezone=campaign.default_timezone, seen={})


@dataclass
class ImportPreview:
    """What importing a read list into a campaign would do, before anything is stored.

    ``new``: the contacts it would add; ``stored``: those the campaign has already (they
    are skipped); ``dnc``: the list's contacts on a do-not-call list (the store's or the
    campaign's files); they are stored but never dialed, DNC being checked at dial time.
    """

    result: ImportResult
    new: list[NewContact]
    stored: list[NewContact]
    dnc: list[NewContact]

    @property
    def rows(self) -> int:
        """Data rows read (added, already stored, rejected or repeated in the file)."""
        r = self.result
        return len(r.contacts) + len(r.rejected) + len(r.duplicate_rows)

    @property
    def duplicates(self) -> int:
        """Rows that add nothing: repeats inside the file plus numbers already stored."""
        return len(self.result.duplicate_rows) + len(self.stored)


def dnc_hits(store: Store, campaign: Campaign, numbers: Iterable[str]) -> set[str]:
    """Which of ``numbers`` are on a do-not-call list: the store's or the campaign's files."""
    from autocall.campaign.schedule import DncList

    wanted = list(numbers)
    files = DncList.from_files(campaign.dnc, campaign.default_region)
    return {n for n in wanted if n in files} | store.dnc_numbers(wanted)


def preview_import(store: Store, campaign: Campaign, result: ImportResult) -> ImportPreview:
    """:class:`ImportPreview` of ``result`` (from :func:`read_upload`) for ``campaign``."""
    numbers = [c.number for c in result.contacts]
    stored = store.stored_numbers(campaign.name, numbers)
    listed = dnc_hits(store, campaign, numbers)
    return ImportPreview(result,
                         new=[c for c in result.contacts if c.number not in stored],
                         stored=[c for c in result.contacts if c.number in stored],
                         dnc=[c for c in result.contacts if c.number in listed])
