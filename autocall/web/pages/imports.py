"""The contact import wizard's pages: upload a list, map its columns and preview what
would be added, rejected, skipped as duplicate or found on a do-not-call list, then
confirm. The logic is :mod:`autocall.web.imports` (and the API's reader); this is HTTP.

``GET  /campaigns/{name}/import``              the upload form
``POST /campaigns/{name}/import``              stage the file, go to its preview
``GET  /campaigns/{name}/import/{id}?phone=…`` detection, mapping and preview (or, once
                                               imported, what the import did)
``POST /campaigns/{name}/import/{id}``         confirm: 409 with the new preview if the
                                               file or the preview changed; never twice

Admins and marketers only (viewers and designers get 403). Every POST carries the CSRF
token; an upload's size is checked from its Content-Length before the form is parsed.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from autocall.campaign.contacts import ContactsError, decode_text, read_header
from autocall.campaign.model import Campaign, ContactColumns
from autocall.campaign.store import Store, StoreError
from autocall.web import imports, limits, session
from autocall.web.accounts import Principal, Role
from autocall.web.api.common import CAMPAIGN_NAME, MAX_UPLOAD
from autocall.web.auth import store_of
from autocall.web.pages.render import render
from autocall.web.pages.routes import Forbidden, Who

IMPORT_ROLES = frozenset({Role.ADMIN, Role.MARKETER})
ROLES = ("phone", "timezone", "country", "id")  # ContactColumns' own keys, not fields
EXTRA_FIELDS = 2  # blank "field ← column" rows offered for new template fields
Name = Annotated[str, PathParam(min_length=1, max_length=100, pattern=CAMPAIGN_NAME)]
UploadId = Annotated[str, PathParam(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]

ENCODINGS = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8 (with BOM)", "utf-16": "UTF-16",
             "cp1252": "Windows-1252 (Latin-1)", "latin-1": "ISO-8859-1 (Latin-1)"}
DELIMITERS = {",": "comma ( , )", ";": "semicolon ( ; )", "\t": "tab", "|": "bar ( | )"}


class UploadRefused(Exception):
    """An upload refused before its form is read (too large, no length)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


async def limit_upload(request: Request) -> None:
    """Refuse a POST over the upload limit from its Content-Length, before the form
    (and the CSRF token in it) is parsed; a browser always sends the length."""
    if request.method != "POST":
        return
    declared = request.headers.get("content-length")
    if declared is None:
        raise UploadRefused(411, "send the upload with a Content-Length")
    if not declared.isdigit() or int(declared) > limits.UPLOAD:
        raise UploadRefused(413, f"the file is over {MAX_UPLOAD // 2**20} MiB; split it "
                            "and import the parts one after the other")


router = APIRouter(include_in_schema=False,
                   dependencies=[Depends(limit_upload), Depends(session.csrf_protect)])


def install(app: FastAPI) -> None:
    """Before the campaign pages: ``POST /campaigns/{name}/import`` is not a steering verb."""
    app.include_router(router)

    async def on_refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, UploadRefused)
        return render(request, "error.html", {"title": "Upload refused", "detail": exc.detail,
                                              "back": request.url.path}, status=exc.status)

    app.add_exception_handler(UploadRefused, on_refused)


def _may_import(who: Principal) -> None:
    if who.role not in IMPORT_ROLES:
        raise Forbidden(who, "import contacts")


def _not_found(request: Request, who: Principal, detail: str, back: str) -> Response:
    return render(request, "error.html", {"title": "Not found", "detail": detail,
                                          "back": back}, status=404, who=who)


def _base(name: str) -> str:
    return f"/campaigns/{quote(name)}/import"


# --- step 1: upload ---------------------------------------------------------------------

@router.get("/campaigns/{name}/import", response_class=HTMLResponse)
async def upload_form(request: Request, name: Name, who: Who) -> Response:
    _may_import(who)
    try:
        await asyncio.to_thread(store_of(request).campaign, name)
    except StoreError:
        return _not_found(request, who, f"There is no campaign {name!r}.", "/campaigns")
    return _upload_page(request, who, name)


def _upload_page(request: Request, who: Principal, name: str, error: str | None = None,
                 status: int = 200) -> Response:
    return render(request, "import.html", {"name": name, "step": 1, "error": error,
                                           "max_mib": MAX_UPLOAD // 2**20},
                  status=status, who=who)


@router.post("/campaigns/{name}/import")
async def upload(request: Request, name: Name, who: Who) -> Response:
    """Stage the file (after checking it is text with a header) and show its preview.

    The form is read here, not by FastAPI's parameters (which read it before any
    dependency): :func:`limit_upload` must see the Content-Length first."""
    _may_import(who)
    file = (await request.form()).get("file")
    if not isinstance(file, UploadFile):
        return _upload_page(request, who, name, "choose a CSV file to upload", 422)
    store = store_of(request)
    try:
        await asyncio.to_thread(store.campaign, name)
    except StoreError:
        return _not_found(request, who, f"There is no campaign {name!r}.", "/campaigns")
    data = await file.read(MAX_UPLOAD + 1)
    filename = (file.filename or "upload.csv").replace("/", "_").replace("\\", "_")[:100]
    if len(data) > MAX_UPLOAD:
        return _upload_page(request, who, name, f"{filename} is over "
                            f"{MAX_UPLOAD // 2**20} MiB; split it", 413)
    if not data:
        return _upload_page(request, who, name, "choose a CSV file to upload", 422)
    try:
        text, _ = await asyncio.to_thread(decode_text, data, filename)
        read_header(text, filename)
    except ContactsError as exc:
        return _upload_page(request, who, name, str(exc).replace(": error: ", ": "), 422)
    staged = await asyncio.to_thread(imports.stage, store.engine, name, who, filename, data)
    return RedirectResponse(f"{_base(name)}/{staged.id}", status_code=303)


# --- step 2: map and preview --------------------------------------------------------------

Chosen = tuple[dict[str, str], list[tuple[str, str]]]
"""A mapping as the form holds it: the role selects, and (template field, header) pairs."""


def _mapping_from_query(request: Request) -> Chosen:
    """The mapping form's values: the role selects, and (field, header) pairs."""
    q = request.query_params
    roles = {k: q.get(k, "")[:200] for k in ("phone", "timezone", "country")}
    pairs = [(f.strip()[:60], h[:200]) for f, h in zip(q.getlist("field"), q.getlist("header"),
                                                        strict=False)]
    return roles, [(f, h) for f, h in pairs if f and h]


def _columns(roles: dict[str, str], pairs: list[tuple[str, str]]) -> ContactColumns:
    """Raises ValueError with a message for the page."""
    if not roles.get("phone"):
        raise ValueError("choose the column that holds the phone numbers")
    for field, _ in pairs:
        if field in ROLES:
            raise ValueError(f"{field!r} is chosen above; give the template field "
                             "another name")
    try:
        return ContactColumns.model_validate({
            "phone": roles["phone"], "timezone": roles.get("timezone") or None,
            "country": roles.get("country") or None, **dict(pairs)})
    except ValidationError as exc:
        raise ValueError("; ".join(e["msg"].removeprefix("Value error, ")
                                   for e in exc.errors())) from None


def _chosen(columns: ContactColumns, header: list[str]) -> Chosen:
    roles = {"phone": columns.phone if columns.phone in header else "",
             "timezone": columns.timezone or "", "country": columns.country or ""}
    return roles, list(columns.field_map().items())


def _state(store: Store, campaign: Campaign, upload: imports.Upload, chosen: Chosen | None
           ) -> dict[str, Any]:
    """Everything the mapping and preview page shows (runs in a thread); ``chosen``: the
    mapping the user sent (None: guess it from the campaign's and the file's headers)."""
    assert upload.data is not None
    text, encoding = decode_text(upload.data, upload.filename)
    wanted = chosen[0]["phone"] if chosen and chosen[0]["phone"] else campaign.columns.phone
    delimiter, header = read_header(text, upload.filename, wanted)
    roles, pairs = chosen or _chosen(imports.guess_columns(campaign.columns, header), header)
    names = [f for f, _ in pairs] + [f for f in campaign.columns.field_map() if
                                     f not in dict(pairs)]
    fields = [(f, dict(pairs).get(f, "")) for f in names] + [("", "")] * EXTRA_FIELDS
    out: dict[str, Any] = {"roles": roles, "fields": fields, "header": header,
                           "encoding": ENCODINGS.get(encoding, encoding),
                           "delimiter": DELIMITERS.get(delimiter, repr(delimiter)),
                           "preview": None, "mapping_error": None}
    try:
        columns = _columns(roles, pairs)
        out["preview"], _ = imports.preview(store, campaign, upload, columns)
        out["columns_json"] = columns.model_dump_json(exclude_none=True)
    except ValueError as exc:  # ContactsError is one: a header the file does not have
        out["mapping_error"] = exc.message if isinstance(exc, ContactsError) else str(exc)
    return out


async def _load(request: Request, who: Principal, name: str, upload_id: str
                ) -> tuple[Campaign, imports.Upload] | Response:
    _may_import(who)
    store = store_of(request)
    try:
        campaign, _, _ = await asyncio.to_thread(store.campaign, name)
    except StoreError:
        return _not_found(request, who, f"There is no campaign {name!r}.", "/campaigns")
    upload = await asyncio.to_thread(imports.load, store.engine, name, upload_id)
    if upload is None:
        return _not_found(request, who, "This upload is unknown or has expired (uploads "
                          "are kept a day): upload the file again.", _base(name))
    return campaign, upload


async def _preview_page(request: Request, who: Principal, campaign: Campaign,
                        upload: imports.Upload, chosen: Chosen | None, *,
                        error: str | None = None, status: int = 200) -> Response:
    state = await asyncio.to_thread(_state, store_of(request), campaign, upload, chosen)
    status = 422 if state["mapping_error"] and status == 200 else status
    return render(request, "import.html", {
        "name": campaign.name, "step": 2, "upload": upload, "error": error,
        "shown": imports.SHOWN, "action": f"{_base(campaign.name)}/{upload.id}", **state},
        status=status, who=who)


@router.get("/campaigns/{name}/import/{upload_id}", response_class=HTMLResponse)
async def preview_page(request: Request, name: Name, upload_id: UploadId, who: Who
                       ) -> Response:
    found = await _load(request, who, name, upload_id)
    if isinstance(found, Response):
        return found
    campaign, upload = found
    if upload.result is not None:
        r = upload.result
        return render(request, "import.html", {
            "name": name, "step": 3, "upload": upload, "r": r, "shown": imports.SHOWN,
            "encoding": ENCODINGS.get(r["encoding"], r["encoding"]),
            "delimiter": DELIMITERS.get(r["delimiter"], repr(r["delimiter"]))}, who=who)
    chosen = None if request.query_params.get("phone") is None else _mapping_from_query(request)
    return await _preview_page(request, who, campaign, upload, chosen)


# --- step 3: confirm ---------------------------------------------------------------------

@router.post("/campaigns/{name}/import/{upload_id}")
async def confirm(request: Request, name: Name, upload_id: UploadId, who: Who) -> Response:
    """Import as previewed (the form's ``sha256``, ``digest`` and ``columns``), once."""
    form = await request.form()  # after limit_upload (see upload)
    sha256, digest, columns = (str(form.get(k, ""))[:4000] for k in
                               ("sha256", "digest", "columns"))
    found = await _load(request, who, name, upload_id)
    if isinstance(found, Response):
        return found
    campaign, upload = found
    done_at = f"{_base(name)}/{upload.id}"
    try:
        mapping = ContactColumns.model_validate_json(columns)
    except ValidationError:
        return render(request, "error.html", {
            "title": "Cannot import", "detail": "the column mapping in the form is not "
            "readable; open the preview again", "back": done_at}, status=422, who=who)
    store = store_of(request)
    try:
        await asyncio.to_thread(imports.confirm, store, campaign, upload, who, sha256,
                                digest, mapping)
    except imports.Changed as exc:
        if upload.data is None:
            return _not_found(request, who, str(exc), _base(name))
        chosen = ({"phone": mapping.phone, "timezone": mapping.timezone or "",
                   "country": mapping.country or ""}, list(mapping.field_map().items()))
        return await _preview_page(request, who, campaign, upload, chosen, error=str(exc),
                                   status=409)
    except ContactsError as exc:
        return render(request, "error.html", {"title": "Cannot import", "detail": exc.message,
                                              "back": done_at}, status=422, who=who)
    return RedirectResponse(done_at, status_code=303)
