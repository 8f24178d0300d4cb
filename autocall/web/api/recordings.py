"""``/v1/recordings``: call recordings and voicemail, by record id only.

A recording is named by the record that made it (``attempt-<id>`` for a campaign
attempt, ``call-<id>`` for an informer or inbound call: inbound ones are voicemail).
The file path comes from the store, never from the request, and must resolve inside
the configured recordings folder (``settings.recordings_dir``, symlinks followed) or
the answer is 404. The audio is served with HTTP range requests (206, 416) by
Starlette's ``FileResponse``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel

from autocall.web import recordings as recs
from autocall.web.accounts import Principal
from autocall.web.api.common import CAMPAIGN_NAME, PERSONAL, WRITE, page_limit
from autocall.web.auth import settings_of, store_of
from autocall.web.problems import Problem

router = APIRouter(prefix="/v1/recordings", tags=["recordings"])

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


def _out(found: recs.Recording) -> RecordingOut:
    return RecordingOut(
        id=found.id, kind=found.kind, voicemail=found.voicemail, campaign=found.campaign,
        number=found.number, started_at=found.started_at, duration=found.duration,
        answered_by=found.answered_by, available=found.available, size=found.size,
        content_type="audio/wav", audio=f"/v1/recordings/{found.id}/audio")


def _one(request: Request, rid: str) -> recs.Recording:
    if recs.ID.match(rid) is None:
        raise Problem(404, "Not Found", "no such recording (ids look like attempt-12 or "
                      "call-3)")
    found = recs.one(store_of(request).engine, settings_of(request), rid)
    if found is None:
        raise Problem(404, "Not Found", f"no recording {rid}")
    return found


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
    items = [_out(r) for r in recs.listing(store_of(request).engine, settings_of(request),
                                            kind, campaign=campaign, after=after,
                                            limit=limit)]
    last = int(items[-1].id.split("-")[1]) if len(items) == limit else None
    return RecordingPage(items=items, next=last)


@router.get("/{rid}", response_model=RecordingOut)
def recording(rid: str, request: Request, _: Principal = PERSONAL) -> RecordingOut:
    """One recording's metadata (``available`` is false when its file is gone)."""
    return _out(_one(request, rid))


@router.get("/{rid}/audio", response_class=FileResponse,
            responses={200: {"content": {"audio/wav": {}}}, 206: {"description": "a range"},
                       416: {"description": "the range is outside the file"}})
def audio(rid: str, request: Request, _: Principal = PERSONAL) -> FileResponse:
    """The audio (WAV), with ``Range`` requests for seeking and resuming."""
    found = _one(request, rid)
    if found.path is None:
        raise Problem(404, "Not Found", f"the file of recording {rid} is not in the "
                      "recordings folder (deleted by retention, or never written)")
    return FileResponse(found.path, media_type="audio/wav",
                        filename=f"{rid}.wav", content_disposition_type="inline")


@router.delete("/{rid}", response_model=RecordingOut,
               responses={404: {"description": "no such recording, or its file is gone"}})
def delete_recording(rid: str, request: Request, who: Principal = WRITE) -> RecordingOut:
    """Delete the recording's audio (the call record stays, ``available`` false);
    audited as ``recording.delete``."""
    found = _one(request, rid)
    if not recs.delete(store_of(request).engine, found, who, "api"):
        raise Problem(404, "Not Found", f"recording {rid} has no file to delete (deleted "
                      "already, or never written)")
    return _out(recs.one(store_of(request).engine, settings_of(request), rid) or found)
