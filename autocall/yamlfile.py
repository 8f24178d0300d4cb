"""One safe way to read a YAML file a user hands us (prompt trees, cases, campaigns).

Every failure is one :class:`YamlFileError` that names ``file:line:col``, says what is
wrong and what to do; never a traceback, never a hang, never gigabytes of memory:

- the file is at most :data:`MAX_BYTES` (4 MiB) and must be UTF-8 (a Latin-1 byte is
  reported with its line and column and "save it as UTF-8");
- nesting deeper than :data:`MAX_DEPTH` is refused before anything recursive runs;
- aliases (``*name``) may not expand the document beyond :data:`MAX_EXPANDED_NODES`
  values in total, so a "billion laughs" alias bomb is refused in milliseconds with the
  line of the anchor whose expansion is too large; an alias inside its own anchor
  (an endless structure) is refused too;
- a scalar the YAML library cannot build (``2026-11-31``, ``2026-13-01``) is an error at
  its line, not a ``ValueError``;
- ``!tags`` and mapping keys that are lists/mappings are refused.

Use::

    from autocall.yamlfile import YamlFileError, read_yaml

    try:
        data, positions = read_yaml(path)
    except YamlFileError as exc:
        print(exc)                 # "campaign.yaml:3:9: error: ...; hint"
        raise SystemExit(2)
    line, col = positions.locate(("window", "days", 2))   # 1-based, deepest part found

``data`` is plain Python (``dict``, ``list``, ``str``, ``int``, ``float``, ``bool``,
``None``, ``datetime.date``/``datetime``), ready for pydantic. Positions come from
ruamel.yaml's round-trip loader, which remembers where each key and value sits.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable, Iterator
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    Event,
    NodeEvent,
    ScalarEvent,
)
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scalarbool import ScalarBoolean

MAX_BYTES = 4 * 1024 * 1024
"""Largest file read (4 MiB): a tree or campaign is a few KiB; more is a mistake."""

MAX_DEPTH = 64
"""Deepest nesting of lists/mappings accepted (a real tree nests less than 15)."""

MAX_EXPANDED_NODES = 100_000
"""Values that aliases may add beyond those written in the file."""

Scalar = str | int | float | bool | None | dt.date
"""What a YAML scalar becomes (``datetime.datetime`` is a ``date``)."""


@dataclass(eq=False, repr=False)  # an exception: compared by identity, shown as one
class YamlFileError(ValueError):
    """A YAML file we cannot use; ``str()`` is ``file:line:col: error: message; hint``.

    ``kind`` is ``"file"`` when the bytes cannot be read as text (missing, too large,
    not UTF-8) and ``"yaml"`` when the text is not usable YAML.
    """

    path: str
    line: int
    column: int
    message: str
    hint: str = ""
    _: KW_ONLY
    kind: str = "yaml"

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        hint = f"; {self.hint}" if self.hint else ""
        return f"{self.path}:{self.line}:{self.column}: error: {self.message}{hint}"


class Positions:
    """Where each key and value of a document sits (1-based line and column)."""

    def __init__(self, root: object) -> None:
        self._root = root

    def locate(self, path: Iterable[object], *, key: bool = False) -> tuple[int, int]:
        """(line, column) of the value (or the ``key``) at ``path``.

        Path elements that are not in the document (pydantic's union tags, a missing key)
        are skipped, so the answer is the deepest place that exists; ``(1, 1)`` if none.
        A mapping key is matched as written or by its text (``1:`` matches ``"1"``).
        """
        cur = self._root
        where = (0, 0)
        for element in path:
            found = child(cur, element)
            if found is None:
                continue
            actual, value = found
            try:
                if isinstance(cur, CommentedMap):
                    # an empty value (`say:`) has no place of its own: point at its key
                    empty = value is None
                    pos = cur.lc.key(actual) if key or empty else cur.lc.value(actual)
                    where = (pos[0], pos[1])
                elif isinstance(cur, CommentedSeq):
                    pos = cur.lc.item(actual)
                    where = (pos[0], pos[1])
            except (KeyError, IndexError, TypeError):
                pass  # a key merged in by `<<: *defaults` has no place of its own here
            cur = value
        return where[0] + 1, where[1] + 1

    def has(self, path: Iterable[object]) -> bool:
        """True if every element of ``path`` exists in the document."""
        cur = self._root
        for element in path:
            found = child(cur, element)
            if found is None:
                return False
            cur = found[1]
        return True


class YamlDocument(NamedTuple):
    """``data, positions = read_yaml(path)``."""

    data: Any  # plain YAML data: its shape is what the caller validates
    positions: Positions


def read_yaml(path: Path | str) -> YamlDocument:
    """Read, size-check, decode and parse one YAML file; raises :class:`YamlFileError`."""
    path = Path(path)
    name = str(path)
    try:
        if path.is_dir():
            raise YamlFileError(
                name, 1, 1, "this is a folder, not a YAML file", "name a file", kind="file"
            )
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise YamlFileError(
                name,
                1,
                1,
                f"the file is {size / 2**20:.1f} MiB; the limit is 4 MiB",
                _SPLIT,
                kind="file",
            )
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise YamlFileError(name, 1, 1, f"cannot read the file: {reason}", kind="file") from exc
    return parse_yaml(raw, name)


_SPLIT = "a tree or campaign is a few KiB: check this is the right file"


def parse_yaml(source: bytes | str, file: str = "<text>") -> YamlDocument:
    """Parse YAML bytes (must be UTF-8) or text; raises :class:`YamlFileError`."""
    if isinstance(source, bytes):
        if len(source) > MAX_BYTES:
            raise YamlFileError(
                file, 1, 1, f"the text is over 4 MiB ({len(source)} bytes)", _SPLIT, kind="file"
            )
        text = _decode(source, file)
    else:
        text = source
        if len(text) > MAX_BYTES:
            raise YamlFileError(
                file, 1, 1, f"the text is over 4 MiB ({len(text)} characters)", _SPLIT, kind="file"
            )
    yaml = _yaml()
    try:
        _check_events(_events(text), file)
        root = yaml.load(io.StringIO(text))
    except ReaderError as exc:
        line, column = _line_col(text, exc.position)
        raise YamlFileError(
            file,
            line,
            column,
            f"character #x{exc.character:04X} is not allowed in YAML"
            if isinstance(exc.character, int)
            else f"unreadable character: {exc.reason}",
            "remove it or write it as an escape in a double-quoted text",
        ) from exc
    except MarkedYAMLError as exc:
        raise _marked(exc, file) from exc
    except YAMLError as exc:  # unmarked: rare, still a clear answer
        raise YamlFileError(file, 1, 1, f"YAML syntax: {exc}") from exc
    except RecursionError as exc:  # belt and braces: _check_events bounds the depth
        raise YamlFileError(
            file, 1, 1, "the YAML nests too deeply", f"keep it under {MAX_DEPTH} levels"
        ) from exc
    return YamlDocument(_plain(root, file), Positions(root))


def _decode(raw: bytes, file: str) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # a UTF-8 byte order mark (Windows editors) is harmless
    elif raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise YamlFileError(file, 1, 1, "the file is UTF-16", "save it as UTF-8", kind="file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = len(before) - (before.rfind(b"\n") + 1) + 1
        byte = raw[exc.start]
        guess = raw[: raw.find(b"\n", exc.start) if b"\n" in raw[exc.start :] else len(raw)]
        shown = guess[guess.rfind(b"\n") + 1 :].decode("latin-1").strip()
        raise YamlFileError(
            file,
            line,
            column,
            f"the file is not UTF-8 (byte 0x{byte:02X} in {shown[:60]!r}; "
            "probably Latin-1 or Windows-1252)",
            "save it as UTF-8 (in most editors: Save As → Encoding → UTF-8)",
            kind="file",
        ) from exc


def _line_col(text: str, position: int) -> tuple[int, int]:
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


def _marked(exc: MarkedYAMLError, file: str) -> YamlFileError:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = str(exc.problem or "")
    context = str(exc.context or "")
    if "duplicate key" in problem:
        # ruamel: 'found duplicate key "a" with value "2" (original value: "1")'
        key = problem.split('"')[1] if problem.count('"') >= 2 else "?"
        first = exc.context_mark.line + 1 if exc.context_mark is not None else line
        return YamlFileError(
            file,
            line,
            column,
            f"duplicate key {key!r} (the mapping starting on line {first} has it twice)",
            "keep one of them",
        )
    what = " ".join(p for p in (context, problem) if p)
    opened = exc.context_mark
    if "flow" in context and opened is not None and "stream end" not in problem:
        return YamlFileError(
            file,
            line,
            column,
            f"YAML syntax: {what}",
            f"the bracket opened on line {opened.line + 1}, column {opened.column + 1} "
            "is not closed before this",
        )
    if ("end of stream" in problem or "stream end" in problem) and exc.context_mark is not None:
        # an unclosed quote or bracket: the end of the file says nothing, its start does
        start = exc.context_mark
        return YamlFileError(
            file,
            start.line + 1,
            start.column + 1,
            f"YAML syntax: {what}",
            "the quote or bracket opened here is never closed",
        )
    if isinstance(exc, ConstructorError) and problem.startswith(_BAD_VALUE):
        return YamlFileError(file, line, column, problem, _hint_for(problem))
    return YamlFileError(file, line, column, f"YAML syntax: {what}")


_BAD_VALUE = "cannot read value"


def _hint_for(problem: str) -> str:
    if "day is out of range" in problem or "month must be" in problem:
        return "write a real date as YYYY-MM-DD (e.g. 2026-11-30)"
    return "quote the value to keep it as text"


class _Constructor(RoundTripConstructor):
    """The round-trip constructor, with values it cannot build reported at their line."""

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError, TypeError) as exc:
            if isinstance(exc, YAMLError):
                raise
            value = getattr(node, "value", "")  # a scalar node's text
            shown = f" {value!r}" if isinstance(value, str) else ""
            raise ConstructorError(
                None, None, f"{_BAD_VALUE}{shown}: {exc}", node.start_mark
            ) from exc


def _events(text: str) -> Iterator[Event]:
    """The event stream, from libyaml when ruamel.yaml.clib is there (20x faster).

    A syntax error ends the stream quietly: the round-trip load that follows reports it
    with ruamel's wording and position, and cannot get past it to anything unchecked.
    """
    seen = 0
    try:
        for event in YAML(typ="safe").parse(text):
            seen += 1
            yield event
        return
    except YAMLError:
        pass
    # libyaml refused what ruamel may accept (a %YAML 1.2 directive, say): check the rest
    # with ruamel's own parser, so nothing reaches the loader unchecked
    try:
        for i, event in enumerate(YAML(typ="rt").parse(text)):
            if i >= seen:
                yield event
    except YAMLError:
        return


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.Constructor = _Constructor
    return yaml


@dataclass
class _Open:
    """A collection being read: its values so far (aliases expanded) and its anchor."""

    count: int
    anchor: str | None
    line: int
    column: int


def _check_events(events: Iterator[Event], file: str) -> None:
    """Refuse deep nesting and alias bombs from the event stream, without recursion.

    Each anchored value's expanded size (values counting what aliases repeat) is known
    when it closes, so an alias adds a known number and the total is checked as it grows.
    """
    stack: list[_Open] = []
    sizes: dict[str, tuple[int, int]] = {}  # anchor -> (expanded size, line of anchor)
    written = 0
    total = 0
    for event in events:
        if isinstance(event, CollectionStartEvent | ScalarEvent) and event.tag is not None:
            _check_tag(str(event.tag), event, file)
        if isinstance(event, CollectionStartEvent):
            mark = event.start_mark
            stack.append(_Open(0, event.anchor, mark.line + 1, mark.column + 1))
            if len(stack) > MAX_DEPTH:
                raise YamlFileError(
                    file,
                    mark.line + 1,
                    mark.column + 1,
                    f"the YAML nests more than {MAX_DEPTH} levels deep here",
                    "flatten it: a prompt tree or campaign needs far fewer levels",
                )
            if event.anchor is not None:
                sizes.pop(event.anchor, None)  # a reused name refers to the newest anchor
        elif isinstance(event, CollectionEndEvent):
            closed = stack.pop()
            size = closed.count + 1
            if closed.anchor is not None:
                sizes[closed.anchor] = (size, closed.line)
            if stack:
                stack[-1].count += size
        elif isinstance(event, ScalarEvent):
            if isinstance(event, NodeEvent) and event.anchor is not None:
                sizes[event.anchor] = (1, event.start_mark.line + 1)
            if stack:
                stack[-1].count += 1
            written += 1
            total += 1
            continue
        elif isinstance(event, AliasEvent):
            mark = event.start_mark
            name = str(event.anchor)
            if name not in sizes:
                if any(o.anchor == name for o in stack):
                    raise YamlFileError(
                        file,
                        mark.line + 1,
                        mark.column + 1,
                        f"the alias *{name} is inside its own anchor &{name}: "
                        "that would be an endless structure",
                        "copy the values instead",
                    )
                continue  # undefined alias: the composer reports it with its line
            size, anchor_line = sizes[name]
            total += size
            if stack:
                stack[-1].count += size
            if total - written > MAX_EXPANDED_NODES:
                raise YamlFileError(
                    file,
                    anchor_line,
                    1,
                    f"aliases expand this file to more than {MAX_EXPANDED_NODES:,} values "
                    f"(*{name} on line {mark.line + 1} repeats the anchor &{name} of this "
                    f"line, {size:,} values)",
                    "write the values out, or use fewer nested aliases",
                )
            continue
        else:
            continue
        if isinstance(event, CollectionStartEvent):
            written += 1
            total += 1


_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq")}


def _check_tag(tag: str, event: CollectionStartEvent | ScalarEvent, file: str) -> None:
    """Only YAML's core tags (``!!str 12``): others would build objects we do not read."""
    if tag in _TAGS:
        return
    mark = event.start_mark
    shown = tag.replace("tag:yaml.org,2002:", "!!")
    raise YamlFileError(
        file,
        mark.line + 1,
        mark.column + 1,
        f"the YAML tag {shown} is not supported",
        "remove it (quote the value if it must stay text)",
    )


def child(container: object, element: object) -> tuple[object, object] | None:
    """(actual key, value) of ``element`` in a mapping (matched as written or by its text)
    or a list; None if it is not there."""
    if isinstance(container, dict):
        if element in container:
            return element, container[element]
        for k in container:
            if str(k) == str(element) and not isinstance(k, bool):
                return k, container[k]
        return None
    if isinstance(container, list) and isinstance(element, int) and 0 <= element < len(container):
        return element, container[element]
    return None


def _plain(root: object, file: str) -> Any:
    """Round-trip containers and scalar subclasses → plain Python, without recursion."""
    if not isinstance(root, dict | list):
        return _scalar(root, file, Positions(root), ())
    positions = Positions(root)
    out: Any = {} if isinstance(root, dict) else []
    todo: list[tuple[dict[Any, Any] | list[Any], Any, tuple[object, ...]]] = [(root, out, ())]
    while todo:
        source, target, path = todo.pop()
        items: Iterable[tuple[object, object]] = (
            source.items() if isinstance(source, dict) else enumerate(source)
        )
        for k, v in items:
            here = (*path, k)
            if isinstance(source, dict):
                if isinstance(k, tuple | list | dict) or not isinstance(k, Scalar):
                    line, col = positions.locate(here, key=True)
                    raise YamlFileError(
                        file, line, col, "a key must be a text or a number", "write a plain key"
                    )
                key = _scalar(k, file, positions, here)
            if isinstance(v, dict | list):
                child: Any = {} if isinstance(v, dict) else []
                todo.append((v, child, here))
            else:
                child = _scalar(v, file, positions, here)
            if isinstance(source, dict):
                target[key] = child
            else:
                target.append(child)
    return out


def _scalar(value: object, file: str, positions: Positions, path: tuple[object, ...]) -> Scalar:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return dt.datetime.fromisoformat(value.isoformat())  # ruamel's TimeStamp → datetime
    if isinstance(value, dt.date):
        return value
    if isinstance(value, bool | ScalarBoolean):  # ScalarBoolean (an anchored bool) is an int
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, TaggedScalar) and isinstance(value.value, str):
        return str(value.value)  # !!str 12 (other tags were refused by _check_tag)
    line, col = positions.locate(path)
    raise YamlFileError(file, line, col, "this kind of YAML value is not supported here")
