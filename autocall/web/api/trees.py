"""``/v1/trees``: the dialogue designer's API (issue 17).

Validate, draw, simulate and test a tree's YAML text as the designer types it (nothing
is stored), keep versions of it, publish clean ones, and pin a campaign to one. The
YAML is the format: findings carry the line and column ``autocall prompts validate``
prints, with the "did you mean" as a quick fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import soundfile
from fastapi import APIRouter, Depends, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from autocall.audio.convert import (
    AudioFileError,
    NetworkFormat,
    decode,
    encode,
    prepare,
    to_mono,
)
from autocall.audio.upload import check_container, sniff
from autocall.campaign.trees import (
    TreeFileError,
    TreeLibrary,
    TreesError,
    TreeVersion,
    findings,
    tree_file_text,
)
from autocall.dialogue import graph, loader
from autocall.dialogue.loader import Problem as Finding
from autocall.dialogue.loader import TreeError
from autocall.dialogue.schema import Tree, json_schema
from autocall.dialogue.simulate import SimulationResult, Simulator
from autocall.dialogue.testing import cases_from, run_case
from autocall.dialogue.validate import contact_fields_read
from autocall.speech.tts import PromptText, TtsError, render_prompt
from autocall.web import idempotency
from autocall.web.accounts import Principal, Role, audit
from autocall.web.api.common import upload as read_upload
from autocall.web.auth import READ_ROLES, require, settings_of, store_of
from autocall.web.problems import Problem

router = APIRouter(prefix="/v1/trees", tags=["trees"])

MAX_YAML = 1_000_000
MAX_AUDIO_BYTES = 50_000_000  # ten minutes of CD-quality stereo; a prompt is far less
Reader = Annotated[Principal, Depends(require(*READ_ROLES))]
TreeName = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$",
                                    description="letters, digits, - and _")]
Designer = Annotated[Principal, Depends(require(Role.DESIGNER))]
AUDIO_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}\.wav$")
_HINT = re.compile(r"did you mean '([^']+)'(?: instead of '([^']+)')?")
_WRONG = re.compile(r"'([^']+)' is not a node")


class TreeText(BaseModel):
    yaml: str = Field(max_length=MAX_YAML, description="The tree's YAML, as in prompts/")
    name: str = Field(default="tree", pattern=r"^[A-Za-z0-9_-]{1,100}$")


class FindingOut(BaseModel):
    line: int
    column: int
    severity: str
    code: str
    message: str
    fix: str | None = Field(None, description="the validator's suggestion, to apply")
    replaces: str | None = Field(None, description="the text the suggestion replaces")


class Validated(BaseModel):
    valid: bool
    loads: bool = Field(True, description="false: the text is not a tree yet (YAML or "
                        "shape errors), so there is nothing to draw or simulate")
    errors: int
    warnings: int
    findings: list[FindingOut]
    contact_fields: list[str] = Field(
        default_factory=list, description="the contact fields a call reads (declared, or "
        "used as {name} and not set by the tree): what a sample contact fills")


class SaveVersion(BaseModel):
    yaml: str = Field(max_length=MAX_YAML)
    comment: str | None = Field(None, max_length=2000)
    cases: str | None = Field(None, max_length=MAX_YAML)


class VersionOut(BaseModel):
    tree: str
    version: int
    author: str
    comment: str | None
    created_at: dt.datetime
    errors: int
    published_at: dt.datetime | None
    published_by: str | None
    pin: str = Field(description="what a campaign's tree: says to run this version")


class VersionText(VersionOut):
    yaml: str
    cases: str | None


class TreeSummary(BaseModel):
    tree: str
    latest: int
    published: int | None


class Simulate(TreeText):
    inputs: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=200,
        description="keys (1, #…), 'say:words', 'wait' or 'hangup', in order")
    variables: dict[str, str] = Field(default_factory=dict)
    at: dt.datetime | None = Field(None, description="the simulated clock at answer; "
                                   "without an offset, the tree's own time (its timezone:)")
    answered_by: Literal["human", "machine"] | None = None


class CasesRun(TreeText):
    cases: str = Field(max_length=MAX_YAML)


class CaseOut(BaseModel):
    name: str
    passed: bool
    failures: list[str]
    got: dict[str, object]


def _audio_root(request: Request) -> Path:
    return settings_of(request).prompts_dir


def library(request: Request) -> TreeLibrary:
    return TreeLibrary(store_of(request).engine, _audio_root(request))


def _finding(p: Finding) -> FindingOut:
    hint = _HINT.search(p.message)
    wrong = _WRONG.search(p.message)
    replaces = (hint.group(2) if hint and hint.group(2) else wrong.group(1) if wrong else None)
    return FindingOut(line=p.line, column=p.column, severity=p.severity, code=p.code,
                      message=p.message, fix=hint.group(1) if hint else None,
                      replaces=replaces if hint else None)


def _validated(problems: list[Finding], *, loads: bool = True) -> Validated:
    errors = sum(p.severity == "error" for p in problems)
    return Validated(valid=errors == 0, loads=loads, errors=errors,
                     warnings=len(problems) - errors, findings=[_finding(p) for p in problems])


def _tree(body: TreeText, request: Request) -> Tree:
    """The tree, or 422 with the findings that stop it loading."""
    tree, problems = findings(body.yaml, f"{body.name}.yaml", _audio_root(request))
    if tree is None:
        raise Problem(422, "Invalid tree", "the tree does not load; see errors",
                      errors=[{"loc": ["yaml", p.line, p.column], "msg": p.message,
                               "type": p.code} for p in problems])
    return tree


def _out(v: TreeVersion, *, text: bool = False) -> VersionOut:
    fields = {"tree": v.tree, "version": v.version, "author": v.author, "comment": v.comment,
              "created_at": v.created_at, "errors": v.errors, "published_at": v.published_at,
              "published_by": v.published_by, "pin": v.pin}
    if text:
        return VersionText.model_validate({**fields, "yaml": v.text, "cases": v.cases})
    return VersionOut.model_validate(fields)


def _refused(exc: TreesError) -> Problem:
    titles = {404: "Not found", 409: "Conflict", 413: "Too large", 422: "Invalid request"}
    return Problem(exc.status, titles.get(exc.status, "Error"), str(exc))


def change_audited(request: Request, who: Principal, action: str,
                   change: Callable[[TreeLibrary], TreeVersion], **detail: str) -> TreeVersion:
    """A designer's change to the library, and its audit line (every save, publish,
    restore and import is in the audit log), for the API and the designer's page alike.
    Raises :class:`TreesError` when the library refuses it."""
    done = change(library(request))
    with store_of(request).engine.begin() as conn:
        audit(conn, who, action, done.pin, errors=done.errors, **detail)
    return done


def _audited(request: Request, who: Principal, action: str,
             change: Callable[[TreeLibrary], TreeVersion]) -> VersionOut:
    try:
        return _out(change_audited(request, who, action, change))
    except TreesError as exc:
        raise _refused(exc) from None


def _simulated(result: SimulationResult, request: Request) -> dict[str, object]:
    """The run as JSON, with each played file named as the tree names it (relative to
    the prompts folder), never by the server's own path."""
    out = result.as_dict()
    root = _audio_root(request).resolve()
    for step in out["transcript"]:
        if step["kind"] == "play":
            played = Path(step["text"]).resolve()
            step["text"] = (str(played.relative_to(root)) if played.is_relative_to(root)
                            else played.name)
    return out


@router.post("/validate", response_model=Validated)
async def validate(body: TreeText, request: Request, _: Reader) -> Validated:
    """What `autocall prompts validate` finds, at line and column (nothing is stored)."""
    found = await asyncio.to_thread(findings, body.yaml, f"{body.name}.yaml",
                                    _audio_root(request))
    checked = _validated(found[1], loads=found[0] is not None)
    if found[0] is not None:
        checked.contact_fields = contact_fields_read(found[0])
    return checked


@router.post("/graph", response_class=Response,
             responses={200: {"content": {"image/svg+xml": {}}}})
async def draw(body: TreeText, request: Request, _: Reader) -> Response:
    """The tree as SVG (Graphviz), for the picture beside the editor."""
    tree = _tree(body, request)
    try:
        svg = await asyncio.to_thread(graph.render, tree, "svg", timeout=10.0)
    except (graph.GraphvizMissing, RuntimeError, OSError) as exc:
        raise Problem(503, "Graph unavailable", str(exc)) from None
    return Response(svg, media_type="image/svg+xml")


@router.post("/simulate")
async def simulate(body: Simulate, request: Request, _: Reader
                   ) -> dict[str, object]:
    """Run the tree on a virtual clock with these inputs: the transcript (every prompt,
    with the reason for every branch), the path, the variables and the outcome. The
    page replays the whole list after each key, so this stays stateless."""
    tree = _tree(body, request)
    at = body.at or dt.datetime.now(dt.UTC)
    if at.tzinfo is None:  # a wall-clock time, as the hours nodes read one: the tree's
        try:
            at = at.replace(tzinfo=ZoneInfo(tree.timezone))
        except (ZoneInfoNotFoundError, ValueError):
            raise Problem(422, "Invalid request", f"the tree's timezone {tree.timezone!r} "
                          "is not an IANA zone; give the clock with an offset") from None
    start = at.timestamp()
    sim = Simulator(tree, body.variables, start_time=start, answered_by=body.answered_by)
    result = await asyncio.to_thread(sim.run, body.inputs)
    return _simulated(result, request)


@router.post("/cases", response_model=list[CaseOut])
async def cases(body: CasesRun, request: Request, _: Reader) -> list[CaseOut]:
    """Run a cases file's cases against the tree: pass or fail each, with what came."""
    tree = _tree(body, request)
    doc, problems = loader.parse(body.cases, "cases.yaml")
    try:
        if doc is None:
            raise TreeError(problems)
        wanted = cases_from(doc)
    except TreeError as exc:
        raise Problem(422, "Invalid cases", "the cases file does not load",
                      errors=[{"loc": ["cases", p.line, p.column], "msg": p.message,
                               "type": p.code} for p in exc.problems]) from None

    def run() -> list[CaseOut]:
        out = []
        for case in wanted.cases:
            got = run_case(tree, case, wanted)
            out.append(CaseOut(name=got.name, passed=got.passed, failures=got.failures,
                               got=_simulated(got.result, request)))
        return out

    return await asyncio.to_thread(run)


@router.get("/speech", response_class=FileResponse,
            responses={200: {"content": {"audio/wav": {}}}})
async def speech(text: Annotated[str, Query(min_length=1, max_length=1000)], request: Request,
                 _: Reader,
                lang: Annotated[str, Query(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")] = "en",
                ) -> FileResponse:
    """A prompt as the phone will hear it (our TTS, into the same cache as calls)."""
    cache = settings_of(request).tts_cache_dir
    try:
        path: Path = await asyncio.to_thread(render_prompt, PromptText(text, lang), cache)
    except TtsError as exc:
        raise Problem(503, "Speech unavailable", str(exc)) from None
    return FileResponse(path, media_type="audio/wav")


class AudioFile(BaseModel):
    path: str = Field(description="what a play: node names (relative to the prompts folder)")
    duration_s: float
    size_bytes: int


class StoredAudio(AudioFile):
    kept: str | None = Field(None, description="a different recording already had this "
                             "name: it is kept (versions may play it) and this one got path")


def _audio_dir(request: Request) -> Path:
    return _audio_root(request) / "audio"


def _described(path: Path) -> AudioFile:
    info = soundfile.info(str(path))
    return AudioFile(path=f"audio/{path.name}", duration_s=round(info.duration, 3),
                     size_bytes=path.stat().st_size)


def store_audio(data: bytes, filename: str, folder: Path) -> StoredAudio:
    """One uploaded recording, converted to the network's 8 kHz mono 16-bit WAV in
    *folder* under a name made from *filename* (letters, digits, - and _; never a path).

    Anything that decodes as audio is taken (a 5.5 MB stereo 44.1 kHz WAV included);
    what is not audio, is cut short (the WAV or MP3 says more than is there) or is
    silent raises :class:`AudioFileError` with the reason. A recording never replaces a
    different one of the same name: published versions may play that one, and a
    running campaign must not change under its pin; it gets the next free name."""
    shown = Path(filename or "upload").name[:200] or "upload"
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(shown).stem).strip("-")[:70] or "prompt"
    check_container(data, shown)
    try:
        frames, rate = decode(data, name=shown)
    except AudioFileError as exc:
        if exc.reason != "corrupt" or sniff(data[:16]) is not None:
            raise
        raise AudioFileError(shown, "not-audio", "the file is not audio (no WAV, MP3, FLAC, "
                             "Ogg or other sound format the decoder knows)",
                             "Upload a recording of the prompt.") from None
    wav = encode(prepare(to_mono(frames), rate, 8000, name=shown), NetworkFormat(8000, "pcm16"))
    folder.mkdir(parents=True, exist_ok=True)
    wanted = folder / f"{stem}.wav"
    for n in range(1, 1000):
        dest = wanted if n == 1 else folder / f"{stem}-{n}.wav"
        if dest.is_file() and dest.read_bytes() == wav:
            break  # the same recording again
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=folder)
        try:
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(wav)
                f.flush()
                os.fsync(f.fileno())
            os.link(tmp, dest)  # never over another file, even in a race
        except FileExistsError:
            continue
        finally:
            Path(tmp).unlink(missing_ok=True)
        break
    else:
        raise FileExistsError(f"999 recordings are already named {stem}-N.wav; "
                              "give the file another name")
    described = _described(dest)
    return StoredAudio(**described.model_dump(),
                       kept=f"audio/{wanted.name}" if dest != wanted else None)


def audio_audited(request: Request, who: Principal, data: bytes,
                  filename: str) -> StoredAudio:
    """:func:`store_audio` into the prompts folder, with its audit line
    (``tree.audio``: the name stored, the file given, its length), for the API and the
    designer's page alike."""
    stored = store_audio(data, filename, _audio_dir(request))
    with store_of(request).engine.begin() as conn:
        audit(conn, who, "tree.audio", stored.path, file=Path(filename).name[:200],
              duration_s=stored.duration_s, kept=stored.kept)
    return stored


@router.post("/audio", response_model=StoredAudio, status_code=201)
async def upload_audio(file: UploadFile, request: Request, who: Designer) -> StoredAudio:
    """Upload a prompt recording: anything that decodes as audio is converted to the
    network's 8 kHz mono (a 5.5 MB stereo WAV is taken, not refused); only what cannot
    be audio, is truncated, or is silent is refused with the reason. A different
    recording of the same name is kept and this one gets the next free name (``kept``
    says so): published versions may play the old one."""
    data = await file.read(MAX_AUDIO_BYTES + 1)
    if len(data) > MAX_AUDIO_BYTES:
        raise Problem(413, "Too large", f"at most {MAX_AUDIO_BYTES // 1_000_000} MB of audio")
    try:
        return await asyncio.to_thread(audio_audited, request, who, data,
                                       file.filename or "upload")
    except AudioFileError as exc:
        raise Problem(422, "Not usable audio", str(exc),
                      errors=[{"loc": ["file"], "msg": str(exc), "type": exc.reason}]) from None
    except FileExistsError as exc:
        raise Problem(409, "Conflict", str(exc)) from None


@router.get("/audio", response_model=list[AudioFile])
def list_audio(request: Request, _: Reader) -> list[AudioFile]:
    """The recordings stored trees may play, with their lengths."""
    return recordings(_audio_dir(request))


def recordings(folder: Path) -> list[AudioFile]:
    """The recordings in *folder* (the prompts folder's audio/), with their lengths."""
    files = sorted(p for p in folder.glob("*.wav") if AUDIO_NAME.match(p.name)
                   ) if folder.is_dir() else []  # only what GET /audio/{name} serves
    out = []
    for path in files:
        with contextlib.suppress(RuntimeError, OSError):  # a file being replaced
            out.append(_described(path))
    return out


@router.get("/audio/{name}", response_class=FileResponse,
            responses={200: {"content": {"audio/wav": {}}}})
def get_audio(name: Annotated[str, PathParam(pattern=AUDIO_NAME.pattern)],
              request: Request, _: Reader) -> FileResponse:
    """One recording, to listen to in the page (by name only: never a path)."""
    path = _audio_dir(request) / name
    if not path.is_file():
        raise Problem(404, "Not found", f"no recording named {name}")
    return FileResponse(path, media_type="audio/wav")


@router.get("/schema")
def schema(_: Reader) -> dict[str, object]:
    """The tree format's JSON Schema (as `autocall prompts schema`), for completion."""
    return json_schema()


@router.get("", response_model=list[TreeSummary])
def list_trees(request: Request, _: Reader
               ) -> list[TreeSummary]:
    return [TreeSummary.model_validate(row) for row in library(request).names()]


@router.post("/{name}/versions", response_model=VersionOut, status_code=201)
def save(name: TreeName, body: SaveVersion, request: Request,
         who: Designer) -> VersionOut:
    """Save a new version (a draft if it does not validate: it can never be published)."""
    return _audited(request, who, "tree.save", lambda trees: trees.save(
        name, body.yaml, who.actor, body.comment, body.cases))


YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml",
              "text/plain", "application/octet-stream")


class Imported(VersionOut):
    valid: bool = Field(description="false: saved as a draft (it cannot be published)")
    findings: list[FindingOut] = Field(description="what the validator found, at line/column")


def _unreadable(problem: Finding, title: str, detail: str) -> Problem:
    return Problem(422, title, detail, errors=[{
        "loc": ["file", problem.line, problem.column], "msg": problem.message,
        "type": problem.code}])


@router.post("/{name}/import", response_model=Imported, status_code=201,
             responses={413: {"description": f"over {MAX_YAML:,} bytes"},
                        422: {"description": "not UTF-8, not YAML, or not a tree (a "
                              "mapping); errors carry the line and column"}},
             openapi_extra={"requestBody": {"content": {
                 "multipart/form-data": {"schema": {"type": "object", "properties": {
                     "file": {"type": "string", "format": "binary"}}}},
                 "application/yaml": {"schema": {"type": "string"}}}}})
async def import_file(name: TreeName, request: Request, who: Designer,
                      comment: Annotated[str | None, Query(max_length=2000)] = None
                      ) -> JSONResponse:
    """Import a tree file (multipart field ``file``, or an ``application/yaml`` body) as
    the next version of ``name``, its text kept byte for byte (comments too; export it
    back with ``GET …/versions/N?format=yaml``). A file that does not validate is saved
    as a draft, with the findings; one that is not UTF-8, not YAML or not a mapping is
    refused (422) with the line and column. Takes an ``Idempotency-Key``."""
    data, source = await read_upload(request, limit=MAX_YAML, what="the tree's YAML file",
                                     raw_types=YAML_TYPES, default_name=f"{name}.yaml")
    try:
        text = await asyncio.to_thread(tree_file_text, data, source)
    except TreeFileError as exc:
        raise _unreadable(exc.problem, exc.title, str(exc)) from None
    store = store_of(request)
    key = idempotency.key_of(request, who, name, comment or "", data)
    replay = await asyncio.to_thread(idempotency.claim, store.engine, key)
    if replay is not None:
        return replay

    def save() -> dict[str, object]:
        saved = import_version(request, who, name, text, source, comment)
        checked = _validated(findings(text, f"{name}.yaml", _audio_root(request))[1])
        return Imported.model_validate({**_out(saved).model_dump(), "valid": checked.valid,
                                        "findings": checked.findings}).model_dump(mode="json")

    try:
        body = await asyncio.to_thread(save)
    except TreesError as exc:
        await asyncio.to_thread(idempotency.release, store.engine, key)
        raise _refused(exc) from None
    except BaseException:
        await asyncio.to_thread(idempotency.release, store.engine, key)
        raise
    return await asyncio.to_thread(idempotency.finish, store.engine, key, 201, body)


def import_version(request: Request, who: Principal, name: str, text: str, source: str,
                   comment: str | None) -> TreeVersion:
    """An imported file's text as the next version of ``name``, audited as
    ``tree.import`` (the API and the designer's page)."""
    return change_audited(request, who, "tree.import", lambda trees: trees.save(
        name, text, who.actor, comment or f"imported from {source}"), file=source)


@router.get("/{name}/versions", response_model=list[VersionOut])
def versions(name: TreeName, request: Request, _: Reader
             ) -> list[VersionOut]:
    try:
        return [_out(v) for v in library(request).versions(name)]
    except TreesError as exc:
        raise _refused(exc) from None


@router.get("/{name}/versions/{number}", response_model=VersionText)
def version(name: TreeName, number: int, request: Request, _: Reader,
            format: Literal["json", "yaml"] = "json") -> Response | VersionOut:
    """One version; ``?format=yaml`` exports its text byte for byte."""
    try:
        found = library(request).version(name, number)
    except TreesError as exc:
        raise _refused(exc) from None
    if format == "yaml":
        return PlainTextResponse(found.text, media_type="application/yaml", headers={
            "Content-Disposition": f'attachment; filename="{name}-v{number}.yaml"'})
    return _out(found, text=True)


@router.post("/{name}/versions/{number}/publish", response_model=VersionOut)
def publish(name: TreeName, number: int, request: Request,
            who: Designer) -> VersionOut:
    """Publish a clean version (409 for a draft with errors)."""
    return _audited(request, who, "tree.publish",
                    lambda trees: trees.publish(name, number, who.actor))


@router.post("/{name}/versions/{number}/restore", response_model=VersionOut, status_code=201)
def restore(name: TreeName, number: int, request: Request,
            who: Designer) -> VersionOut:
    """A new version with an old one's text."""
    return _audited(request, who, "tree.restore",
                    lambda trees: trees.restore(name, number, who.actor))


@router.get("/{name}/diff", response_class=PlainTextResponse)
def diff(name: TreeName, request: Request, a: Annotated[int, Query(alias="from")],
         b: Annotated[int, Query(alias="to")],
         _: Reader) -> PlainTextResponse:
    """A unified diff between two versions."""
    try:
        return PlainTextResponse(library(request).diff(name, a, b))
    except TreesError as exc:
        raise _refused(exc) from None
