"""SIGINT and SIGTERM (Ctrl-C, systemd, container runtimes) end work the same way in
every command: the first stops new work and lets what runs finish (records written),
a second cuts it at once (calls hung up, records still written)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from typing import TypeVar

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
T = TypeVar("T")


async def cancelled(task: asyncio.Future[T] | None) -> None:
    """Cancel ``task`` (None: none) and wait until its ``finally`` has run."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class StopSignals:
    """The signals received on the running loop; ``stop`` is set by the first, ``force``
    by the second (others may set them too: that is no signal received). ``on_signal``
    runs for each (say so, or cancel the task that waits)."""

    def __init__(self, on_signal: Callable[[signal.Signals], object] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.on_signal = on_signal
        self.received: list[signal.Signals] = []
        self.stop = asyncio.Event()
        self.force = asyncio.Event()
        for sig in STOP_SIGNALS:
            self.loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        # Counted, not read from ``stop``: a stop that came another way (the parent is
        # gone, a supervisor's order) and then one signal are still one stop.
        self.received.append(sig)
        (self.force if len(self.received) > 1 else self.stop).set()
        if self.on_signal is not None:
            self.on_signal(sig)

    def stopping(self) -> bool:
        return self.stop.is_set()

    @property
    def exit_code(self) -> int:
        """128 + the last signal when work was cut (the shell's convention), else 0."""
        return 128 + self.received[-1].value if self.force.is_set() else 0

    def close(self) -> None:
        for sig in STOP_SIGNALS:
            self.loop.remove_signal_handler(sig)
