"""DTMF suite fixtures: the shared signal conditions and espeak-ng speech, rendered once."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

# conditions.py is shared with bench/bench_dtmf.py, which imports it the same way.
sys.path.insert(0, str(Path(__file__).parent))

import conditions  # noqa: E402


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Every conditions.VOICES sentence spoken by espeak-ng at 8 kHz (once per session)."""
    return conditions.render_speech(tmp_path_factory.mktemp("espeak"))
