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
from autocall.web.auth import require
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


def _too_large() -> Problem:
    return Problem(413, "Content Too Large",
                   f"uploads are limited to {MAX_UPLOAD // (1024 * 1024)} MiB; split the file")


async def _capped_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_UPLOAD + 65536):
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_UPLOAD + 65536:  # the multipart envelope around the file
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


async def upload(request: Request) -> tuple[bytes, str]:
    """The uploaded file's bytes and a name for messages: a multipart ``file`` field, or
    the body itself (``text/csv``, ``text/plain``). Never a path: the name is only shown."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await _capped_body(request)
    if kind == "multipart/form-data":
        async def stream() -> AsyncGenerator[bytes, None]:
            yield body

        try:
            form = await MultiPartParser(request.headers, stream(), max_files=1, max_fields=10,
                                         max_part_size=MAX_UPLOAD).parse()
        except MultiPartException as exc:
            raise Problem(400, "Bad Request", f"unreadable multipart body: {exc.message}"
                          ) from None
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise Problem(422, "Invalid request", "send the CSV as the multipart field 'file'",
                          errors=[{"loc": ["body", "file"], "msg": "field required"}])
        data = await part.read()
        name = (part.filename or "upload.csv").replace("/", "_").replace("\\", "_")[:100]
        await form.close()
    elif kind in ("text/csv", "text/plain", "application/csv", "application/octet-stream"):
        data, name = body, "upload.csv"
    else:
        raise Problem(415, "Unsupported Media Type",
                      "send multipart/form-data with a 'file' field, or a text/csv body")
    if len(data) > MAX_UPLOAD:
        raise _too_large()
    return data, name


def page_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise Problem(422, "Invalid request", f"limit is 1 to {MAX_PAGE}",
                      errors=[{"loc": ["query", "limit"], "msg": f"1 to {MAX_PAGE}"}])
    return limit


