"""TCP slow-loris against the SIP port: main's code and ours in the same run (issue 12 item 3).

For each code tree a SIP agent listening on TCP runs in its own process; the attack opens
``--headers`` connections that send half a header block and ``--bodies`` connections that
announce a ~1 MB message and send ``--body-kb`` of it, spread over loopback source
addresses (127.0.1.x, 30 connections each, under the 32-per-source cap, so what is
measured is the timeouts and the size limit, not the connection caps). It then holds
them ``--hold`` seconds (longer than the 10 s header timeout), closes them all and waits
``--settle`` seconds. The agent's RSS is printed before, at peak (VmHWM) and after,
with how many attack connections the agent was still holding at the end of the hold.

    python bench/bench_tcp_loris.py                        # main (/work/main) vs this tree
    python bench/bench_tcp_loris.py --main /path/to/main --headers 3000 --bodies 300

Needs ``ulimit -n`` above headers + bodies + 100. Takes about a minute per tree.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER = """
import asyncio, sys
from autocall.sip.ua import SipUA, UAConfig

async def main() -> None:
    ua = await SipUA.start(UAConfig(bind_port=int(sys.argv[1]), transport="tcp"))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await ua.close()

asyncio.run(main())
"""
HEAD = (
    b"INVITE sip:robot@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKloris\r\n"
    b"From: <sip:loris@127.0.0.1>;tag=1\r\nTo: <sip:robot@127.0.0.1>\r\n"
)
FULL = HEAD + b"Call-ID: loris\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"


@dataclass
class Figures:
    before: float
    peak: float
    held: int
    attack: int
    after: float


def _kb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _source(n: int) -> str:
    return f"127.0.{1 + n // 30 // 250}.{1 + n // 30 % 250}"


def _open(port: int, n: int) -> socket.socket | None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((_source(n), 0))
        s.connect(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    return s


def _send(s: socket.socket, data: bytes, deadline: float) -> None:
    s.setblocking(False)
    view = memoryview(data)
    while view and time.monotonic() < deadline:
        try:
            sent = s.send(view)
            view = view[sent:]
        except BlockingIOError:
            select.select([], [s], [], 0.2)
        except OSError:
            return  # closed by the agent: exactly what a limit does


def _alive(s: socket.socket) -> bool:
    """Still open on the agent's side (no EOF or reset waiting for us)."""
    s.setblocking(False)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return False
    except BlockingIOError:
        return True
    except OSError:
        return False


def run(tree: Path, port: int, args: argparse.Namespace) -> Figures:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # cwd=tree: ``python -c`` puts the working directory first on sys.path.
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port)],
        env=env,
        cwd=tree,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if args.quiet else None,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(1.0)
        before = _kb(proc.pid, "VmRSS")
        socks: list[socket.socket] = []
        deadline = time.monotonic() + 60
        for n in range(args.headers):
            s = _open(port, n)
            if s is not None:
                _send(s, HEAD, deadline)  # no Call-ID, CSeq, blank line: half a header
                socks.append(s)
        body = b"v=0\r\n" + b"a=x\r\n" * (args.body_kb * 1000 // 5)  # < Content-Length
        for n in range(args.headers, args.headers + args.bodies):
            s = _open(port, n)
            if s is not None:
                _send(s, FULL + b"Content-Length: 999999\r\n\r\n" + body, deadline)
                socks.append(s)
        time.sleep(args.hold)
        held = sum(_alive(s) for s in socks)
        peak = _kb(proc.pid, "VmHWM")
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()
        time.sleep(args.settle)
        after = _kb(proc.pid, "VmRSS")
        return Figures(before, peak, held, len(socks), after)
    finally:
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--main", type=Path, default=Path("/work/main"), help="main's checkout")
    ap.add_argument("--ours", type=Path, default=ROOT, help="the tree under test")
    ap.add_argument("--port", type=int, default=42500)
    ap.add_argument("--headers", type=int, default=3000)
    ap.add_argument("--bodies", type=int, default=300)
    ap.add_argument("--body-kb", type=int, default=990)
    ap.add_argument("--hold", type=float, default=12.0, help="> the 10 s header timeout")
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--quiet", action="store_true", help="hide the agents' log lines")
    args = ap.parse_args()
    rows = []
    for name, tree, port in (("main", args.main, args.port), ("ours", args.ours, args.port + 1)):
        fig = run(tree, port, args)
        rows.append((name, fig))
        print(
            f"{name:5} RSS before {fig.before:6.1f} MB  peak {fig.peak:6.1f} MB  "
            f"after {fig.after:6.1f} MB  held {fig.held}/{fig.attack} connections "
            f"after {args.hold:g} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
