"""Who is asking, and may they: the FastAPI dependencies every route declares.

A request is authenticated by ``Authorization: Bearer <token>`` (API clients) or by the
console's signed session cookie (``request.session["user"]``, set at login). A route
says which roles may use it with ``Depends(require(Role.MARKETER, …))``; admin may use
every route.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request

from autocall.campaign.store import Store
from autocall.config import Settings
from autocall.web import accounts
from autocall.web.accounts import Principal, Role
from autocall.web.problems import Problem

READ_ROLES = (Role.MARKETER, Role.DESIGNER, Role.VIEWER)


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def principal(request: Request) -> Principal:
    """The caller, or 401."""
    engine = store_of(request).engine
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        # off the loop (as every store call of a request): the loop serves the SSE streams
        found = await asyncio.to_thread(accounts.token_principal, engine, token.strip())
        if found is None:
            raise Problem(401, "Unauthorized", "the token is unknown or revoked",
                          headers={"WWW-Authenticate": "Bearer"})
        return found
    session = request.scope.get("session") or {}
    name = session.get("user") if isinstance(session, dict) else None
    if isinstance(name, str):
        user = await asyncio.to_thread(accounts.user_principal, engine, name)
        if user is not None:
            return user
    raise Problem(401, "Unauthorized", "log in, or send Authorization: Bearer <token>",
                  headers={"WWW-Authenticate": "Bearer"})


def require(*roles: Role) -> Callable[[Request], Coroutine[Any, Any, Principal]]:
    """A dependency that lets ``roles`` (and admin) through and answers 403 to the rest."""
    allowed = {Role.ADMIN, *roles}

    async def dependency(request: Request) -> Principal:
        who = await principal(request)
        if who.role not in allowed:
            raise Problem(403, "Forbidden",
                          f"the {who.role.value} role may not do this "
                          f"(needs {' or '.join(sorted(r.value for r in allowed))})")
        return who

    return dependency
