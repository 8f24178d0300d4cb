"""The corpus tests' one warm runner per test module (forked commands, see harness.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import Runner


@pytest.fixture(scope="module")
def runner() -> Iterator[Runner]:
    with Runner() as warm:
        yield warm
