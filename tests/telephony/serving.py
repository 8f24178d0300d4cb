"""Run `autocall serve` as a child process for tests, and read its call records."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.peers import port_bound

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
TREE = """\
name: front-desk
start: welcome
transfer_targets: ["101"]
nodes:
  welcome:
    menu: {prompt: "Welcome. For sales press 7.", items: {7: sales}, timeout: 5}
  sales:
    menu: {prompt: "Sales. Press 9 to confirm.", items: {9: confirmed}, timeout: 5}
  confirmed: {say: "Thank you, one moment."}
"""


@contextmanager
def serve(tmp: Path, port: int, *args: str, tree: str = TREE, stream: bool = False
          ) -> Iterator[subprocess.Popen[bytes]]:
    """``autocall serve`` on ``port`` (``stream``: it listens on TCP or TLS, not UDP)."""
    (tmp / "tree.yaml").write_text(tree)
    cmd = [sys.executable, "-c", "from autocall.cli import main; main()", "serve",
           "--tree", str(tmp / "tree.yaml"), "--bind", f"127.0.0.1:{port}",
           "--records", str(tmp / "calls.jsonl"), *args]
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=tmp, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "AUTOCALL_TTS_CACHE": str(tmp / "tts"),
                                 "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 30  # a cold interpreter on a loaded machine
        kind = socket.SOCK_STREAM if stream else socket.SOCK_DGRAM
        while not port_bound("127.0.0.1", port, kind):
            assert proc.poll() is None, (tmp / "serve.log").read_text()
            assert time.monotonic() < deadline, "serve did not bind its port"
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        log.close()


def hold_or_refused(tmp: Path, hold_ms: int) -> Path:
    """The caller scenario with its talk time filled in (SIPp keys do not reach <pause>)."""
    text = (HERE / "scenarios" / "uac_hold_or_refused.xml").read_text()
    path = tmp / f"uac_hold_{hold_ms}.xml"
    path.write_text(text.replace("[hold]", str(hold_ms)))
    return path


def records(tmp: Path) -> list[dict]:
    path = tmp / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
