"""Prompt trees kept in the store as versions (issue 17).

The YAML text is the format, kept byte for byte (comments too): the browser is another
way to edit the file, not a second format. Every save is a new version; a version that
does not validate is kept as a draft and can never be published. A campaign names one
version, ``store:NAME@N`` in its ``tree:``, so a change to the tree reaches a running
campaign only when someone moves the campaign to the new version.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.schema import Column, Table, UniqueConstraint
from sqlalchemy.types import DateTime, Integer, String, Text

from autocall.campaign.db import metadata, reading
from autocall.dialogue import loader
from autocall.dialogue.loader import Problem
from autocall.dialogue.schema import PlayNode, PlayPrompt, Tree, prompt_fields
from autocall.dialogue.validate import check

__all__ = ["STORE_PREFIX", "TreeFileError", "TreeLibrary", "TreeVersion", "TreesError",
           "findings", "pin", "tree_file_text"]

versions = Table(
    "autocall_tree_versions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tree", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("cases", Text),
    Column("author", String(120), nullable=False),
    Column("comment", Text),
    Column("created_at", DateTime, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("published_at", DateTime),
    Column("published_by", String(120)),
    UniqueConstraint("tree", "version", name="uq_autocall_tree_version"),
)

STORE_PREFIX = "store:"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
_PIN = re.compile(r"^store:(?P<name>[A-Za-z0-9][A-Za-z0-9_-]{0,99})@(?P<version>[0-9]{1,9})$")
MAX_TEXT = 1_000_000  # a tree of 10-item menus is a few KB; this is far beyond any real one


class TreesError(ValueError):
    """A request the library refuses: unknown tree or version, bad name, unpublishable."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TreeVersion:
    tree: str
    version: int
    text: str
    cases: str | None
    author: str
    comment: str | None
    created_at: datetime
    errors: int
    published_at: datetime | None
    published_by: str | None

    @property
    def pin(self) -> str:
        """What a campaign's ``tree:`` says to run exactly this version."""
        return pin(self.tree, self.version)


def pin(name: str, version: int) -> str:
    return f"{STORE_PREFIX}{name}@{version}"


def parse_pin(spec: str) -> tuple[str, int] | None:
    """``store:NAME@N`` → (NAME, N); None for anything else (a file path)."""
    m = _PIN.match(spec)
    return None if m is None else (m["name"], int(m["version"]))


def findings(text: str, name: str, audio_root: Path) -> tuple[Tree | None, list[Problem]]:
    """The tree in ``text`` and what the validator finds, at line and column (as
    ``autocall prompts validate`` reports them for a file). A stored tree's audio is
    found under ``audio_root`` (the prompts folder), and only there."""
    doc, problems = loader.parse(text, name)
    if doc is None:
        return None, problems
    tree, problems = loader.build(doc)
    if tree is None:
        return None, problems
    tree.with_source(audio_root / name)
    outside = [doc.problem(where, "error", "audio", f"audio file {path!r}: a stored tree "
                           "plays only files inside the prompts folder (a relative path)")
               for where, path in audio_paths(tree) if not _inside(audio_root, path)]
    return tree, sorted([*check(tree, doc), *outside], key=lambda p: (p.line, p.column))


class TreeFileError(ValueError):
    """A file that cannot be a version of a tree at all: not UTF-8, not YAML, or not a
    mapping (a tree that merely does not validate is kept, as a draft)."""

    def __init__(self, title: str, problem: Problem) -> None:
        super().__init__(f"{problem.file}:{problem.line}:{problem.column}: {problem.message}")
        self.title = title
        self.problem = problem


def tree_file_text(data: bytes, source: str) -> str:
    """An imported file's text, byte for byte (a BOM, CRLF and comments kept), or
    :class:`TreeFileError` with the line and column of what makes it no tree file."""
    doc, problems = loader.parse(data, source)
    if doc is None:
        problem = problems[0]
        raise TreeFileError("Not UTF-8 text" if problem.code == "file" else "Not YAML", problem)
    if not isinstance(doc.data, dict):
        kind = "empty" if doc.data is None else f"a YAML {type(doc.data).__name__}"
        raise TreeFileError("Not a prompt tree", Problem(
            source, 1, 1, "error", "tree", f"the file is {kind}, not a prompt tree: a tree "
            "is a mapping with start: and nodes: (see autocall prompts schema)"))
    return data.decode("utf-8")  # parse() has checked it is UTF-8


def audio_paths(tree: Tree) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every audio file the tree plays, with its YAML path."""
    for where, prompts in prompt_fields(tree):
        items = prompts if isinstance(prompts, list) else [prompts]
        for i, item in enumerate(items):
            if isinstance(item, PlayPrompt):
                yield ((*where, i) if isinstance(prompts, list) else where), item.play
    for node_id, node in tree.nodes.items():
        if isinstance(node, PlayNode):
            files = node.play if isinstance(node.play, list) else [node.play]
            for i, path in enumerate(files):
                yield ("nodes", node_id, "play", i) if isinstance(node.play, list) else (
                    "nodes", node_id, "play"), path


def _inside(root: Path, path: str) -> bool:
    if "{" in path:  # a template: resolved per call, checked there
        return not Path(path).is_absolute() and ".." not in Path(path).parts
    return (root / path).resolve().is_relative_to(root.resolve())


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class TreeLibrary:
    """The trees of one store."""

    def __init__(self, engine: Engine, audio_root: Path = Path("prompts")) -> None:
        self.engine = engine
        self.audio_root = audio_root

    def save(self, name: str, text: str, author: str, comment: str | None = None,
             cases: str | None = None) -> TreeVersion:
        """A new version of ``name`` (the next number), clean or a draft."""
        if not NAME.match(name):
            raise TreesError(422, f"tree name {name!r}: letters, digits, - and _ (up to 100)")
        if len(text) > MAX_TEXT:
            raise TreesError(413, f"the tree is {len(text)} characters; at most {MAX_TEXT}")
        _, problems = findings(text, f"{name}.yaml", self.audio_root)
        errors = sum(p.severity == "error" for p in problems)
        for _ in range(5):  # two saves at once: one gets the number, the other the next
            try:
                with self.engine.begin() as conn:
                    last = conn.execute(select(func.max(versions.c.version)).where(
                        versions.c.tree == name)).scalar()
                    number = (last or 0) + 1
                    conn.execute(insert(versions).values(
                        tree=name, version=number, text=text, cases=cases, author=author,
                        comment=comment, created_at=_now(), errors=errors))
                return self.version(name, number)
            except IntegrityError:
                continue
        raise TreesError(409, f"tree {name}: too many saves at once; try again")

    def names(self) -> list[dict[str, object]]:
        """Each tree: its newest version and its newest published one."""
        published = func.max(versions.c.version).filter(versions.c.published_at.is_not(None))
        query = (select(versions.c.tree, func.max(versions.c.version).label("latest"),
                        published.label("published"))
                 .group_by(versions.c.tree).order_by(versions.c.tree))
        with reading(self.engine) as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def versions(self, name: str) -> list[TreeVersion]:
        with reading(self.engine) as conn:
            rows = conn.execute(select(versions).where(versions.c.tree == name)
                                .order_by(versions.c.version)).all()
        if not rows:
            raise TreesError(404, f"no tree named {name!r}")
        return [_version(r) for r in rows]

    def published(self) -> list[TreeVersion]:
        """Every published version of every tree (what a campaign may be pointed at),
        by tree, the newest version first."""
        with reading(self.engine) as conn:
            rows = conn.execute(select(versions).where(versions.c.published_at.is_not(None))
                                .order_by(versions.c.tree, versions.c.version.desc())).all()
        return [_version(r) for r in rows]

    def version(self, name: str, number: int) -> TreeVersion:
        with reading(self.engine) as conn:
            row = conn.execute(select(versions).where(
                versions.c.tree == name, versions.c.version == number)).first()
        if row is None:
            raise TreesError(404, f"tree {name!r} has no version {number}")
        return _version(row)

    def publish(self, name: str, number: int, by: str) -> TreeVersion:
        """Mark a clean version published; a draft with errors is refused (409)."""
        found = self.version(name, number)
        if found.errors:
            raise TreesError(409, f"{name} version {number} has {found.errors} error(s): "
                                  "fix them and save a new version to publish")
        if found.published_at is None:
            with self.engine.begin() as conn:
                conn.execute(update(versions).where(
                    versions.c.tree == name, versions.c.version == number,
                    versions.c.published_at.is_(None)).values(
                    published_at=_now(), published_by=by))
        return self.version(name, number)

    def restore(self, name: str, number: int, author: str) -> TreeVersion:
        """A new version with an old one's text (history is never rewritten)."""
        old = self.version(name, number)
        return self.save(name, old.text, author, f"restored from version {number}", old.cases)

    def diff(self, name: str, a: int, b: int) -> str:
        """A unified diff of two versions' text."""
        old, new = self.version(name, a), self.version(name, b)
        return "".join(difflib.unified_diff(
            old.text.splitlines(keepends=True), new.text.splitlines(keepends=True),
            f"{name}@{a}", f"{name}@{b}"))

    def newest_published(self, name: str) -> Tree | None:
        """The newest published version of ``name`` (what ``POST /v1/calls`` runs for a
        tree name), or None when the store has none."""
        with reading(self.engine) as conn:
            number = conn.execute(select(func.max(versions.c.version)).where(
                versions.c.tree == name, versions.c.published_at.is_not(None))).scalar()
        return None if number is None else self.load(pin(name, number))

    def load(self, spec: str) -> Tree:
        """The tree a campaign pinned (``store:NAME@N``); only published versions run."""
        pinned = parse_pin(spec)
        if pinned is None:
            raise TreesError(422, f"{spec!r} is not a stored tree (store:NAME@N)")
        found = self.version(*pinned)
        if found.published_at is None:
            raise TreesError(409, f"{spec} is not published: publish it before a campaign "
                                  "runs it")
        return loader.load_text(found.text, f"{spec}.yaml", self.audio_root / f"{pinned[0]}.yaml")


def _version(row: Row[Any]) -> TreeVersion:
    m = row._mapping
    return TreeVersion(tree=m["tree"], version=m["version"], text=m["text"], cases=m["cases"],
                       author=m["author"], comment=m["comment"], created_at=m["created_at"],
                       errors=m["errors"], published_at=m["published_at"],
                       published_by=m["published_by"])
