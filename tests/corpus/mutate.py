"""A careless editor's mutations of valid YAML files (issue 13): a key deleted,
duplicated, retyped or re-indented, one to three times, on the text, so the loader also
meets duplicate keys, bad indentation and values of the wrong kind."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from hypothesis import strategies as st

KEY = re.compile(r"^(?P<indent>\s*)(?P<dash>-\s+)?(?P<key>[^\s:#][^:]*?):(?P<rest>\s.*)?$")
ACTIONS = ["delete", "duplicate", "retype", "indent", "dedent"]


def mutate(draw: st.DrawFn, valid: Mapping[str, str], values: Sequence[str]
           ) -> tuple[str, str, str]:
    """One of ``valid`` (name: text), mutated; a retyped key gets one of ``values``.
    Returns its name, the mutant's text, and how it was made (for the failure message)."""
    name = draw(st.sampled_from(sorted(valid)))
    lines = valid[name].splitlines()
    steps = []
    for _ in range(draw(st.integers(1, 3))):
        keyed = [i for i, text in enumerate(lines) if KEY.match(text)]
        if not keyed:
            break
        i = draw(st.sampled_from(keyed))
        action = draw(st.sampled_from(ACTIONS))
        match = KEY.match(lines[i])
        assert match is not None
        if action == "delete":
            del lines[i]
        elif action == "duplicate":
            lines.insert(i + 1, lines[i])
        elif action == "retype":
            head = f"{match['indent']}{match['dash'] or ''}{match['key']}:"
            lines[i] = head + draw(st.sampled_from(values))
        elif action == "indent":
            lines[i] = " " * draw(st.sampled_from([1, 2, 4])) + lines[i]
        else:
            lines[i] = lines[i][min(2, len(match["indent"])) :]
        steps.append(f"{action} line {i + 1}")
    return name, "\n".join(lines) + "\n", f"{name}: {', '.join(steps)}"
