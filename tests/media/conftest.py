"""Fixtures of the media tests: one MediaEngine (one pacing timer, one reader) per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from autocall.media import MediaEngine


@pytest.fixture
async def engine() -> AsyncIterator[MediaEngine]:
    """A plain engine; a file that needs other settings defines its own ``engine``."""
    eng = MediaEngine()
    yield eng
    eng.close()
