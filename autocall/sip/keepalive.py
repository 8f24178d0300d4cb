"""Keep-alive of a registered agent's path to its registrar, sans-I/O.

Behind NAT, a binding that carries nothing for a while is forgotten, and then the
registrar's INVITEs for us are lost. A registered agent therefore sends something at a
configured interval: over TCP or TLS a double CRLF on the connection (RFC 5626 §3.5.1),
over UDP an OPTIONS to the registrar (whose answer also tells whether the path still
works). Each wait is drawn between 80 % and 100 % of the interval (RFC 5626 §4.4.1), so
many agents behind one NAT do not ping in step.

``KeepAlive`` takes ``now`` and returns what to do; the driver (``ua.SipUA``) sleeps until
``deadline``, sends the ping, and reports an OPTIONS' answer with ``answered``: no answer
at all (a timeout or a transport error) means the path is gone, so the driver registers
again at once instead of waiting for the next refresh.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["KeepAlive", "Ping", "PathLost"]


@dataclass(frozen=True)
class Ping:
    """Send a keep-alive now: ``crlf`` on the connection, or an ``options`` request."""

    kind: Literal["crlf", "options"]


@dataclass(frozen=True)
class PathLost:
    """The registrar no longer answers down our path: register again."""

    reason: str


class KeepAlive:
    """Pings every 80–100 % of ``interval`` seconds; ``reliable``: TCP/TLS (CRLF), else
    UDP (OPTIONS, one at a time: none is sent while the last is unanswered)."""

    def __init__(self, interval: float, reliable: bool,
                 draw: Callable[[float, float], float] = random.uniform) -> None:
        if interval <= 0:
            raise ValueError(f"keep-alive interval must be positive, not {interval}")
        self.interval = interval
        self.reliable = reliable
        self._draw = draw
        self.deadline: float | None = None
        self.waiting = False
        """An OPTIONS is out and not answered yet."""
        self.sent = 0

    def start(self, now: float) -> None:
        self.deadline = now + self._draw(0.8 * self.interval, self.interval)

    def stop(self) -> None:
        self.deadline = None
        self.waiting = False

    def on_timer(self, now: float) -> list[Ping]:
        if self.deadline is None or now < self.deadline:
            return []
        self.start(now)
        if self.waiting:  # the last OPTIONS is still out: its transaction decides
            return []
        self.sent += 1
        if self.reliable:
            return [Ping("crlf")]
        self.waiting = True
        return [Ping("options")]

    def answered(self, status: int | None) -> list[PathLost]:
        """The final answer to our OPTIONS; None when nothing came back (timeout or
        transport error). Any response, even 404 or 405, proves the path works."""
        self.waiting = False
        if status is None:
            return [PathLost("no answer to the keep-alive OPTIONS")]
        return []
