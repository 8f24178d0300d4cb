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
    for _, field, _, _ in _FORMATTER.parse(template):
        if field is None:
            continue
        if not _NAME.match(field):
            raise ValueError(f"{{{field}}} is not a plain variable name like {{first_name}}")
        names.append(field)
    return names


def render(template: str, variables: Mapping[str, str]) -> str:
    """Fill ``template``; unknown fields render as the empty string."""
    out = []
    for literal, field, _, _ in _FORMATTER.parse(template):
        out.append(literal)
        if field is not None:
            out.append(str(variables.get(field, "")))
    return "".join(out)


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
