"""The console: server-rendered pages (Jinja2 + vendored htmx), no inline scripts."""

from fastapi import Depends, FastAPI

from autocall.web import session
from autocall.web.pages import create, designer, imports, lists, routes


def install(app: FastAPI) -> None:
    """The console's pages, the contact import wizard's, recordings and do-not-call,
    and the dialogue designer's (issue 17). The wizard goes first: its POST paths would
    match the steering verbs'."""
    imports.install(app)
    app.include_router(create.router)
    routes.install(app)
    lists.install(app)
    app.include_router(designer.router, dependencies=[Depends(session.csrf_protect)])


__all__ = ["install"]
