"""Issue 12 item 6: a node's identity is its process; a gone local process is dead."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from autocall.campaign.dialer import default_node, node_process_gone


def test_default_node_is_unique_per_process_and_call() -> None:
    a, b = default_node(), default_node()
    assert a != b
    host, pid, token = a.rsplit(":", 2)
    assert host == socket.gethostname()[:70] and pid == str(os.getpid()) and len(token) == 8
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            "from autocall.campaign.dialer import default_node; print(default_node())",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert other.rsplit(":", 2)[:2] != a.rsplit(":", 2)[:2]


def test_a_gone_local_process_is_dead_others_are_judged_by_heartbeat() -> None:
    assert not node_process_gone(default_node())  # this process
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    gone = f"{socket.gethostname()[:70]}:{done.stdout.strip()}:abcdef12"
    assert node_process_gone(gone)
    old = datetime.now(UTC) - timedelta(seconds=6)
    assert node_process_gone(gone, old.replace(tzinfo=None))
    # A fresh heartbeat: perhaps a live node of another machine with this host name.
    assert not node_process_gone(gone, datetime.now(UTC))
    assert not node_process_gone(f"elsewhere:{done.stdout.strip()}:abcdef12")
    assert not node_process_gone("node-a")  # a --node name: its heartbeat decides
