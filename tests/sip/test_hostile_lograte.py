"""LogRate: a flood of hostile packets makes a bounded number of log lines (fake clock)."""

from __future__ import annotations

import logging

import pytest

from autocall.sip.lograte import LogRate


def test_burst_then_count_then_summary(caplog: pytest.LogCaptureFixture) -> None:
    rate = LogRate(logging.getLogger("test.lograte"), burst=3, interval=10.0)
    with caplog.at_level(logging.INFO, logger="test.lograte"):
        logged = [
            rate.log(logging.WARNING, "bad", "bad packet %d", n, now=0.0) for n in range(1000)
        ]
        assert logged.count(True) == 3 and rate.suppressed_total == 997
        assert rate.log(logging.WARNING, "other", "another kind", now=1.0)  # own budget
        assert rate.log(logging.WARNING, "bad", "bad packet again", now=10.0)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:3] == ["bad packet 0", "bad packet 1", "bad packet 2"]
    assert "bad: 997 similar line(s) left out in the last 10 s" in messages
    assert messages[-1] == "bad packet again" and len(messages) == 6
    assert all(r.exc_info is None for r in caplog.records)  # one line, never a traceback
