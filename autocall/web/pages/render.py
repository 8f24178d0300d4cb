"""Jinja2 rendering for the console: the templates folder, and what every page gets
(the logged-in principal, the navigation its role may see, the CSRF token)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from autocall import __version__
from autocall.web.accounts import Principal, Role
from autocall.web.session import csrf_token

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")

# (path, label, roles that see it)
NAV: tuple[tuple[str, str, frozenset[Role]], ...] = (
    ("/campaigns", "Campaigns", frozenset(Role)),
    ("/trees", "Prompt trees", frozenset(Role)),
    ("/recordings", "Recordings", frozenset({Role.ADMIN, Role.MARKETER, Role.VIEWER})),
    ("/dnc", "Do not call", frozenset({Role.ADMIN, Role.MARKETER, Role.VIEWER})),
    ("/admin/accounts", "Users & tokens", frozenset({Role.ADMIN})),
    ("/admin/audit", "Audit log", frozenset({Role.ADMIN})),
)


def render(request: Request, name: str, context: dict[str, Any], *, status: int = 200,
           who: Principal | None = None) -> HTMLResponse:
    """``name`` rendered with ``context`` plus the page frame's needs."""
    token = csrf_token(request)
    nav = [(path, label) for path, label, roles in NAV if who is not None and who.role in roles]
    return templates.TemplateResponse(request, name, {
        "who": who, "nav": nav, "csrf": token, "version": __version__,
        "path": request.url.path, **context}, status_code=status)


def error_page(title: str, detail: str, back: str) -> str:
    """error.html for a request answered before the app ran (a body over its limit), so
    with no session: the console's frame without a user."""
    return templates.env.get_template("error.html").render(
        who=None, nav=[], csrf="", version=__version__, path="",
        title=title, detail=detail, back=back)
