"""What the ``/v1`` routers share: who may do what, uploads read with a size limit,
phone numbers normalised as the importer does, and a campaign or a 404."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated

import phonenumbers
from fastapi import Depends, Request
from fastapi import Path as PathParam
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from autocall.campaign.model import Campaign, CampaignState
from autocall.campaign.schedule import normalize_dnc
from autocall.campaign.store import Store, StoreError
from autocall.web.accounts import Role
from autocall.web.auth import require, store_of
from autocall.web.problems import Problem

WRITE = Depends(require(Role.MARKETER))
"""Write campaigns, contacts, DNC and calls: marketer (and admin)."""
READ = Depends(require(Role.MARKETER, Role.DESIGNER, Role.VIEWER))
"""A campaign's state and report: every role."""
PERSONAL = Depends(require(Role.MARKETER, Role.VIEWER))
"""Contacts, attempts, numbers, calls and recordings: not the designer."""

MAX_UPLOAD = 20 * 1024 * 1024
"""Largest contact or DNC upload (20 MiB, ~200,000 rows); larger gets 413."""

MAX_PAGE = 1000

CAMPAIGN_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
"""What ``Campaign.name`` allows: checked on the path too, so odd bytes (a NUL, which
PostgreSQL refuses) never reach a query."""
Name = Annotated[str, PathParam(min_length=1, max_length=100, pattern=CAMPAIGN_NAME,
                                description="the campaign's name")]


def campaign_or_404(store: Store, name: str) -> tuple[Campaign, CampaignState, str | None]:
    try:
        return store.campaign(name)
    except StoreError:
        raise Problem(404, "Not Found", f"no campaign {name!r}") from None


def store_for(request: Request, name: str) -> Store:
    """The store, once it is known to hold campaign ``name`` (else 404)."""
    store = store_of(request)
    campaign_or_404(store, name)
    return store


def region_code(region: str, loc: list[str | int]) -> str:
    """An ISO 3166 region phonenumbers knows, upper case, else a 422 at ``loc``."""
    if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise Problem(422, "Invalid request", f"unknown region {region[:10]!r}",
                      errors=[{"loc": loc, "msg": "use an ISO 3166 code such as US or GB"}])
    return region.upper()


def e164(raw: str, region: str, loc: list[str | int]) -> str:
    """``raw`` as E.164 (national for ``region``, or international), else a 422 at ``loc``."""
    region = region_code(region, ["query", "region"])
    number = normalize_dnc(raw[:100], region)
    if number is None:
        raise Problem(422, "Invalid request", f"{raw[:40]!r} is not a valid phone number",
                      errors=[{"loc": loc, "msg": f"not a phone number valid in region "
                               f"{region} or in international form (+<country> ...)"}])
    return number


CSV_TYPES = ("text/csv", "text/plain", "application/csv", "application/octet-stream")


def _too_large(limit: int) -> Problem:
    size = f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit:,} bytes"
    return Problem(413, "Content Too Large", f"uploads are limited to {size}; split the file")


async def _capped_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit + 65536):
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit + 65536:  # the multipart envelope around the file
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def upload(request: Request, *, limit: int = MAX_UPLOAD, what: str = "the CSV",
                 raw_types: tuple[str, ...] = CSV_TYPES, default_name: str = "upload.csv"
                 ) -> tuple[bytes, str]:
    """The uploaded file's bytes and a name for messages: a multipart ``file`` field, or
    the body itself (one of ``raw_types``). Never a path: the name is only shown. More
    than ``limit`` bytes is 413."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await _capped_body(request, limit)
    if kind == "multipart/form-data":
        async def stream() -> AsyncGenerator[bytes, None]:
            yield body

        try:
            form = await MultiPartParser(request.headers, stream(), max_files=1, max_fields=10,
                                         max_part_size=limit).parse()
        except MultiPartException as exc:
            raise Problem(400, "Bad Request", f"unreadable multipart body: {exc.message}"
                          ) from None
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise Problem(422, "Invalid request", f"send {what} as the multipart field 'file'",
                          errors=[{"loc": ["body", "file"], "msg": "field required"}])
        data = await part.read()
        name = (part.filename or default_name).replace("/", "_").replace("\\", "_")[:100]
        await form.close()
    elif kind in raw_types:
        data, name = body, default_name
    else:
        raise Problem(415, "Unsupported Media Type",
                      f"send multipart/form-data with a 'file' field, or a {raw_types[0]} body")
    if len(data) > limit:
        raise _too_large(limit)
    return data, name


def page_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise Problem(422, "Invalid request", f"limit is 1 to {MAX_PAGE}",
                      errors=[{"loc": ["query", "limit"], "msg": f"1 to {MAX_PAGE}"}])
    return limit


