"""The contact import wizard's state, between its steps: upload, map and preview, confirm.

An uploaded list is kept in ``autocall_imports`` (migration 0005) with its SHA-256, so
every step reads the same bytes, on any web node. The preview is what
:func:`autocall.campaign.contacts.preview_import` says (the API's dry run); its
:func:`digest` travels in the confirmation form with the upload's SHA-256. The
confirmation imports only if the bytes and the preview are still what the user saw
(else :class:`Changed`: show the new preview), and only once: the upload is marked
imported in the transaction that adds the contacts, so a second confirmation (a double
click, a reload, another tab, another node) finds it imported and adds nothing.

No HTTP here: :mod:`autocall.web.pages.imports` is the pages' thin layer over it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import Column, Table
from sqlalchemy.types import DateTime, Integer, LargeBinary, String, Text

from autocall.campaign.contacts import ImportPreview, Rejected, preview_import, read_upload
from autocall.campaign.db import metadata, reading
from autocall.campaign.model import Campaign, ContactColumns, NewContact
from autocall.campaign.store import Store
from autocall.web import accounts
from autocall.web.accounts import Principal

KEEP = timedelta(hours=24)
"""An upload not confirmed within a day is forgotten (the list holds personal data)."""
SHOWN = 200
"""Rows listed per table in a preview or a result (the counts are always whole)."""

imports = Table(
    "autocall_imports", metadata,
    Column("id", String(40), primary_key=True),
    Column("campaign", String(100), nullable=False),
    Column("created_by", String(120), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("filename", String(200), nullable=False),
    Column("size", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("data", LargeBinary),
    Column("imported_at", DateTime),
    Column("imported_by", String(120)),
    Column("result", Text),
)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Upload:
    """A staged list. ``data`` is None once imported (``result`` then says what happened)."""

    id: str
    campaign: str
    created_by: str
    created_at: datetime
    filename: str
    size: int
    sha256: str
    data: bytes | None
    imported_at: datetime | None
    imported_by: str | None
    result: dict[str, Any] | None


def _upload(row: Any) -> Upload:
    return Upload(row.id, row.campaign, row.created_by, row.created_at, row.filename,
                  row.size, row.sha256, row.data, row.imported_at, row.imported_by,
                  json.loads(row.result) if row.result else None)


def stage(engine: Engine, campaign: str, who: Principal, filename: str, data: bytes
          ) -> Upload:
    """Keep an uploaded list for the wizard's next steps (and forget stale ones)."""
    purge(engine)
    staged = Upload(secrets.token_urlsafe(18), campaign, who.actor, _now(), filename[:200],
                    len(data), hashlib.sha256(data).hexdigest(), data, None, None, None)
    with engine.begin() as conn:
        conn.execute(insert(imports).values(
            id=staged.id, campaign=campaign, created_by=staged.created_by,
            created_at=staged.created_at, filename=staged.filename, size=staged.size,
            sha256=staged.sha256, data=data))
    return staged


def load(engine: Engine, campaign: str, upload_id: str) -> Upload | None:
    """The staged upload ``upload_id`` of ``campaign`` (None: unknown or purged)."""
    with reading(engine) as conn:
        row = conn.execute(select(imports).where(imports.c.id == upload_id,
                                                 imports.c.campaign == campaign)).first()
    return None if row is None else _upload(row)


def purge(engine: Engine, keep: timedelta = KEEP) -> int:
    """Forget uploads (imported or not) older than ``keep``."""
    with engine.begin() as conn:
        return int(conn.execute(delete(imports).where(
            imports.c.created_at < _now() - keep)).rowcount)


# Headers that name the phone column in the exports we meet (lower case, no spaces).
PHONE_HEADERS = ("phone", "phonenumber", "telephone", "tel", "telefon", "telefonnummer",
                 "rufnummer", "téléphone", "telefono", "teléfono", "numéro", "numero",
                 "number", "mobile", "mobil", "handy", "cell", "cellphone", "msisdn", "e164")


def guess_columns(columns: ContactColumns, header: list[str]) -> ContactColumns:
    """The campaign's mapping where the file has those headers; the phone column guessed
    from common names where it has not (the user confirms or changes it)."""
    phone = columns.phone
    if phone not in header:
        squeezed = {h.lower().replace(" ", "").replace("_", "").replace("-", ""): h
                    for h in header}
        phone = next((squeezed[n] for n in PHONE_HEADERS if n in squeezed), "")
    return ContactColumns.model_validate({
        "phone": phone or columns.phone,
        "timezone": columns.timezone if columns.timezone in header else None,
        "country": columns.country if columns.country in header else None,
        **{f: h for f, h in columns.field_map().items() if h in header}})


# --- the preview ------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """One line of a preview table: the file's line, the column's header, and what."""

    row: int
    field: str
    text: str


def _problems(found: Sequence[Rejected], header: list[str]) -> list[Row]:
    return [Row(r.row, header[r.column - 1] if 0 < r.column <= len(header) else "",
                r.reason) for r in found]


def _numbers(found: Sequence[NewContact], phone: str) -> list[Row]:
    return [Row(c.row, phone, c.number) for c in found]


@dataclass(frozen=True)
class Preview:
    """What confirming would do, as the wizard shows it (whole lists; pages cut them)."""

    columns: ContactColumns
    encoding: str
    delimiter: str
    header: list[str]
    rows: int
    new: list[NewContact]
    rejected: list[Row]
    duplicate_rows: list[Row]
    stored: list[Row]
    dnc: list[Row]
    warnings: list[Row]
    digest: str


def digest(columns: ContactColumns, found: ImportPreview) -> str:
    """SHA-256 naming a preview's outcome: the mapping, every contact to add (row, number,
    zones, fields), every row skipped and why, every DNC hit. Equal digests: the
    confirmation would do exactly what was shown."""
    r = found.result
    body = json.dumps({
        "columns": columns.model_dump(mode="json"),
        "new": [[c.row, c.number, list(c.timezones), c.fields] for c in found.new],
        "stored": [c.row for c in found.stored],
        "dnc": [c.row for c in found.dnc],
        "rejected": [[x.row, x.column, x.reason] for x in r.rejected],
        "duplicates": [[x.row, x.reason] for x in r.duplicate_rows],
    }, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


def preview(store: Store, campaign: Campaign, upload: Upload, columns: ContactColumns
            ) -> tuple[Preview, ImportPreview]:
    """Read the staged bytes with ``columns`` and preview them (nothing stored).

    Raises :class:`autocall.campaign.contacts.ContactsError` when the mapping does not
    fit the file (no such header) or the file cannot be read."""
    if upload.data is None:
        raise ValueError(f"upload {upload.id} was imported already")
    result = read_upload(upload.data, upload.filename, campaign, columns)
    found = preview_import(store, campaign, result)
    header = result.header
    return Preview(
        columns=columns, encoding=result.encoding, delimiter=result.delimiter,
        header=header, rows=found.rows, new=found.new,
        rejected=_problems(result.rejected, header),
        duplicate_rows=_problems(result.duplicate_rows, header),
        stored=_numbers(found.stored, columns.phone), dnc=_numbers(found.dnc, columns.phone),
        warnings=_problems(result.warnings, header), digest=digest(columns, found)), found


# --- the confirmation -------------------------------------------------------------------

class Changed(Exception):
    """The confirmation does not match the upload or its preview any more (409)."""


class AlreadyImported(Exception):
    """Another confirmation of the same upload committed first."""


def _rows_json(rows: list[Row]) -> list[dict[str, Any]]:
    return [{"row": r.row, "field": r.field, "text": r.text} for r in rows[:SHOWN]]


def confirm(store: Store, campaign: Campaign, upload: Upload, who: Principal,
            sha256: str, seen_digest: str, columns: ContactColumns) -> Upload:
    """Import ``upload`` as previewed (``sha256`` and ``seen_digest`` from the form), once.

    Returns the upload as stored afterwards (``result`` set). A confirmation of an upload
    already imported returns it unchanged (nothing added twice). Raises :class:`Changed`
    when the bytes or the preview differ from what the user saw."""
    if upload.data is None:
        return upload
    if sha256 != upload.sha256:
        raise Changed("the file is not the one previewed (its SHA-256 differs): "
                      "upload it again")
    shown, found = preview(store, campaign, upload, columns)
    if shown.digest != seen_digest:
        now = load(store.engine, campaign.name, upload.id)
        if now is not None and now.result is not None:
            return now  # a twin confirmation imported it meanwhile: that is what changed
        raise Changed("the list or the campaign changed since the preview (contacts were "
                      "added or a number was put on the do-not-call list): check the new "
                      "preview and confirm again")
    result = found.result

    def mark(conn: Connection, added: int, already: int) -> None:
        outcome = {
            "added": added, "already": already, "rows": shown.rows,
            "duplicate_rows": len(shown.duplicate_rows), "rejected": len(shown.rejected),
            "dnc": len(shown.dnc), "encoding": shown.encoding, "delimiter": shown.delimiter,
            "columns": columns.model_dump(mode="json"),
            "rejected_rows": _rows_json(shown.rejected),
            "duplicate_list": _rows_json(shown.duplicate_rows),
            "dnc_list": _rows_json(shown.dnc)}
        done = conn.execute(update(imports).where(
            imports.c.id == upload.id, imports.c.imported_at.is_(None)).values(
            imported_at=_now(), imported_by=who.actor, data=None,
            result=json.dumps(outcome))).rowcount
        if not done:
            raise AlreadyImported  # rolls the inserts back: the first one did it
        accounts.audit(conn, who, "contacts.import", campaign.name, source=upload.filename,
                       sha256=upload.sha256, added=added, duplicates=already + len(
                           shown.duplicate_rows), rejected=len(shown.rejected),
                       dnc=len(shown.dnc))

    with contextlib.suppress(AlreadyImported):  # the first confirmation did it
        store.add_contacts(campaign.name, result.contacts, also=mark)
    after = load(store.engine, campaign.name, upload.id)
    if after is None:  # purged in between: only after a day, but say it plainly
        raise Changed("this upload has expired; upload the file again")
    return after
