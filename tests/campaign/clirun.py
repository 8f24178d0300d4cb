"""Start ``autocall campaign run`` / ``autocall call`` as real processes (issue 12 tests).

The child inherits PYTHONPATH, so a worktree's code is what runs. Output goes to files
in the test's folder (no pipe can fill up and block the child).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from procs import STARTED

TREE_TALK = (
    "name: talk\noutcomes: [done]\nstart: talk\nnodes:\n  talk: {{pause: {talk}, next: bye}}\n"
    "  bye: {{hangup: done}}\n"
)


class CliProcess:
    """One ``autocall …`` process; killed (by pid) at teardown by conftest's reaper."""

    def __init__(self, args: Sequence[str], *, cwd: Path, env: dict[str, str], tag: str) -> None:
        self.out = cwd / f"{tag}.out"
        self.err = cwd / f"{tag}.err"
        full_env = {**os.environ, **env}
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from autocall.cli import main; main()", *args],
                cwd=cwd,
                env=full_env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        STARTED.append(self)  # type: ignore[arg-type]

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.proc.args} still running after {timeout} s: {self.stderr()[-3000:]}"
            ) from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")


def sip_env(trunk_port: int, bind_port: int, work: Path) -> dict[str, str]:
    return {
        "AUTOCALL_SIP_HOST": "127.0.0.1",
        "AUTOCALL_SIP_PORT": str(trunk_port),
        "AUTOCALL_BIND_HOST": "127.0.0.1",
        "AUTOCALL_BIND_PORT": str(bind_port),
        "AUTOCALL_TTS_CACHE": str(work / "tts"),
    }


def sipp_requests(trace: Path, method: str) -> list[str]:
    """Call-IDs of every ``method`` request SIPp received (from its -trace_msg file)."""
    if not trace.exists():
        return []
    text = trace.read_text(errors="replace")
    found = []
    for block in re.split(r"\n(?=-{10,})", text):
        if not re.search(rf"^{method} sip:", block, re.M) or "received" not in block[:300]:
            continue
        call_id = re.search(r"^Call-ID:\s*(\S+)", block, re.M | re.I)
        if call_id:
            found.append(call_id.group(1))
    return found


def wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout} s")
        time.sleep(0.05)
