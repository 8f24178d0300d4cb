"""``/v1/campaigns/{name}/contacts``: upload a CSV with the import rules of ``autocall
campaign import`` (decode, E.164, time zones, dedupe, the reject report), or preview it
(``?dry_run=true``: what would be added, rejected, duplicate or on the DNC list, and
nothing stored); list a campaign's contacts by page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from autocall.campaign.contacts import (
    ContactsError,
    ImportResult,
    Rejected,
    dnc_hits,
    preview_import,
    read_upload,
)
from autocall.campaign.model import Campaign, ContactColumns
from autocall.campaign.store import Store
from autocall.web import accounts, idempotency
from autocall.web.accounts import Principal
from autocall.web.api.common import (
    MAX_UPLOAD,
    PERSONAL,
    WRITE,
    Name,
    campaign_or_404,
    page_limit,
    store_for,
)
from autocall.web.api.common import upload as receive_upload
from autocall.web.auth import store_of
from autocall.web.problems import Problem

router = APIRouter(prefix="/v1/campaigns", tags=["contacts"])


class RowProblem(BaseModel):
    """A skipped row (or a warning): its line in the file (header = 1), the 1-based
    column (0: the whole row), that column's header, and why."""

    row: int
    column: int
    field: str | None
    reason: str


class ImportOut(BaseModel):
    campaign: str
    dry_run: bool
    source: str
    encoding: str
    delimiter: str
    header: list[str]
    rows: int
    added: int
    duplicates: int
    dnc: int
    rejected: list[RowProblem]
    duplicate_rows: list[RowProblem]
    warnings: list[RowProblem]


class ContactOut(BaseModel):
    id: int
    number: str
    state: str
    attempts: int
    last_outcome: str | None
    next_at: datetime | None
    timezones: list[str]
    fields: dict[str, str]


class ContactPage(BaseModel):
    items: list[ContactOut]
    next: int | None


def _rows(found: list[Rejected], header: list[str]) -> list[RowProblem]:
    return [RowProblem(row=r.row, column=r.column,
                       field=header[r.column - 1] if 0 < r.column <= len(header) else None,
                       reason=r.reason) for r in found]


def _columns(campaign: Campaign, raw: str | None) -> ContactColumns:
    """The campaign's header mapping, or the one the wizard sends (JSON, as the YAML's
    ``columns:``: ``{"phone": "Telefon", "first_name": "Vorname"}``)."""
    if raw is None:
        return campaign.columns
    try:
        return ContactColumns.model_validate_json(raw)
    except ValidationError as exc:
        raise Problem(422, "Invalid request", "columns: a JSON object mapping fields to "
                      "CSV headers", errors=[{"loc": ["query", "columns", *e["loc"]],
                                              "msg": e["msg"]} for e in exc.errors()]
                      ) from None


def _read(campaign: Campaign, columns: ContactColumns, data: bytes, source: str
          ) -> ImportResult:
    try:
        return read_upload(data, source, campaign, columns)
    except ContactsError as exc:
        raise Problem(422, "Unreadable contact list", exc.message,
                      errors=[{"loc": ["file", exc.row, exc.column], "row": exc.row,
                               "column": exc.column, "msg": exc.message}]) from None


def _import(store: Store, campaign: Campaign, result: ImportResult, source: str,
            dry_run: bool, who: Principal) -> dict[str, Any]:
    """Store (or, dry, preview) the contacts; the answer as JSON (runs in a thread)."""
    if dry_run:
        preview = preview_import(store, campaign, result)
        added, already, on_dnc = len(preview.new), len(preview.stored), len(preview.dnc)
    else:
        def audit(conn: Connection, added: int, duplicates: int) -> None:
            accounts.audit(conn, who, "contacts.import", campaign.name, source=source,
                           added=added, duplicates=duplicates, rejected=len(result.rejected))

        added, already = store.add_contacts(campaign.name, result.contacts, also=audit)
        on_dnc = len(dnc_hits(store, campaign, (c.number for c in result.contacts)))
    out = ImportOut(
        campaign=campaign.name, dry_run=dry_run, source=source, encoding=result.encoding,
        delimiter=result.delimiter, header=result.header,
        rows=len(result.contacts) + len(result.rejected) + len(result.duplicate_rows),
        added=added, duplicates=len(result.duplicate_rows) + already, dnc=on_dnc,
        rejected=_rows(result.rejected, result.header),
        duplicate_rows=_rows(result.duplicate_rows, result.header),
        warnings=_rows(result.warnings, result.header))
    return out.model_dump(mode="json")


@router.post("/{name}/contacts", response_model=ImportOut,
             responses={413: {"description": f"over {MAX_UPLOAD // 2**20} MiB"},
                        422: {"description": "the file cannot be read (row and column)"}},
             openapi_extra={"requestBody": {"content": {
                 "multipart/form-data": {"schema": {"type": "object", "properties": {
                     "file": {"type": "string", "format": "binary"}}}},
                 "text/csv": {"schema": {"type": "string"}}}}})
async def upload_contacts(name: Name, request: Request, dry_run: bool = Query(False),
                          columns: str | None = Query(None, max_length=4000, description=(
                              "JSON header mapping, as the campaign's columns: (default: "
                              "the campaign's)")),
                          who: Principal = WRITE) -> JSONResponse:
    """Import a CSV into the campaign (multipart field ``file``, or a ``text/csv`` body)
    with the rules of ``autocall campaign import``: bad rows are reported with their
    line, column and reason and skipped. ``?dry_run=true`` previews without storing;
    ``?columns=`` maps other headers (the import wizard).
    Takes an ``Idempotency-Key`` (a retried upload never imports twice)."""
    store = store_of(request)
    campaign, _, _ = await run_in_threadpool(campaign_or_404, store, name)
    mapping = _columns(campaign, columns)
    data, source = await receive_upload(request)
    result = await run_in_threadpool(_read, campaign, mapping, data, source)
    if dry_run:
        body = await run_in_threadpool(_import, store, campaign, result, source, True, who)
        return JSONResponse(body)
    key = idempotency.key_of(request, who, name, mapping.model_dump_json(), data)
    replay = await run_in_threadpool(idempotency.claim, store.engine, key)
    if replay is not None:
        return replay
    try:
        body = await run_in_threadpool(_import, store, campaign, result, source, False, who)
    except BaseException:
        await run_in_threadpool(idempotency.release, store.engine, key)
        raise
    return await run_in_threadpool(idempotency.finish, store.engine, key, 200, body)


@router.get("/{name}/contacts", response_model=ContactPage)
def list_contacts(name: Name, request: Request, limit: int = Query(100),
                  after: int = Query(0, ge=0), _: Principal = PERSONAL) -> ContactPage:
    """A campaign's contacts by id; pass ``next`` as ``after`` for the next page."""
    store = store_for(request, name)
    rows = store.contacts_page(name, after, page_limit(limit))
    items = [ContactOut(id=c.id, number=c.number, state=c.state.value, attempts=c.attempts,
                        last_outcome=c.last_outcome.value if c.last_outcome else None,
                        next_at=c.next_at, timezones=list(c.timezones), fields=dict(c.fields))
             for c in rows]
    return ContactPage(items=items, next=items[-1].id if len(items) == limit else None)
