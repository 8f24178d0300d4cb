"""YAML → :class:`Tree`, with every problem located as file:line:column.

ruamel.yaml's round-trip loader remembers where each key and value sits, so a pydantic
error path (``nodes.ask.menu.retires``) can be turned back into the line a designer
must edit. Unknown keys get a "did you mean" from :mod:`difflib`.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from autocall.dialogue import schema
from autocall.dialogue.schema import NODE_MODELS, VERBS, Tree
from autocall.yamlfile import Positions, YamlFileError, child, parse_yaml, read_yaml

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One finding, located for a human (1-based line and column)."""

    file: str
    line: int
    column: int
    severity: Severity
    code: str
    message: str

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.message} [{self.code}]"
        )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Findings:
    """What a check found (``problems``), split by severity; ``ok`` means no errors."""

    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors


class TreeError(ValueError):
    """A tree that cannot be loaded; ``problems`` says where and why."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class Document:
    """The parsed YAML (plain data) with positions, for locating findings by key path."""

    def __init__(self, data: Any, file: str, positions: Positions | None = None) -> None:
        self.data = data
        self.file = file
        self.positions = positions if positions is not None else Positions(data)

    def locate(self, path: Iterable[Any], *, key: bool = False) -> tuple[int, int]:
        """(line, column), 1-based, of the value (or ``key``) at ``path``.

        Path elements that are not in the data (pydantic's union tags, a missing key)
        are skipped, so the answer is the deepest place that exists.
        """
        return self.positions.locate(path, key=key)

    def problem(
        self, path: Iterable[Any], severity: Severity, code: str, message: str, *, key: bool = False
    ) -> Problem:
        line, column = self.locate(path, key=key)
        return Problem(self.file, line, column, severity, code, message)

    def has(self, path: Iterable[Any]) -> bool:
        return self.positions.has(path)


def parse(text: str | bytes, file: str) -> tuple[Document | None, list[Problem]]:
    """Parse YAML text; every failure comes back as a problem, never as an exception.

    :mod:`autocall.yamlfile` refuses alias bombs, deep nesting, impossible dates and
    non-UTF-8 bytes with their line, so no input file can crash or hang a tool.
    """
    try:
        data, positions = parse_yaml(text, file)
    except YamlFileError as exc:
        return None, [yaml_problem(exc)]
    return Document(data, file, positions), []


def read(path: Path) -> tuple[Document | None, list[Problem]]:
    try:
        data, positions = read_yaml(path)
    except YamlFileError as exc:
        return None, [yaml_problem(exc)]
    return Document(data, str(path), positions), []


def yaml_problem(exc: YamlFileError) -> Problem:
    """A file that is not readable YAML, as a located problem."""
    message = f"{exc.message}; {exc.hint}" if exc.hint else exc.message
    return Problem(exc.path, exc.line, exc.column, "error", exc.kind, message)


def build(doc: Document) -> tuple[Tree | None, list[Problem]]:
    """Validate a parsed document against the tree model."""
    data = doc.data
    if not isinstance(data, dict):
        got = (
            "an empty file"
            if data is None
            else "a list"
            if isinstance(data, list)
            else f"a {type(data).__name__.replace('str', 'text')}"
        )
        msg = f"a prompt tree is a mapping with 'start' and 'nodes', not {got}"
        return None, [Problem(doc.file, 1, 1, "error", "type", msg)]
    problems = _check_verbs(doc)
    try:
        tree = Tree.model_validate(_plain(data))
    except ValidationError as exc:
        problems.extend(model_problems(doc, exc, Tree, skip_types={"node_verb"}))
        return None, _sorted(problems)
    if problems:
        return None, _sorted(problems)
    return tree, []


def load_text(text: str, file: str = "<text>", source: Path | None = None) -> Tree:
    """Load a tree from YAML text; raises :class:`TreeError`."""
    return _built(parse(text, file), source)


def load(path: Path | str) -> Tree:
    """Load a tree file; raises :class:`TreeError` (file:line:column inside)."""
    return _built(read(Path(path)), Path(path))


def _built(parsed: tuple[Document | None, list[Problem]], source: Path | None) -> Tree:
    doc, problems = parsed
    if doc is None:
        raise TreeError(problems)
    tree, problems = build(doc)
    if tree is None:
        raise TreeError(problems)
    return tree.with_source(source)


def load_with_document(path: Path) -> tuple[Tree | None, Document | None, list[Problem]]:
    doc, problems = read(path)
    if doc is None:
        return None, None, problems
    tree, problems = build(doc)
    if tree is not None:
        tree.with_source(path)
    return tree, doc, problems


def _plain(value: Any) -> Any:
    """ruamel's Commented* containers → dict/list (pydantic then sees plain data)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.file, p.line, p.column))


def _check_verbs(doc: Document) -> list[Problem]:
    """Each node needs exactly one verb; say which key looks like a misspelt one."""
    nodes = doc.data.get("nodes") if isinstance(doc.data, dict) else None
    if not isinstance(nodes, dict):
        return []
    problems = []
    for node_id, node in nodes.items():
        if not isinstance(node, dict):
            problems.append(
                doc.problem(
                    ["nodes", node_id],
                    "error",
                    "type",
                    f"node {node_id!r} must be a mapping with one verb ({', '.join(VERBS)})",
                )
            )
            continue
        verbs = [v for v in VERBS if v in node]
        if len(verbs) > 1:
            problems.append(
                doc.problem(
                    ["nodes", node_id, verbs[1]],
                    "error",
                    "verb",
                    f"node {node_id!r} has several verbs ({', '.join(verbs)}); "
                    "give each its own node and link them with next",
                    key=True,
                )
            )
        elif not verbs:
            hint = ""
            for key in node:
                close = difflib.get_close_matches(str(key), VERBS, n=1, cutoff=0.6)
                if close:
                    hint = f"; did you mean {close[0]!r} instead of {str(key)!r}?"
                    break
            problems.append(
                doc.problem(
                    ["nodes", node_id],
                    "error",
                    "verb",
                    f"node {node_id!r} has no verb: it needs one of {', '.join(VERBS)}{hint}",
                    key=True,
                )
            )
    return problems


def _models_under(root: type[BaseModel]) -> list[type[BaseModel]]:
    """Every model reachable from ``root``'s field annotations (root first)."""
    found: list[type[BaseModel]] = []
    todo: list[Any] = [root]
    while todo:
        item = todo.pop()
        if isinstance(item, type) and issubclass(item, BaseModel):
            if item in found:
                continue
            found.append(item)
            todo.extend(f.annotation for f in item.model_fields.values())
        else:
            todo.extend(get_args(item))
    return found


_TYPE_ERRORS = {
    "string_type",
    "list_type",
    "dict_type",
    "model_type",
    "model_attributes_type",
    "int_type",
    "float_type",
    "bool_type",
    "string_pattern_mismatch",
    "int_parsing",
    "float_parsing",
    "bool_parsing",
    "int_from_float",
}


def model_problems(
    doc: Document,
    exc: ValidationError,
    root: type[BaseModel],
    *,
    prefix: Sequence[Any] = (),
    skip_types: set[str] | None = None,
) -> list[Problem]:
    """Turn pydantic errors into located problems, one per real mistake."""
    errors: list[dict[str, Any]] = []
    for detail in exc.errors():
        if detail["type"] in (skip_types or set()):
            continue
        err: dict[str, Any] = dict(detail)
        loc = list(err["loc"])
        # The node union's tag repeats the verb key (nodes.x.menu.menu.items): drop it.
        if root is Tree and len(loc) >= 3 and loc[0] == "nodes" and loc[2] in NODE_MODELS:
            err = {**err, "node_model": NODE_MODELS[loc[2]]}
            del loc[2]
        errors.append({**err, "loc": tuple(loc)})
    chosen = _pick_union_branches(doc, errors, prefix)
    problems = []
    seen: set[tuple[int, int, str]] = set()
    for err in chosen:
        problem = _problem_for(doc, err, root, prefix)
        marker = (problem.line, problem.column, problem.message)
        if marker not in seen:
            seen.add(marker)
            problems.append(problem)
    return problems


def _split_loc(doc: Document, loc: Sequence[Any], prefix: Sequence[Any]) -> tuple[list, list]:
    """Split an error path into the part found in the data and the tags/missing keys."""
    matched: list[Any] = []
    skipped: list[Any] = []
    cur = doc.data
    for element in prefix:
        found = child(cur, element)
        cur = found[1] if found else None
    for element in loc:
        found = child(cur, element)
        if found is None:
            skipped.append((len(matched), element))
            continue
        matched.append(element)
        cur = found[1]
    return matched, skipped


def _pick_union_branches(
    doc: Document, errors: list[Any], prefix: Sequence[Any], level: int = 0
) -> list[Any]:
    """Where a value fits none of a union's forms, keep the form it came closest to.

    Unions nest (a prompt is a text, a mapping or a list of those), so the choice is
    made tag level by tag level.
    """
    groups: dict[tuple[Any, ...], dict[Any, list[Any]]] = {}
    chosen: list[Any] = []
    for err in errors:
        matched, skipped = _split_loc(doc, err["loc"], prefix)
        tags = [(depth, t) for depth, t in skipped if depth < len(matched) or _is_tag(t)]
        if len(tags) <= level:
            chosen.append(err)
            continue
        depth, tag = tags[level]
        point = tuple(matched[:depth])
        groups.setdefault(point, {}).setdefault(tag, []).append(err)
    for branches in groups.values():
        if len(branches) == 1:
            only = next(iter(branches.values()))
            chosen.extend(_pick_union_branches(doc, only, prefix, level + 1))
            continue
        meaningful = {
            tag: errs
            for tag, errs in branches.items()
            if any(e["type"] not in _TYPE_ERRORS for e in errs)
        }
        if not meaningful:
            first = next(iter(branches.values()))[0]
            kinds = sorted({_tag_name(t) for t in branches})
            chosen.append({**first, "msg": f"expected {' or '.join(kinds)}", "type": "union"})
            continue
        best = min(meaningful.values(), key=len)
        chosen.extend(_pick_union_branches(doc, best, prefix, level + 1))
    return chosen


def _is_tag(element: Any) -> bool:
    return isinstance(element, str) and (
        element in VERBS
        or element[:1].isupper()
        or "[" in element
        or element in ("str", "int", "float", "bool", "list", "dict")
    )


def _tag_name(tag: Any) -> str:
    text = str(tag)
    names = {
        "str": "a text",
        "SayPrompt": "{say: text}",
        "PlayPrompt": "{play: file}",
        "MenuItem": "{next: node}",
        "TransferBody": "a transfer",
        "HangupBody": "{outcome: label}",
        "int": "a whole number",
        "float": "a number",
        "bool": "true/false",
    }
    if text.startswith("list["):
        return "a list"
    if text.startswith("dict["):
        return "a mapping"
    return names.get(text, text)


_BODY_MODELS: dict[str, type[BaseModel]] = {
    "menu": schema.MenuBody,
    "gather": schema.GatherBody,
    "record": schema.RecordBody,
    "transfer": schema.TransferBody,
    "webhook": schema.WebhookBody,
    "hours": schema.HoursBody,
    "hangup": schema.HangupBody,
    "if": schema.Condition,
}


def _model_for(doc: Document, err: Any, root: type[BaseModel], prefix: Sequence[Any]) -> Any:
    """The model whose keys the mapping holding the unknown key should have had."""
    loc = list(err["loc"])
    family = _models_under(root)
    for element in reversed(loc[:-1]):
        for candidate in family:
            if candidate.__name__ == element:
                return candidate
    data_loc = [e for e in loc if not _is_tag(e) or e in _BODY_MODELS]
    if len(data_loc) == 1:
        return root
    if err.get("node_model") is not None and len(data_loc) == 3:
        return err["node_model"]
    if len(data_loc) >= 2 and data_loc[-2] in _BODY_MODELS:
        return _BODY_MODELS[data_loc[-2]]
    if len(data_loc) >= 3 and data_loc[-3] == "items":
        return schema.MenuItem
    if len(data_loc) >= 3 and data_loc[-3] == "branch":
        return schema.BranchCase
    return _model_by_fields(root, loc[:-1]) or _closest_model(doc, loc, prefix, family)


def _model_by_fields(root: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    """Follow field annotations from ``root`` along ``loc`` (cases.0.expect → Expect).

    None where a union of several types leaves the way open.
    """
    current: Any = root
    for element in loc:
        current = _without_none(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(element))
            if field is None:
                return None
            current = field.annotation
        elif get_origin(current) is list:
            current = get_args(current)[0]  # the element is an index
        elif get_origin(current) is dict:
            current = get_args(current)[1]  # the element is a key
        else:
            return None
    current = _without_none(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _closest_model(
    doc: Document, loc: Sequence[Any], prefix: Sequence[Any], candidates: list[Any]
) -> Any:
    matched, _ = _split_loc(doc, loc[:-1], prefix)
    cur = doc.data
    for element in [*prefix, *matched]:
        found = child(cur, element)
        cur = found[1] if found else None
    keys = {str(k) for k in cur} - {str(loc[-1])} if isinstance(cur, dict) else set()

    def score(model: Any) -> tuple[int, int]:
        names = _field_names(model)
        return (len(keys & names), -len(names))

    return max(candidates, key=score)


def _field_names(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def _problem_for(doc: Document, err: Any, root: type[BaseModel], prefix: Sequence[Any]) -> Problem:
    loc = list(err["loc"])
    matched, _ = _split_loc(doc, loc, prefix)
    path = [*prefix, *matched]
    where = ".".join(str(p) for p in path) or "(top)"
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        model = _model_for(doc, err, root, prefix)
        names = sorted(_field_names(model))
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(names)}"
        return doc.problem(path, "error", "unknown-key", f"unknown key {key!r}{hint}", key=True)
    if kind == "missing":
        key = str(loc[-1])
        return doc.problem(path, "error", "missing", f"{where}: missing required key {key!r}")
    message = err["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind == "string_pattern_mismatch":
        pattern = (err.get("ctx") or {}).get("pattern", "")
        message = _PATTERN_HELP.get(pattern, message)
    if kind in ("bool_type", "bool_parsing"):
        message = "write true or false, unquoted"  # YAML 1.2: yes/no/on/off are texts
    value = err.get("input")
    if "[key]" in loc and kind == "string_type":
        # YAML reads `true:`, `~:` or `2026-01-01:` keys as other types
        written = "empty" if value is None else str(value).lower()
        message = f"a key must be a text, not {written}: quote it or rename it"
        where = ".".join(str(p) for p in path[:-1]) or "(top)"
        value = None
    shown = "" if isinstance(value, dict | list) or value is None else f" (got {value!r})"
    return doc.problem(
        path,
        "error",
        "type" if kind in (_TYPE_ERRORS - {"string_pattern_mismatch"}) | {"union"} else "value",
        f"{where}: {message}{shown}",
        key="[key]" in loc,
    )


_PATTERN_HELP = {
    schema.NODE_ID_PATTERN: "a node id is letters, digits, _ . or - and starts with a letter or _",
    schema.VARIABLE_PATTERN: "a variable name is letters, digits or _, not starting with a digit",
    schema.MENU_KEY_PATTERN: "a menu key is one of 0-9, * or #",
    schema.URL_PATTERN: "a webhook url starts with http:// or https://",
    schema.OUTCOME_PATTERN: "an outcome is lower-case letters, digits and -, e.g. promised-payment",
}
