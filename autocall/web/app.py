"""The ASGI app: API routers, console pages, problem+json errors, security headers."""

from __future__ import annotations

from fastapi import FastAPI

from autocall import __version__
from autocall.campaign.store import Store
from autocall.config import Settings
from autocall.web import problems
from autocall.web.api import routers


def create_app(store: Store, *, settings: Settings | None = None) -> FastAPI:
    """The console and the API on ``store`` (the caller owns and closes it); ``settings``
    (default: from the environment) name the prompts and recordings folders."""
    app = FastAPI(title="autocall", version=__version__, docs_url=None,
                  openapi_url="/openapi.json", redoc_url=None)
    app.state.store = store
    app.state.settings = settings or Settings.from_env()
    problems.install(app)
    for router in routers:
        app.include_router(router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
