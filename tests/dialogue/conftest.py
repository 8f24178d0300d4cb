"""Helpers for the dialogue tests: trees are built from YAML text, as designers write them."""

from __future__ import annotations

from pathlib import Path

import pytest

from autocall.dialogue.schema import Tree

PROMPTS_DIR = Path(__file__).resolve().parents[2] / "prompts"


def tree_from(data: dict) -> Tree:
    return Tree.model_validate(data)


@pytest.fixture
def write(tmp_path: Path):
    """Write a file under tmp_path and return its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return _write
