"""The dialogue designer's pages (issue 17): the trees in the store, and the page for
one tree (editor, graph, simulator, cases, versions). The page is a shell: everything
it shows comes from ``/v1/trees`` through the bundled ``designer.js``."""

from __future__ import annotations

import asyncio
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from autocall.campaign.trees import NAME, TreeLibrary, TreesError, findings
from autocall.config import Settings
from autocall.web.accounts import Principal, Role
from autocall.web.auth import store_of
from autocall.web.pages.render import render
from autocall.web.pages.routes import Forbidden, Who
from autocall.web.security import CSP

router = APIRouter()
EDIT_ROLES = frozenset({Role.ADMIN, Role.DESIGNER})


def _library(request: Request) -> TreeLibrary:
    return TreeLibrary(store_of(request).engine, Settings.from_env().prompts_dir)


@router.get("/trees", response_class=HTMLResponse)
async def trees_page(request: Request, who: Who) -> Response:
    rows = await asyncio.to_thread(_library(request).names)
    return render(request, "trees.html", {"rows": rows, "may_edit": who.role in EDIT_ROLES},
                  who=who)


@router.get("/trees/new", response_class=HTMLResponse)
async def new_tree(request: Request, who: Who) -> Response:
    if who.role not in EDIT_ROLES:
        raise Forbidden(who, "start a tree (designers and admins do)")
    return _with_style_nonce(request, who, "", "")


@router.get("/trees/{name}", response_class=HTMLResponse)
async def tree_page(request: Request, name: str, who: Who) -> Response:
    if not NAME.match(name):
        raise Forbidden(who, f"open {name!r}: not a tree name")
    library = _library(request)

    def sample() -> str:
        try:
            latest = library.versions(name)[-1]
        except TreesError:
            return ""
        tree, _ = findings(latest.text, f"{name}.yaml", library.audio_root)
        return "\n".join(f"{f}=" for f in (tree.contact_fields or [])) if tree else ""

    return _with_style_nonce(request, who, name, await asyncio.to_thread(sample))


def _with_style_nonce(request: Request, who: Principal, name: str, sample: str) -> Response:
    """The designer page with a CSP that lets the editor's own <style> elements in by a
    per-response nonce (CodeMirror injects its theme; no other inline style passes)."""
    nonce = secrets.token_urlsafe(16)
    page = render(request, "designer.html",
                  {"name": name, "sample_vars": sample, "style_nonce": nonce}, who=who)
    page.headers["Content-Security-Policy"] = CSP.replace(
        "style-src 'self'", f"style-src 'self' 'nonce-{nonce}'")
    return page
