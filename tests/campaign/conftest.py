"""Fixtures for campaign tests: campaign files, contact lists and the scripted far end."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

sys.path.insert(0, str(Path(__file__).parent))

from farend import ScriptedFarEnd  # noqa: E402

HERE = Path(__file__).parent


def us_number(i: int) -> str:
    """A distinct valid New York number per index (E.164)."""
    return f"+1212{2000000 + i:07d}"


def write_contacts(path: Path, numbers: list[str]) -> Path:
    lines = ["phone,first_name"] + [f"{n},Name{i}" for i, n in enumerate(numbers)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_campaign(tmp: Path, n: int = 10, **overrides: Any) -> Path:
    """A campaign YAML with ``n`` contacts and a window open around the clock."""
    contacts = write_contacts(tmp / "contacts.csv", [us_number(i) for i in range(n)])
    (tmp / "dnc.txt").write_text("", encoding="utf-8")
    data: dict[str, Any] = {
        "name": "test-campaign",
        "tree": "tree.yaml",
        "contacts": [contacts.name],
        "caller_ids": ["+12025550100"],
        "window": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                   "start": "00:00", "end": "23:59:59.999999", "override_legal_hours": True},
        "channels": 4,
        "calls_per_second": 200,
        "ring_timeout": 5,
        "retry": {"max_attempts": 3, "delays": {"busy": 0, "no-answer": 0, "failed": 0,
                                                "unreachable": 0, "hung-up-early": 0,
                                                "interrupted": 0}},
        "dnc": ["dnc.txt"],
    }
    data.update(overrides)
    path = tmp / "campaign.yaml"
    with open(path, "w", encoding="utf-8") as fh:
        YAML().dump(data, fh)
    return path


@pytest.fixture(autouse=True)
def _reap_dialer_processes() -> Iterator[None]:
    """A failing test must not leave dialer processes behind."""
    yield
    from procs import STARTED

    while STARTED:
        STARTED.pop().kill()


@pytest.fixture
def farend() -> Callable[..., ScriptedFarEnd]:
    return ScriptedFarEnd


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'campaign.db'}"

