"""Rate-limited log lines for what strangers can make us say (issue 12 item 4).

An open SIP port receives floods of malformed or hostile packets; one log line each would
fill the disk and bury everything else. ``LogRate`` lets ``burst`` lines per kind through
in each ``interval`` seconds and counts the rest; the first line after a quiet spell says
how many were left out. Sans-I/O: the caller passes ``now``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

__all__ = ["LogRate"]


@dataclass
class _Window:
    started: float
    logged: int = 0
    suppressed: int = 0


@dataclass
class LogRate:
    """At most ``burst`` lines per kind every ``interval`` seconds; the rest are counted."""

    logger: logging.Logger
    burst: int = 10
    interval: float = 60.0
    _windows: dict[str, _Window] = field(default_factory=dict, repr=False)
    suppressed_total: int = 0

    def log(self, level: int, kind: str, msg: str, *args: object, now: float | None = None) -> bool:
        """Log one line (never a traceback) unless ``kind`` is over its budget; True if logged."""
        t = time.monotonic() if now is None else now
        win = self._windows.get(kind)
        if win is None or t - win.started >= self.interval:
            left_out = win.suppressed if win is not None else 0
            if len(self._windows) > 1000:  # bounded: kinds are few, but never trust that
                self._windows.clear()
            win = self._windows[kind] = _Window(t)
            if left_out:
                self.logger.log(
                    level,
                    "%s: %d similar line(s) left out in the last %.0f s",
                    kind,
                    left_out,
                    self.interval,
                )
        if win.logged >= self.burst:
            win.suppressed += 1
            self.suppressed_total += 1
            return False
        win.logged += 1
        self.logger.log(level, msg, *args)
        return True
