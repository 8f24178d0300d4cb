"""The ASGI app: API routers, console pages, problem+json errors, security headers."""

from __future__ import annotations

import logging
import os
import secrets
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from sqlalchemy.exc import InterfaceError, OperationalError

from autocall import __version__
from autocall.campaign.store import Store
from autocall.config import Settings
from autocall.web import events, limits, metrics, pages, problems, security, session
from autocall.web.accounts import Principal
from autocall.web.api import routers
from autocall.web.auth import principal
from autocall.web.pages.render import error_page

SECRET_ENV = "AUTOCALL_WEB_SECRET"
log = logging.getLogger(__name__)


def session_secret() -> str:
    """The key that signs session cookies: ``AUTOCALL_WEB_SECRET`` (the same on every web
    node), else a random one (logins then end when this process stops)."""
    return os.environ.get(SECRET_ENV) or secrets.token_urlsafe(32)


def create_app(store: Store, *, settings: Settings | None = None,
               secret_key: str | None = None, https: bool = False,
               login_limiter: session.LoginLimiter | None = None) -> FastAPI:
    """The console and the API on ``store`` (the caller owns and closes it).

    ``settings`` (default: from the environment) name the prompts and recordings
    folders; ``https``: cookies are Secure and HSTS is sent (set it when serving over TLS).
    """
    app = FastAPI(title="autocall", version=__version__, docs_url=None,
                  openapi_url=None, redoc_url=None,
                  # Forms FastAPI parses get the bounds the CSRF check uses.
                  form_limits={"max_fields": limits.MAX_FORM_FIELDS,
                               "max_files": limits.MAX_FORM_FILES,
                               "max_part_size": limits.MAX_FORM_PART})
    app.state.store = store
    app.state.settings = settings or Settings.from_env()
    app.state.login_limiter = login_limiter or session.LoginLimiter()
    app.state.metrics = metrics.registry_for(store)
    app.state.sampler = events.Sampler(store)
    problems.install(app)

    async def on_store_down(request: Request, exc: Exception) -> Response:
        """The database restarting or unreachable: 503 and try again, not a 500."""
        log.warning("store error on %s: %s", request.url.path, exc)
        return problems.response(problems.Problem(
            503, "Service Unavailable", "the store does not answer; try again shortly",
            headers={"Retry-After": "5"}), request.url.path)

    app.add_exception_handler(OperationalError, on_store_down)
    app.add_exception_handler(InterfaceError, on_store_down)
    for router in routers:
        # Cookie-authenticated API calls from the console need the CSRF token too.
        app.include_router(router, dependencies=[Depends(session.api_csrf_protect)])
    pages.install(app)
    app.include_router(metrics.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(who: Annotated[Principal, Depends(principal)]) -> dict[str, Any]:
        return app.openapi()

    session.install(app, secret_key or session_secret(), https=https)
    # Before any other: no byte of a body reaches a parser (the CSRF check's included)
    # past its route's limit; the security headers go on its 413 too.
    app.add_middleware(limits.BodyLimit, page=error_page)
    app.add_middleware(security.SecurityHeaders, hsts=https)
    return app
