"""The dialer worker `autocall web` starts never outlives it (issue 15): a web process
killed with SIGKILL cannot stop its worker, so the worker must notice by itself (the
kernel's parent-death signal, and a watch on its parent's pid), stop dialing and exit,
freeing its SIP port for the next `autocall web`."""

from __future__ import annotations

import errno
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

CLI = [sys.executable, "-c", "from autocall.cli import main; main()"]
SIP_PORT = 19001  # the worker's SIP port (this helper's range: 19000-19099)


def alive(pid: int) -> bool:
    """A process with this pid exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def udp_port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def wait_for(check: object, seconds: float, what: str) -> float:
    """Poll ``check()`` until true; the seconds it took."""
    assert callable(check)
    began = time.monotonic()
    while not check():
        assert time.monotonic() - began < seconds, f"{what}: not after {seconds} s"
        time.sleep(0.05)
    return time.monotonic() - began


PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
print(child.pid, flush=True)
time.sleep(120)
"""

CHILD = """
import time
from autocall.lifeline import ask_parent_death_signal
assert ask_parent_death_signal()
open(%r, "w").write("armed")
time.sleep(120)
"""


def test_the_parent_death_signal_alone_ends_a_child_whose_parent_is_killed(
        tmp_path: Path) -> None:
    """The kernel's half, without the pid watch: a child that only asked for the signal
    (and would otherwise sleep two minutes) dies as its parent is SIGKILLed."""
    armed = tmp_path / "armed"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD % str(armed)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        wait_for(armed.exists, 30, "the child asks for the signal")
        assert alive(child) and parent_of(child) == parent.pid
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        took = wait_for(lambda: not alive(child), 5, "the child ends with its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert took < 5


def test_kill_9_of_autocall_web_ends_its_dialer_worker(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'web.db'}"
    port = SIP_PORT + 2  # HTTP
    assert not udp_port_taken(SIP_PORT), "the worker's port is taken before the test"
    env = {**os.environ, "AUTOCALL_BIND_HOST": "127.0.0.1",
           "AUTOCALL_BIND_PORT": str(SIP_PORT), "AUTOCALL_SIP_HOST": "127.0.0.1",
           "AUTOCALL_SIP_PORT": str(SIP_PORT + 1), "AUTOCALL_TTS_CACHE": str(tmp_path)}
    log = tmp_path / "web.log"
    with open(log, "wb") as out:
        web = subprocess.Popen([*CLI, "web", "--port", str(port), "--db", db],
                               stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    worker = 0
    try:
        def started() -> bool:
            assert web.poll() is None, log.read_text()
            return "dialer worker started (pid" in log.read_text()

        wait_for(started, 30, "autocall web starts its worker")
        found = re.search(r"dialer worker started \(pid (\d+)\)", log.read_text())
        assert found is not None
        worker = int(found.group(1))
        assert parent_of(worker) == web.pid
        wait_for(lambda: udp_port_taken(SIP_PORT), 60, "the worker binds its SIP port")
        os.kill(web.pid, signal.SIGKILL)
        web.wait(10)
        took = wait_for(lambda: not alive(worker), 20, "the worker ends with the web")
    finally:
        if web.poll() is None:
            web.kill()
            web.wait()
        if worker and alive(worker):
            os.kill(worker, signal.SIGKILL)
    assert took < 20
    assert not udp_port_taken(SIP_PORT), "the next autocall web can have the SIP port"
    assert "Traceback" not in log.read_text(), log.read_text()
