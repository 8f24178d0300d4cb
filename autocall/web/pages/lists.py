"""The console's recordings and do-not-call pages.

``GET  /recordings``                 recordings, newest first: play in the page (the audio
                                     comes from ``/v1/recordings/{id}/audio`` with range
                                     requests), download, delete
``POST /recordings/{id}/delete``     delete one recording's audio (the record stays)
``POST /recordings/expire``          delete every recording older than
                                     ``AUTOCALL_RECORDING_RETENTION_DAYS``
``GET  /dnc?number=…``               the do-not-call list, and whether a number is on it
``POST /dnc/add`` ``/dnc/remove``    one number
``POST /dnc/upload``                 a list (one number a line, or a CSV export)

Admins, marketers and viewers see them (designers do not see numbers); only admins and
marketers change anything. Every change is audited in the store, as the API's are.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from autocall.campaign.contacts import ContactsError, decode_text
from autocall.campaign.schedule import normalize_dnc, parse_dnc_text
from autocall.web import accounts, session
from autocall.web import dnc as dnc_list
from autocall.web import recordings as recs
from autocall.web.accounts import Principal
from autocall.web.api.common import MAX_UPLOAD
from autocall.web.auth import settings_of, store_of
from autocall.web.pages.imports import limit_upload
from autocall.web.pages.render import render
from autocall.web.pages.routes import CONTACT_ROLES, STEER_ROLES, Who, _may

PAGE_SIZE = 50

router = APIRouter(include_in_schema=False, dependencies=[Depends(session.csrf_protect)])
uploads = APIRouter(include_in_schema=False,
                    dependencies=[Depends(limit_upload), Depends(session.csrf_protect)])


def install(app: FastAPI) -> None:
    app.include_router(uploads)
    app.include_router(router)


# --- recordings -------------------------------------------------------------------------

@router.get("/recordings", response_class=HTMLResponse)
async def recordings_page(request: Request, who: Who,
                          kind: Literal["attempt", "call"] = "attempt",
                          before: Annotated[int | None, Query(ge=1, le=recs.MAX_ID)] = None,
                          message: Annotated[str | None, Query(max_length=200)] = None
                          ) -> Response:
    _may(who, CONTACT_ROLES, "see recordings (they hold callers' voices)")
    settings = settings_of(request)
    rows = await asyncio.to_thread(recs.listing, store_of(request).engine, settings, kind,
                                   newest=True, before=before, limit=PAGE_SIZE + 1)
    days = settings.recording_retention_days
    expired = await asyncio.to_thread(recs.expired, store_of(request).engine, settings,
                                      datetime.now(UTC))
    now = datetime.now(UTC)
    return render(request, "recordings.html", {
        "kind": kind, "rows": rows[:PAGE_SIZE], "now": now, "days": days,
        "expired": len(expired), "may_delete": who.role in STEER_ROLES,
        "older": int(rows[PAGE_SIZE - 1].id.split("-")[1]) if len(rows) > PAGE_SIZE
        else None, "message": message}, who=who)


def _back(kind: str, message: str) -> RedirectResponse:
    return RedirectResponse(f"/recordings?kind={kind}&message={quote(message)}",
                            status_code=303)


@router.post("/recordings/expire")
async def expire_recordings(request: Request, who: Who) -> Response:
    """Delete every recording older than the retention setting (a 409 page if unset)."""
    _may(who, STEER_ROLES, "delete recordings")
    settings = settings_of(request)
    days = settings.recording_retention_days
    if days is None:
        return render(request, "error.html", {
            "title": "No retention setting", "back": "/recordings",
            "detail": "set AUTOCALL_RECORDING_RETENTION_DAYS (for example 90) on the web "
                      "node to delete recordings by age"}, status=409, who=who)
    engine = store_of(request).engine

    def run() -> int:
        return sum(recs.delete(engine, r, who, f"older than {days} days")
                   for r in recs.expired(engine, settings, datetime.now(UTC)))

    count = await asyncio.to_thread(run)
    return _back("attempt", f"{count} recording(s) older than {days} days deleted")


@router.post("/recordings/{rid}/delete")
async def delete_recording(request: Request, rid: str, who: Who) -> Response:
    _may(who, STEER_ROLES, "delete recordings")
    engine = store_of(request).engine
    found = await asyncio.to_thread(recs.one, engine, settings_of(request), rid)
    if found is None:
        return render(request, "error.html", {"title": "Not found", "back": "/recordings",
                                              "detail": f"There is no recording {rid[:40]!r}."},
                      status=404, who=who)
    done = await asyncio.to_thread(recs.delete, engine, found, who, "console")
    return _back(found.kind, f"recording {rid} deleted" if done else
                 f"recording {rid} had no file to delete")


# --- do-not-call ------------------------------------------------------------------------

def _dnc_context(request: Request, after: str | None, number: str | None,
                 region: str) -> dict[str, object]:
    engine = store_of(request).engine
    rows, total = dnc_list.page(engine, after, PAGE_SIZE)
    checked: dict[str, object] | None = None
    if number:
        e164 = normalize_dnc(number[:100], region)
        if e164 is None:
            checked = {"asked": number, "error": f"{number[:40]!r} is not a valid phone "
                       f"number in region {region} or in international form (+…)"}
        else:
            checked = {"asked": number, "number": e164,
                       "entry": dnc_list.entry(engine, e164)}
    return {"rows": rows, "total": total, "checked": checked, "region": region,
            "next": rows[-1].number if len(rows) == PAGE_SIZE else None}


async def _dnc_page(request: Request, who: Principal, *, after: str | None = None,
                    number: str | None = None, region: str = "US",
                    message: str | None = None, error: str | None = None,
                    rejected: list[str] | None = None, status: int = 200) -> Response:
    context = await asyncio.to_thread(_dnc_context, request, after, number, region)
    return render(request, "dnc.html", {
        **context, "may_change": who.role in STEER_ROLES, "message": message,
        "error": error, "rejected": rejected or [], "max_mib": MAX_UPLOAD // 2**20},
        status=status, who=who)


REGION = Annotated[str, Query(min_length=2, max_length=2, pattern=r"^[A-Za-z]{2}$")]


@router.get("/dnc", response_class=HTMLResponse)
async def dnc_page(request: Request, who: Who,
                   number: Annotated[str | None, Query(max_length=100)] = None,
                   after: Annotated[str | None, Query(pattern=r"^\+[0-9]{1,19}$")] = None,
                   region: REGION = "US",
                   message: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    _may(who, CONTACT_ROLES, "see the do-not-call list")
    return await _dnc_page(request, who, after=after, number=number, region=region.upper(),
                           message=message)


def _e164_or_error(raw: str, region: str) -> tuple[str | None, str | None]:
    number = normalize_dnc(raw[:100], region.upper())
    if number is None:
        return None, (f"{raw[:40]!r} is not a valid phone number in region "
                      f"{region.upper()} or in international form (+…)")
    return number, None


@router.post("/dnc/add", response_class=HTMLResponse)
async def dnc_add(request: Request, who: Who,
                  number: Annotated[str, Form(min_length=1, max_length=100)],
                  region: Annotated[str, Form(pattern=r"^[A-Za-z]{2}$")] = "US") -> Response:
    _may(who, STEER_ROLES, "change the do-not-call list")
    e164, error = _e164_or_error(number, region)
    if e164 is None:
        return await _dnc_page(request, who, error=error, status=422)
    engine = store_of(request).engine

    def add() -> int:
        with engine.begin() as conn:
            added = dnc_list.add_many(conn, [e164], who.actor, "console")
            if added:
                accounts.audit(conn, who, "dnc.add", e164)
            return added

    added = await asyncio.to_thread(add)
    return RedirectResponse(f"/dnc?number={quote(e164)}&message=" + quote(
        f"{e164} added" if added else f"{e164} was already on the list"), status_code=303)


@router.post("/dnc/remove", response_class=HTMLResponse)
async def dnc_remove(request: Request, who: Who,
                     number: Annotated[str, Form(min_length=1, max_length=100)]) -> Response:
    _may(who, STEER_ROLES, "change the do-not-call list")
    e164, error = _e164_or_error(number, "US")
    if e164 is None:
        return await _dnc_page(request, who, error=error, status=422)
    engine = store_of(request).engine

    def remove() -> bool:
        with engine.begin() as conn:
            done = dnc_list.remove(conn, e164)
            if done:
                accounts.audit(conn, who, "dnc.remove", e164)
            return done

    if not await asyncio.to_thread(remove):
        return await _dnc_page(request, who, error=f"{e164} is not on the do-not-call list",
                               status=404)
    return RedirectResponse("/dnc?message=" + quote(f"{e164} removed"), status_code=303)


@uploads.post("/dnc/upload", response_class=HTMLResponse)
async def dnc_upload(request: Request, who: Who) -> Response:
    """Add a list as the campaign DNC files are read; lines not understood are shown and
    not added. The form is read here so :func:`limit_upload` sees the length first."""
    _may(who, STEER_ROLES, "change the do-not-call list")
    form = await request.form()
    file, region = form.get("file"), form.get("region")
    region = region.upper() if isinstance(region, str) and len(region) == 2 else "US"
    if not isinstance(file, UploadFile):
        return await _dnc_page(request, who, error="choose a file to upload", status=422)
    data = await file.read(MAX_UPLOAD + 1)
    name = (file.filename or "upload.txt").replace("/", "_").replace("\\", "_")[:100]
    if not data:
        return await _dnc_page(request, who, error=f"{name} is empty", status=422)
    if len(data) > MAX_UPLOAD:
        return await _dnc_page(request, who, error=f"{name} is over "
                               f"{MAX_UPLOAD // 2**20} MiB; split it", status=413)
    try:
        text, _ = await asyncio.to_thread(decode_text, data, name)
    except ContactsError as exc:
        return await _dnc_page(request, who, error=str(exc).replace(": error: ", ": "),
                               status=422)
    numbers, problems = await asyncio.to_thread(parse_dnc_text, text, name, region)
    engine = store_of(request).engine

    def add() -> int:
        with engine.begin() as conn:
            added = dnc_list.add_many(conn, numbers, who.actor, name)
            accounts.audit(conn, who, "dnc.upload", name, numbers=len(numbers), added=added)
            return added

    added = await asyncio.to_thread(add)
    message = (f"{name}: {len(numbers)} number(s) read, {added} added, "
               f"{len(numbers) - added} already listed, {len(problems)} line(s) rejected")
    return await _dnc_page(request, who, message=message, region=region,
                           rejected=[str(p) for p in problems[:100]],
                           status=422 if problems and not numbers else 200)
