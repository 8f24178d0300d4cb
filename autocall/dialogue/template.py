"""Prompt templates: ``"Hello {first_name}"`` filled from the call's variables.

Plain ``str.format`` would raise on a missing field mid-call and would let a template
reach attributes (``{x.__class__}``); here only bare names are fields, a missing one
renders empty, and ``{{``/``}}`` stay literal braces.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Mapping
from typing import Any

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FORMATTER = string.Formatter()


def fields(template: str) -> list[str]:
    """Field names a template uses, in order; raises ValueError on a malformed one."""
    names = []
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:
        if "'}'" in str(exc) and "Single" in str(exc):
            raise ValueError(
                "a '}' has no '{' before it: write }} for a literal brace"
            ) from None
        raise ValueError(
            "a '{' is never closed: close the field ({first_name}) or write {{ for a "
            "literal brace"
        ) from None
    for _, field, _, _ in parsed:
        if field is None:
            continue
        if not _NAME.match(field):
            raise ValueError(f"{{{field}}} is not a plain variable name like {{first_name}}")
        names.append(field)
    return names


def render(template: str, variables: Mapping[str, str]) -> str:
    """Fill ``template``; unknown fields render as the empty string.

    Never raises: a malformed template (an unclosed ``{``, which ``validate`` reports)
    fills the ``{name}`` fields it can and keeps every other brace as written, so a
    simulation or a live call goes on.
    """
    out = []
    try:
        for literal, field, _, _ in _FORMATTER.parse(template):
            out.append(literal)
            if field is not None:
                out.append(str(variables.get(field, "")))
    except ValueError:
        return _LENIENT.sub(lambda m: _lenient(m, variables), template)
    return "".join(out)


_LENIENT = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _lenient(match: re.Match[str], variables: Mapping[str, str]) -> str:
    if match.group(1) is not None:
        return str(variables.get(match.group(1), ""))
    return match.group(0)[0]


def render_value(value: Any, variables: Mapping[str, str]) -> Any:
    """Render every string inside a JSON-like value (webhook payloads)."""
    if isinstance(value, str):
        return render(value, variables)
    if isinstance(value, dict):
        return {k: render_value(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, variables) for v in value]
    return value


def strings_in(value: Any) -> Iterator[str]:
    """Every string inside a JSON-like value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings_in(v)
