"""``/docs``: the API's Swagger UI, from files vendored in the package (the machines
that run autocall have no internet, and FastAPI's default page loads it from a CDN).

The page has no inline script (the console's Content-Security-Policy allows none); the
assets are served by name from a fixed table, so no path from a request reaches the
filesystem. Like everything but ``/healthz`` and the login page, it needs a login.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from autocall.web.accounts import Principal
from autocall.web.api.common import READ
from autocall.web.problems import Problem

router = APIRouter(include_in_schema=False)

STATIC = Path(__file__).parent / "static"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "docs-init.js": "text/javascript",
}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>autocall API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/docs-init.js"></script>
</body>
</html>
"""


@router.get("/docs", response_class=HTMLResponse)
def docs(_: Principal = READ) -> HTMLResponse:
    return HTMLResponse(PAGE)


@router.get("/docs/assets/{name}")
def asset(name: str, _: Principal = READ) -> FileResponse:
    kind = ASSETS.get(name)
    if kind is None:
        raise Problem(404, "Not Found", f"no asset {name[:60]!r}")
    return FileResponse(STATIC / name, media_type=kind,
                        headers={"Cache-Control": "public, max-age=86400"})
