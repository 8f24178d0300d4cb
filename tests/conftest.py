"""Shared test fixtures. Layer-specific fixtures live in each tests/<layer>/conftest.py."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.campaign.pgserver import pg_schema


def need_binary(name: str) -> str:
    """Path of a peer binary the test setup installs; fail loudly (not skip) if missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/test.sh, which installs it")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """SQLAlchemy URL of the test PostgreSQL server (scripts/test.sh makes sure one answers)."""
    url = os.environ.get("AUTOCALL_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


@pytest.fixture
def pg_schema_url(postgres_url: str) -> Iterator[str]:
    """The test server with a schema of its own, so parallel runs never collide."""
    with pg_schema(postgres_url) as url:
        yield url
