"""The dialogue designer's pages (issue 17): the trees in the store, and the page for
one tree (editor, graph, simulator, cases, versions, audio). The editor, graph, simulator
and cases come from ``/v1/trees`` through the bundled ``designer.js``; the versions panel
(list, diff of two, restore) and the audio panel (upload, listen, length) are drawn
here, with plain forms (the upload swaps only its panel by htmx, so the editor keeps
what is typed in it)."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from autocall.audio.upload import AudioFileError
from autocall.campaign import trees
from autocall.config import Settings
from autocall.web.accounts import Principal, Role
from autocall.web.api.trees import (
    MAX_AUDIO_BYTES,
    MAX_YAML,
    AudioFile,
    StoredAudio,
    audio_audited,
    change_audited,
    import_version,
    recordings,
)
from autocall.web.auth import settings_of, store_of
from autocall.web.pages.render import render
from autocall.web.pages.routes import Forbidden, Who
from autocall.web.security import CSP

router = APIRouter()
EDIT_ROLES = frozenset({Role.ADMIN, Role.DESIGNER})


def _library(request: Request) -> trees.TreeLibrary:
    return trees.TreeLibrary(store_of(request).engine, Settings.from_env().prompts_dir)


def _audio_folder(request: Request) -> Path:
    return settings_of(request).prompts_dir / "audio"


@dataclass(frozen=True)
class AudioPanel:
    """The recordings play: nodes may name, and what the last upload did."""

    files: list[AudioFile] = field(default_factory=list)
    stored: StoredAudio | None = None
    refused: str | None = None


@router.get("/trees", response_class=HTMLResponse)
async def trees_page(request: Request, who: Who) -> Response:
    rows = await asyncio.to_thread(_library(request).names)
    return render(request, "trees.html", {"rows": rows, "may_edit": who.role in EDIT_ROLES},
                  who=who)


@router.get("/trees/new", response_class=HTMLResponse)
async def new_tree(request: Request, who: Who) -> Response:
    if who.role not in EDIT_ROLES:
        raise Forbidden(who, "start a tree (designers and admins do)")
    audio = await asyncio.to_thread(recordings, _audio_folder(request))
    return _with_style_nonce(request, who, "", "", audio=audio)


@dataclass(frozen=True)
class VersionsPanel:
    """The tree page's versions: newest first, and a diff of two when asked for."""

    versions: list[trees.TreeVersion] = field(default_factory=list)
    diff_from: int | None = None
    diff_to: int | None = None
    diff: list[tuple[str, str]] | None = None  # (css class, line)
    diff_error: str | None = None


def _diff_lines(text: str) -> list[tuple[str, str]]:
    shown = []
    for line in text.splitlines():
        kind = ("hunk" if line.startswith("@@") else "file" if line.startswith(("---", "+++"))
                else "add" if line.startswith("+") else "del" if line.startswith("-")
                else "same")
        shown.append((kind, line))
    return shown


@router.get("/trees/{name}", response_class=HTMLResponse)
async def tree_page(request: Request, name: str, who: Who,
                    diff_from: Annotated[int | None, Query(alias="from", ge=1)] = None,
                    diff_to: Annotated[int | None, Query(alias="to", ge=1)] = None
                    ) -> Response:
    if not trees.NAME.match(name):
        raise Forbidden(who, f"open {name!r}: not a tree name")
    library = _library(request)

    def load() -> tuple[str, VersionsPanel]:
        try:
            versions = library.versions(name)
        except trees.TreesError:
            return "", VersionsPanel()
        tree, _ = trees.findings(versions[-1].text, f"{name}.yaml", library.audio_root)
        sample = "\n".join(f"{f}=" for f in (tree.contact_fields or [])) if tree else ""
        panel = VersionsPanel(versions[::-1], diff_from, diff_to)
        if diff_from is not None and diff_to is not None:
            try:
                text = library.diff(name, diff_from, diff_to)
            except trees.TreesError as exc:
                return sample, replace(panel, diff_error=str(exc))
            return sample, replace(panel, diff=_diff_lines(text))
        return sample, panel

    sample, panel = await asyncio.to_thread(load)
    audio = await asyncio.to_thread(recordings, _audio_folder(request))
    return _with_style_nonce(request, who, name, sample, panel, audio=audio)


@router.post("/trees/audio")
async def upload_audio(request: Request, who: Who, file: UploadFile,
                       tree: Annotated[str, Form(max_length=200)] = "") -> Response:
    """A recording for play: nodes, by the API's rules (converted to 8 kHz mono if it
    decodes at all; refused with the reason if not audio, cut short or silent; never over
    a different recording of the same name). From htmx: the audio panel alone, with
    what was stored or why not; from a plain form: back to the tree's page."""
    if who.role not in EDIT_ROLES:
        raise Forbidden(who, "upload audio (designers and admins do)")
    back = f"/trees/{quote(tree)}#audio" if trees.NAME.match(tree) else "/trees/new"
    partial = request.headers.get("hx-request") == "true"
    stored: StoredAudio | None = None
    refused: str | None = None
    data = await file.read(MAX_AUDIO_BYTES + 1)
    if len(data) > MAX_AUDIO_BYTES:
        refused = (f"{Path(file.filename or 'upload').name}: over "
                   f"{MAX_AUDIO_BYTES // 1_000_000} MB; a prompt is a few seconds of audio")
    else:
        try:
            stored = await asyncio.to_thread(audio_audited, request, who, data,
                                             file.filename or "upload")
        except (AudioFileError, FileExistsError) as exc:
            refused = str(exc)
    if not partial:
        if refused is not None:
            return render(request, "error.html", {"title": "Not usable audio",
                                                  "detail": refused, "back": back},
                          status=422, who=who)
        return RedirectResponse(back, status_code=303)
    files = await asyncio.to_thread(recordings, _audio_folder(request))
    return render(request, "audio_panel.html", {
        "audio": AudioPanel(files, stored, refused), "may_edit": True, "name": tree
        if trees.NAME.match(tree) else ""}, who=who)


@router.post("/trees/{name}/versions/{number}/restore")
async def restore_version(request: Request, name: str, number: int, who: Who) -> Response:
    """A new version with an old one's text (history is kept), audited as the API's
    restore is; then the page again, with the restored text in the editor."""
    if who.role not in EDIT_ROLES:
        raise Forbidden(who, "restore tree versions (designers and admins do)")
    if not trees.NAME.match(name):
        raise Forbidden(who, f"restore {name!r}: not a tree name")
    try:
        await asyncio.to_thread(change_audited, request, who, "tree.restore",
                                lambda library: library.restore(name, number, who.actor))
    except trees.TreesError as exc:
        return render(request, "error.html", {
            "title": "Cannot restore", "detail": str(exc),
            "back": f"/trees/{quote(name)}"}, status=exc.status, who=who)
    return RedirectResponse(f"/trees/{quote(name)}#versions", status_code=303)


@router.post("/trees/import")
async def import_tree(request: Request, who: Who, file: UploadFile,
                      name: Annotated[str, Form(max_length=200)] = "",
                      comment: Annotated[str, Form(max_length=2000)] = "") -> Response:
    """A YAML file as the next version of a tree (named in the form, else after the
    file), byte for byte; one that does not validate is kept as a draft and shown with
    its markers. The API's ``POST /v1/trees/{name}/import`` rules, audited the same."""
    if who.role not in EDIT_ROLES:
        raise Forbidden(who, "import trees (designers and admins do)")
    source = Path(file.filename or "tree.yaml").name[:100] or "tree.yaml"
    tree = name.strip() or Path(source).stem
    back = f"/trees/{quote(name.strip())}" if trees.NAME.match(name.strip()) else "/trees/new"

    def refused(title: str, detail: str, status: int = 422) -> Response:
        return render(request, "error.html", {"title": title, "detail": detail,
                                              "back": back}, status=status, who=who)

    if not trees.NAME.match(tree):
        return refused("Not a tree name", f"{tree[:100]!r}: name the tree with letters, "
                       "digits, - and _ (up to 100), or give the file such a name")
    data = await file.read(MAX_YAML + 1)
    if len(data) > MAX_YAML:
        return refused("Too large", f"{source} is over {MAX_YAML:,} bytes; a tree is a few "
                       "KB", status=413)
    try:
        text = await asyncio.to_thread(trees.tree_file_text, data, source)
        await asyncio.to_thread(import_version, request, who, tree, text, source,
                                comment.strip() or None)
    except trees.TreeFileError as exc:
        return refused(exc.title, str(exc))
    except trees.TreesError as exc:
        return refused("Not imported", str(exc), exc.status)
    return RedirectResponse(f"/trees/{quote(tree)}#versions", status_code=303)


def _with_style_nonce(request: Request, who: Principal, name: str, sample: str,
                      panel: VersionsPanel | None = None, *,
                      audio: list[AudioFile] | None = None) -> Response:
    """The designer page with a CSP that lets the editor's own <style> elements in by a
    per-response nonce (CodeMirror injects its theme; no other inline style passes)."""
    nonce = secrets.token_urlsafe(16)
    page = render(request, "designer.html",
                  {"name": name, "sample_vars": sample, "style_nonce": nonce,
                   "panel": panel or VersionsPanel(), "may_edit": who.role in EDIT_ROLES,
                   "audio": AudioPanel(audio or [])},
                  who=who)
    page.headers["Content-Security-Policy"] = CSP.replace(
        "style-src 'self'", f"style-src 'self' 'nonce-{nonce}'")
    return page
