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
