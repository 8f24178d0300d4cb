"""RTP port allocation with quarantine (sans-I/O: the caller binds, this only decides).

A media gateway keeps sending for a while after BYE, and RTP has no connection to
close: if the port a call just freed is handed to the next call, the previous call's
tail lands in the new one (issue 22: all in-band digits lost). So a freed port rests
for ``quarantine`` seconds before it is offered again.

Settings, from the environment:

- ``AUTOCALL_RTP_PORTS``: the range, ``"20000-29999"``. Only even ports are used
  (RFC 3550 §11: RTP on an even port, RTCP on the next odd one). Unset: the operating
  system picks (port 0), and a quarantined port it returns is refused and asked again.
- ``AUTOCALL_RTP_QUARANTINE``: seconds a freed port rests, default 30.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

__all__ = ["DEFAULT_QUARANTINE", "PortPool", "PortsExhausted"]

DEFAULT_QUARANTINE = 30.0


class PortsExhausted(OSError):
    """Every port of the range is in use or resting."""


@dataclass(frozen=True, slots=True)
class _Range:
    low: int
    high: int


class PortPool:
    """Which RTP port to try next; which ports are in use or resting."""

    def __init__(
        self,
        low: int | None = None,
        high: int | None = None,
        quarantine: float = DEFAULT_QUARANTINE,
        rng: random.Random | None = None,
    ) -> None:
        if (low is None) != (high is None):
            raise ValueError("give both ends of the RTP port range, or neither")
        if low is not None and high is not None:
            low += low % 2  # RFC 3550 §11: RTP ports are even
            if not 1024 <= low <= high <= 65535:
                raise ValueError(f"RTP port range {low}-{high} is empty or outside 1024-65535")
        if quarantine < 0:
            raise ValueError(f"RTP port quarantine {quarantine} s is negative")
        self.range = None if low is None or high is None else _Range(low, high)
        self.quarantine = quarantine
        self._rng = rng or random.Random()
        self._in_use: set[int] = set()
        self._resting: dict[int, float] = {}  # port -> when it may be used again
        self._next = self._start()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PortPool:
        """The pool that ``AUTOCALL_RTP_PORTS`` and ``AUTOCALL_RTP_QUARANTINE`` describe."""
        env = os.environ if environ is None else environ
        spec = env.get("AUTOCALL_RTP_PORTS", "").strip()
        q = env.get("AUTOCALL_RTP_QUARANTINE", "").strip()
        low = high = None
        if spec:
            lo, sep, hi = spec.partition("-")
            if not sep or not lo.strip().isdigit() or not hi.strip().isdigit():
                raise ValueError(
                    f"AUTOCALL_RTP_PORTS={spec!r} is not a port range: write it like 20000-29999"
                )
            low, high = int(lo), int(hi)
        try:
            quarantine = float(q) if q else DEFAULT_QUARANTINE
        except ValueError:
            raise ValueError(
                f"AUTOCALL_RTP_QUARANTINE={q!r} is not a number of seconds: write it like 30"
            ) from None
        try:
            return cls(low, high, quarantine)
        except ValueError as e:
            raise ValueError(f"AUTOCALL_RTP_PORTS / AUTOCALL_RTP_QUARANTINE: {e}") from None

    def _start(self) -> int:
        r = self.range
        if r is None:
            return 0
        return r.low + 2 * self._rng.randrange((r.high - r.low) // 2 + 1)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def resting(self, now: float) -> int:
        """Ports freed less than ``quarantine`` seconds ago."""
        self._expire(now)
        return len(self._resting)

    def usable(self, port: int, now: float) -> bool:
        """False while ``port`` is in use by us or resting after a call."""
        self._expire(now)
        return port not in self._in_use and port not in self._resting

    def candidates(self, now: float) -> Iterator[int]:
        """Ports to try binding, in turn (0 means: let the system pick, then `usable`).

        With a range, each even port once, starting after the last one handed out, so
        ports are spread over the range rather than reused first.
        """
        r = self.range
        if r is None:
            yield 0
            return
        self._expire(now)
        n = (r.high - r.low) // 2 + 1
        start = self._next
        for i in range(n):
            port = r.low + (start - r.low + 2 * i) % (2 * n)
            if port not in self._in_use and port not in self._resting:
                yield port

    def exhausted(self, now: float) -> PortsExhausted:
        r = self.range
        where = "the system's ports" if r is None else f"{r.low}-{r.high}"
        return PortsExhausted(
            f"no free RTP port in {where}: {self.in_use} in use, {self.resting(now)} resting "
            f"for {self.quarantine:g} s after their calls; widen AUTOCALL_RTP_PORTS or "
            "shorten AUTOCALL_RTP_QUARANTINE"
        )

    def taken(self, port: int) -> None:
        """``port`` is bound by a session now."""
        self._in_use.add(port)
        r = self.range
        if r is not None:
            self._next = port + 2 if port + 2 <= r.high else r.low

    def released(self, port: int, now: float) -> None:
        """The session on ``port`` closed: it rests for ``quarantine`` seconds."""
        self._in_use.discard(port)
        if self.quarantine > 0:
            self._resting[port] = now + self.quarantine

    def _expire(self, now: float) -> None:
        if self._resting:
            done = [p for p, until in self._resting.items() if until <= now]
            for p in done:
                del self._resting[p]
