"""`autocall serve` keeps its call under hostile traffic (issue 12 soak, bounded version).

The full run (100,000 datagrams, 3,000 connections) is ``bench/bench_soak_serve.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sip.soak import soak

pytestmark = [pytest.mark.peers, pytest.mark.timeout(180)]


def test_call_completes_under_malformed_flood_and_slow_tcp(tmp_path: Path) -> None:
    result = soak(tmp_path, 42600, datagrams=4000, slow_tcp=150, rate=2000.0)
    assert result.datagrams_sent == 4000 and result.slow_opened == 150
    for side in (result.udp, result.tcp):
        assert side.sipp_exit == 0, (side.transport, side.sipp_errors)
        assert side.record_status == "completed", side
        assert side.tracebacks == 0, side
        assert side.log_lines < 100, side  # rate-limited: not one line per datagram
        assert side.rss_after - side.rss_before < 20, side
