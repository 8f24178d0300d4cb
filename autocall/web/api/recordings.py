"""``/v1/recordings``: call recordings and voicemail, by record id only.

A recording is named by the record that made it (``attempt-<id>`` for a campaign
attempt, ``call-<id>`` for an informer or inbound call: inbound ones are voicemail).
The file path comes from the store, never from the request, and must resolve inside
the configured recordings folder (``settings.recordings_dir``, symlinks followed) or
the answer is 404. The audio is served with HTTP range requests (206, 416) by
Starlette's ``FileResponse``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel
from sqlalchemy import select

from autocall.campaign.db import reading
from autocall.campaign.store import attempts, calls
from autocall.config import Settings
from autocall.web.accounts import Principal
from autocall.web.api.common import CAMPAIGN_NAME, PERSONAL, page_limit
from autocall.web.auth import settings_of, store_of
from autocall.web.problems import Problem

router = APIRouter(prefix="/v1/recordings", tags=["recordings"])

_ID = re.compile(r"^(attempt|call)-([0-9]{1,18})$")


class RecordingOut(BaseModel):
    id: str
    kind: Literal["attempt", "call"]
    voicemail: bool
    campaign: str | None
    number: str | None
    started_at: datetime | None
    duration: float | None
    answered_by: str | None
    available: bool
    size: int | None
    content_type: str
    audio: str


class RecordingPage(BaseModel):
    items: list[RecordingOut]
    next: int | None


def _file(settings: Settings, stored: str | None) -> Path | None:
    """The stored path if it is a file inside the recordings folder, else None."""
    if not stored:
        return None
    root = settings.recordings_dir.resolve()
    try:
        path = Path(stored).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def _out(settings: Settings, kind: Literal["attempt", "call"], row_id: int,
         campaign: str | None, number: str | None, started_at: datetime | None,
         duration: float | None, answered_by: str | None, stored: str | None,
         inbound: bool) -> RecordingOut:
    path = _file(settings, stored)
    rid = f"{kind}-{row_id}"
    return RecordingOut(
        id=rid, kind=kind, voicemail=inbound, campaign=campaign, number=number,
        started_at=started_at.replace(tzinfo=UTC) if started_at else None,
        duration=duration, answered_by=answered_by,
        available=path is not None, size=path.stat().st_size if path else None,
        content_type="audio/wav", audio=f"/v1/recordings/{rid}/audio")


def _one(request: Request, rid: str) -> tuple[RecordingOut, Path | None]:
    match = _ID.match(rid)
    if match is None:
        raise Problem(404, "Not Found", "no such recording (ids look like attempt-12 or "
                      "call-3)")
    kind, row_id = match.group(1), int(match.group(2))
    settings = settings_of(request)
    with reading(store_of(request).engine) as conn:
        if kind == "attempt":
            a = conn.execute(select(attempts).where(attempts.c.id == row_id)).first()
            row = None if a is None else (
                _out(settings, "attempt", a.id, a.campaign, a.number, a.started_at,
                     a.duration, a.answered_by, a.recording, False), a.recording)
        else:
            c = conn.execute(select(calls).where(calls.c.id == row_id)).first()
            row = None if c is None else (
                _out(settings, "call", c.id, None, c.number, c.started_at, c.duration,
                     c.answered_by, c.recording, c.direction == "inbound"), c.recording)
    if row is None or not row[1]:
        raise Problem(404, "Not Found", f"no recording {rid}")
    return row[0], _file(settings, row[1])


@router.get("", response_model=RecordingPage)
def list_recordings(request: Request, kind: Literal["attempt", "call"] = "attempt",
                    campaign: str | None = Query(None, max_length=100,
                                                 pattern=CAMPAIGN_NAME),
                    limit: int = Query(100),
                    after: int = Query(0, ge=0), _: Principal = PERSONAL) -> RecordingPage:
    """Records that have a recording, by id: campaign attempts (``kind=attempt``,
    optionally one ``campaign``) or informer and inbound calls (``kind=call``;
    inbound ones are voicemail)."""
    limit = page_limit(limit)
    settings = settings_of(request)
    items: list[RecordingOut] = []
    with reading(store_of(request).engine) as conn:
        if kind == "attempt":
            q = (select(attempts).where(attempts.c.recording.is_not(None),
                                        attempts.c.id > after)
                 .order_by(attempts.c.id).limit(limit))
            if campaign is not None:
                q = q.where(attempts.c.campaign == campaign)
            for a in conn.execute(q):
                items.append(_out(settings, "attempt", a.id, a.campaign, a.number,
                                  a.started_at, a.duration, a.answered_by, a.recording, False))
        else:
            q = (select(calls).where(calls.c.recording.is_not(None), calls.c.id > after)
                 .order_by(calls.c.id).limit(limit))
            for c in conn.execute(q):
                items.append(_out(settings, "call", c.id, None, c.number, c.started_at,
                                  c.duration, c.answered_by, c.recording,
                                  c.direction == "inbound"))
    last = int(items[-1].id.split("-")[1]) if len(items) == limit else None
    return RecordingPage(items=items, next=last)


@router.get("/{rid}", response_model=RecordingOut)
def recording(rid: str, request: Request, _: Principal = PERSONAL) -> RecordingOut:
    """One recording's metadata (``available`` is false when its file is gone)."""
    return _one(request, rid)[0]


@router.get("/{rid}/audio", response_class=FileResponse,
            responses={200: {"content": {"audio/wav": {}}}, 206: {"description": "a range"},
                       416: {"description": "the range is outside the file"}})
def audio(rid: str, request: Request, _: Principal = PERSONAL) -> FileResponse:
    """The audio (WAV), with ``Range`` requests for seeking and resuming."""
    meta, path = _one(request, rid)
    if path is None:
        raise Problem(404, "Not Found", f"the file of recording {rid} is not in the "
                      "recordings folder (deleted by retention, or never written)")
    return FileResponse(path, media_type=meta.content_type,
                        filename=f"{rid}.wav", content_disposition_type="inline")
