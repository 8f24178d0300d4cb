"""autocall.yamlfile, the one YAML reader for trees, cases and campaigns (issue 13)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from autocall.yamlfile import MAX_BYTES, YamlFileError, parse_yaml, read_yaml


def test_yamlfile_refuses_big_files_and_keeps_positions(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a: " + b"x" * MAX_BYTES + b"\n")
    with pytest.raises(YamlFileError, match="MiB; the limit is 4 MiB") as exc:
        read_yaml(big)
    assert (exc.value.line, exc.value.column, exc.value.kind) == (1, 1, "file")
    data, positions = parse_yaml("window:\n  days: [mon, tue, 2026-01-01]\n", "c.yaml")
    assert positions.locate(("window", "days", 2)) == (2, 20)
    assert positions.locate(("window", "nothing")) == (2, 3)  # deepest part that exists
    assert data == {"window": {"days": ["mon", "tue", dt.date(2026, 1, 1)]}}
    assert type(data["window"]) is dict  # plain data for pydantic, not ruamel's classes


def test_yamlfile_error_format_is_file_line_col(tmp_path: Path) -> None:
    path = tmp_path / "camp.yaml"
    path.write_bytes("name: Bj\xf6rn\n".encode("latin-1"))
    with pytest.raises(YamlFileError) as exc:
        read_yaml(path)
    assert str(exc.value).startswith(f"{path}:1:9: error: the file is not UTF-8")
    assert exc.value.hint.startswith("save it as UTF-8")


BOMB = (Path(__file__).parent / "trees" / "alias-bomb.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize("prefix", ["", "%YAML 1.2\n---\n", "%YAML 1.1\n---\n"])
def test_alias_bombs_are_refused_at_the_anchor_whatever_the_directive(prefix: str) -> None:
    """libyaml checks the events fast; where it refuses a file ruamel's parser checks it."""
    shift = prefix.count("\n")
    with pytest.raises(YamlFileError, match="aliases expand this file") as exc:
        parse_yaml(prefix + BOMB, "bomb.yaml")
    assert exc.value.line == 5 + shift  # the anchor &e whose repeats pass the budget


def test_deep_nesting_is_refused_before_anything_recursive_runs() -> None:
    with pytest.raises(YamlFileError, match="nests more than 64") as exc:
        parse_yaml("a: " + "[" * 100_000 + "]" * 100_000 + "\n", "deep.yaml")
    assert (exc.value.line, exc.value.column) == (1, 4 + 63)
