"""A malformed tree never crashes a tool: mutated example trees only produce problems."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from typer.testing import CliRunner

from autocall.cli import app
from autocall.dialogue.loader import TreeError, load
from autocall.dialogue.simulate import Simulator
from autocall.dialogue.validate import validate_file

from .conftest import PROMPTS_DIR

_yaml = YAML(typ="safe")
EXAMPLES = {
    p.name: _yaml.load(p.read_text())
    for p in sorted(PROMPTS_DIR.glob("*.yaml"))
    if not p.name.endswith(".cases.yaml")
}

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 100),
    st.text(max_size=8),
    st.lists(st.text(max_size=4), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _mutate(data: Any, path: tuple, action: str, new: Any) -> Any:
    if not path:
        return new
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if action == "delete" and isinstance(parent, dict):
        del parent[last]
    elif action == "rename" and isinstance(parent, dict):
        parent[f"{last}x"] = parent.pop(last)
    else:
        parent[last] = new
    return data


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(sorted(EXAMPLES)),
    pick=st.integers(0, 10_000),
    action=st.sampled_from(["replace", "delete", "rename"]),
    new=junk,
    inputs=st.lists(st.sampled_from(["1", "2", "9", "#", "t", "yes", "0", "*"]), max_size=6),
)
def test_mutated_trees_give_problems_not_crashes(
    tmp_path_factory, name: str, pick: int, action: str, new: Any, inputs: list[str]
) -> None:
    import copy

    data = copy.deepcopy(EXAMPLES[name])
    paths = _paths(data)
    data = _mutate(data, paths[pick % len(paths)], action, new)
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "audio").mkdir()
    (folder / "audio" / "chime.wav").write_bytes((PROMPTS_DIR / "audio" / "chime.wav").read_bytes())
    stream = io.StringIO()
    YAML().dump(data, stream)
    path = folder / name
    path.write_text(stream.getvalue())

    report = validate_file(path)
    for problem in report.problems:
        assert problem.line >= 1 and problem.column >= 1 and problem.message
    try:
        tree = load(path)
    except TreeError as exc:
        assert exc.problems and not report.ok
        return
    result = Simulator(tree, {"first_name": "A"}).run(inputs)
    assert result.outcome is not None


def test_garbage_files_through_every_command(tmp_path: Path) -> None:
    runner = CliRunner()
    samples = [
        "",
        "\t\x00bad",
        "start: 1\nnodes: 2\n",
        "nodes:\n  a: [1, 2]\n",
        "- - -\n",
        "start: a\nnodes: {a: {menu: {items: {}}}}\n",
        "a: &x [*x]\n",
    ]
    for i, text in enumerate(samples):
        path = tmp_path / f"g{i}.yaml"
        path.write_text(text)
        for args in (["validate"], ["simulate", "--input", "1"], ["graph"], ["render"], ["test"]):
            extra = [str(path)] if args[0] != "test" else [str(path), str(path)]
            result = runner.invoke(app, ["prompts", *args, *extra])
            assert result.exit_code in (1, 2), (text, args, result.output)
            assert result.exception is None or isinstance(result.exception, SystemExit), (
                text,
                args,
                result.exception,
            )
