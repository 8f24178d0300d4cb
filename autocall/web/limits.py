"""How much of a request body the console reads, before anything parses it (issue 15).

:class:`BodyLimit` is the app's outermost middleware. Each path has a byte limit (the
upload routes their file's limit plus the form around it, every other route
:data:`BODY`): a declared ``Content-Length`` over it is answered 413 before the app runs
and before a byte of body is read; a body without a length is counted as it arrives and
cut off with 413 at the limit, whatever was reading it (the CSRF check's form parsing,
FastAPI's, a route's own). The CSRF check and FastAPI parse forms with the part counts
below, so a form of thousands of tiny parts is refused (400) before it is all parsed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MIB: Final = 1024 * 1024
BODY: Final = 4 * MIB
"""Any route without an upload: a tree version is its YAML and its cases, each at most
1,000,000 characters, JSON-escaped (issue 17)."""
ENVELOPE: Final = 64 * 1024
"""The multipart framing and form fields around an uploaded file."""
UPLOAD: Final = 20 * MIB + ENVELOPE
"""A contact or do-not-call list (``api.common.MAX_UPLOAD``) in its form."""
AUDIO: Final = 50_000_000 + ENVELOPE
"""A prompt recording (``api.trees.MAX_AUDIO_BYTES``) in its form."""

ROUTES: Final = (
    (re.compile(r"/v1/campaigns/[^/]+/contacts"), UPLOAD, "20 MiB"),
    (re.compile(r"/v1/dnc/upload"), UPLOAD, "20 MiB"),
    (re.compile(r"/campaigns/[^/]+/import(/[^/]+)?"), UPLOAD, "20 MiB"),
    (re.compile(r"/dnc/upload"), UPLOAD, "20 MiB"),
    (re.compile(r"/(v1/)?trees/audio"), AUDIO, "50 MB"),
)
"""The routes that take a file, their body limit and how a message names it."""

MAX_FORM_FIELDS: Final = 100
"""Non-file parts in one form (the console's largest form has a few dozen)."""
MAX_FORM_FILES: Final = 1
"""File parts in one form: every console form uploads at most one file."""
MAX_FORM_PART: Final = MIB
"""Bytes in one non-file part (a tree's 1,000,000-byte YAML pasted in a form fits)."""


def limit_of(path: str) -> tuple[int, str]:
    """The body limit of ``path`` in bytes, and how a message says it."""
    for pattern, limit, said in ROUTES:
        if pattern.fullmatch(path):
            return limit, said
    return BODY, "4 MiB"


class TooLarge(Exception):
    """Raised by the counting ``receive`` once a body passes its route's limit. Not an
    HTTPException: no handler inside the app answers it, :class:`BodyLimit` does."""


def too_large(path: str) -> str:
    _, said = limit_of(path)
    return (
        f"the request body is over {said}, the most {path[:100]} takes; send a smaller "
        "file or split it"
    )


ErrorPage = Callable[[str, str, str], str]
"""(title, detail, back link) -> the console's error page as HTML."""


def _back(headers: Headers) -> str:
    """The page the form was on (the Referer's path only, never another site), else /."""
    parts = urlsplit(headers.get("referer", ""))
    path = parts.path
    if not path.startswith("/") or path.startswith("//") or path.startswith("/v1/"):
        return "/"
    return path + (f"?{parts.query}" if parts.query else "")


def refusal(scope: Scope, page: ErrorPage) -> Response:
    """413 as a problem document (RFC 9457) for the API, the console's error page (in
    its frame, with a way back) for a browser."""
    path = str(scope.get("path", ""))
    detail = too_large(path)
    request_headers = Headers(scope=scope)
    headers = {"Connection": "close"}  # the rest of the body is never read
    if not path.startswith("/v1/") and "text/html" in request_headers.get("accept", ""):
        return HTMLResponse(
            page("Too large", detail, _back(request_headers)), status_code=413, headers=headers
        )
    return JSONResponse(
        {
            "type": "about:blank",
            "title": "Content Too Large",
            "status": 413,
            "detail": detail,
            "instance": path,
        },
        status_code=413,
        media_type="application/problem+json",
        headers=headers,
    )


class BodyLimit:
    """Bound every HTTP request body by its route's limit (see the module's text)."""

    def __init__(self, app: ASGIApp, page: ErrorPage) -> None:
        self.app = app
        self.page = page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, _ = limit_of(str(scope.get("path", "")))
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await refusal(scope, self.page)(scope, receive, send)
            return
        seen = 0
        over = False
        started = False

        async def counted() -> Message:
            nonlocal seen, over
            if over:
                raise TooLarge
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    raise TooLarge
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                if over:  # whatever the app made of the cut-off body: the answer is 413
                    raise TooLarge
                started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except TooLarge:
            if started:
                raise
            await refusal(scope, self.page)(scope, receive, send)
