"""``/v1/dnc``: the store's do-not-call list. Every dialer checks it when it claims a
contact (``Store.claim``), so a number added here is never dialed again, by any node.
Numbers are normalised to E.164 as contact lists and DNC files are."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from autocall.campaign.contacts import ContactsError, decode_text
from autocall.campaign.schedule import parse_dnc_text
from autocall.web import accounts, idempotency
from autocall.web import dnc as dnc_list
from autocall.web.accounts import Principal
from autocall.web.api.common import PERSONAL, WRITE, e164, page_limit, region_code, upload
from autocall.web.auth import store_of
from autocall.web.problems import Problem

router = APIRouter(prefix="/v1/dnc", tags=["dnc"])


class DncAdd(BaseModel):
    number: str = Field(min_length=1, max_length=100)
    region: str = Field(default="US", min_length=2, max_length=2,
                        description="ISO 3166 region for a national number")


class DncEntry(BaseModel):
    number: str
    listed: bool
    added_at: datetime | None = None
    added_by: str | None = None
    source: str | None = None


class DncPage(BaseModel):
    items: list[DncEntry]
    total: int
    next: str | None


class LineProblem(BaseModel):
    row: int
    column: int
    reason: str


class DncUploaded(BaseModel):
    numbers: int
    added: int
    already: int
    rejected: list[LineProblem]


def _entry(engine: Any, number: str) -> DncEntry:
    found = dnc_list.entry(engine, number)
    if found is None:
        return DncEntry(number=number, listed=False)
    return DncEntry(number=found.number, listed=True, added_at=found.added_at,
                    added_by=found.added_by, source=found.source)


@router.post("", status_code=201, response_model=DncEntry)
def add_number(body: DncAdd, request: Request, who: Principal = WRITE) -> DncEntry:
    """Put one number on the do-not-call list (adding it again changes nothing)."""
    store = store_of(request)
    number = e164(body.number, body.region, ["body", "number"])
    with store.engine.begin() as conn:
        if dnc_list.add_many(conn, [number], who.actor, "api"):
            accounts.audit(conn, who, "dnc.add", number)
    return _entry(store.engine, number)


@router.post("/upload", response_model=DncUploaded,
             openapi_extra={"requestBody": {"content": {
                 "multipart/form-data": {"schema": {"type": "object", "properties": {
                     "file": {"type": "string", "format": "binary"}}}},
                 "text/plain": {"schema": {"type": "string"}}}}})
async def upload_numbers(request: Request, region: str = Query("US", min_length=2,
                                                               max_length=2),
                         who: Principal = WRITE) -> JSONResponse:
    """Add a list of numbers (one a line, or a CSV export; ``#`` comments) as the
    campaign DNC files are read; lines not understood are reported and not added.
    Takes an ``Idempotency-Key``."""
    store = store_of(request)
    data, source = await upload(request)
    region = region_code(region, ["query", "region"])
    try:
        text, _ = decode_text(data, source)
    except ContactsError as exc:
        raise Problem(422, "Unreadable list", exc.message,
                      errors=[{"loc": ["file", exc.row, exc.column], "row": exc.row,
                               "column": exc.column, "msg": exc.message}]) from None
    numbers, problems = parse_dnc_text(text, source, region)
    key = idempotency.key_of(request, who, region, data)

    def effect(conn: Connection) -> tuple[int, Any]:
        added = dnc_list.add_many(conn, numbers, who.actor, source)
        accounts.audit(conn, who, "dnc.upload", source, numbers=len(numbers), added=added)
        out = DncUploaded(numbers=len(numbers), added=added, already=len(numbers) - added,
                          rejected=[LineProblem(row=p.line, column=p.column, reason=p.message)
                                    for p in problems])
        return 200, out.model_dump(mode="json")

    return await run_in_threadpool(idempotency.once, store.engine, key, effect)


@router.get("", response_model=DncPage)
def list_numbers(request: Request, limit: int = Query(100),
                 after: str | None = Query(None, pattern=r"^\+[0-9]{1,19}$"),
                 _: Principal = PERSONAL) -> DncPage:
    """The list by number; pass ``next`` as ``after`` for the next page."""
    rows, total = dnc_list.page(store_of(request).engine, after, page_limit(limit))
    items = [DncEntry(number=r.number, listed=True, added_at=r.added_at, added_by=r.added_by,
                      source=r.source) for r in rows]
    return DncPage(items=items, total=total,
                   next=items[-1].number if len(items) == limit else None)


@router.get("/{number}", response_model=DncEntry)
def check_number(number: str, request: Request, region: str = "US",
                 _: Principal = PERSONAL) -> DncEntry:
    """Is this number on the list?"""
    return _entry(store_of(request).engine, e164(number, region, ["path", "number"]))


@router.delete("/{number}", response_model=DncEntry)
def remove_number(number: str, request: Request, region: str = "US",
                  who: Principal = WRITE) -> DncEntry:
    """Take a number off the list (404 if it is not on it)."""
    store = store_of(request)
    e = e164(number, region, ["path", "number"])
    with store.engine.begin() as conn:
        if not dnc_list.remove(conn, e):
            raise Problem(404, "Not Found", f"{e} is not on the do-not-call list")
        accounts.audit(conn, who, "dnc.remove", e)
    return DncEntry(number=e, listed=False)
