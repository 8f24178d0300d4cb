"""Start dialer processes (dialer_proc.py) and follow their output."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

SCRIPT = Path(__file__).parent / "dialer_proc.py"
STARTED: list[DialerProcess] = []  # killed after each test by conftest's reaper
SIP_SCRIPT = Path(__file__).parent / "sip_dialer_proc.py"


def sip_dialer(url: str, name: str, node: str, port: int, target: str) -> DialerProcess:
    """A dialer process placing real SIP calls through our UA (sip_dialer_proc.py)."""
    return DialerProcess(url, name, node, Path(), {}, 0.0, args=[
        sys.executable, str(SIP_SCRIPT), url, name, node, str(port), target])


class DialerProcess:
    """A dialer in its own process; ``done`` collects the records it reported committed."""

    def __init__(self, url: str, name: str, node: str, log: Path, scripts: dict[str, list[str]],
                 talk: float, start: bool = True, args: list[str] | None = None) -> None:
        if args is None:
            args = [sys.executable, str(SCRIPT), url, name, node, str(log),
                    json.dumps(scripts), str(talk)]
            if not start:
                args.append("--no-start")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        STARTED.append(self)
        self.ready = threading.Event()
        self.done: list[tuple[int, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            parts = line.split()
            if parts[:1] == ["READY"]:
                self.ready.set()
            elif parts[:1] == ["DONE"]:
                self.done.append((int(parts[1]), parts[2]))

    def wait_for(self, n_done: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.done) < n_done:
            if self.proc.poll() is not None:
                raise AssertionError(f"dialer exited early: {self.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.done)} records after {timeout}s")
            time.sleep(0.01)

    def finish(self, timeout: float) -> None:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"dialer did not finish in {timeout}s") from None
        self._reader.join(5)
        assert rc == 0, self.stderr()

    def kill(self) -> None:
        """SIGKILL by pid if still running (test teardown)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read() if self.proc.poll() is not None else ""


def read_dials(log: Path) -> list[tuple[int, int, int, str]]:
    """(attempt_id, contact_id, attempt_no, number) for every call the far end received."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        _, attempt_id, contact_id, attempt_no, number = line.split()
        out.append((int(attempt_id), int(contact_id), int(attempt_no), number))
    return out
