"""Soak `autocall serve` with hostile traffic while a real SIPp call goes on (issue 12).

Two serve processes run side by side, one on UDP and one on TCP (serve listens on one
transport). The UDP one gets ``datagrams`` malformed datagrams, the TCP one ``slow_tcp``
connections that send half a header and stay; meanwhile SIPp places one real call to
each (keys 7 and 9 through the front-desk tree). Used by ``tests/sip/test_hostile_soak.py``
(a bounded small run) and ``bench/bench_soak_serve.py`` (100,000 datagrams, 3,000
connections).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.peers import SCENARIOS, Sipp, port_bound
from tests.telephony.serving import ROOT, TREE, records


@dataclass
class Side:
    """What one serve process went through."""

    transport: str
    sipp_exit: int = -1
    sipp_errors: str = ""
    record_status: str | None = None
    rss_before: float = 0.0
    rss_peak: float = 0.0
    rss_after: float = 0.0
    tracebacks: int = 0
    log_lines: int = 0


@dataclass
class SoakResult:
    udp: Side = field(default_factory=lambda: Side("udp"))
    tcp: Side = field(default_factory=lambda: Side("tcp"))
    datagrams_sent: int = 0
    slow_opened: int = 0


def _mb(pid: int, name: str) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


READY = b"autocall serve: listening on "
"""What serve prints once its prompts are rendered (``autocall.cli.call._serve``)."""


@contextlib.contextmanager
def _serve(tmp: Path, port: int, transport: str) -> Iterator[subprocess.Popen[bytes]]:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "tree.yaml").write_text(TREE)
    cmd = [
        sys.executable,
        "-c",
        "from autocall.cli import main; main()",
        "serve",
        "--tree",
        str(tmp / "tree.yaml"),
        "--bind",
        f"127.0.0.1:{port}",
        "--records",
        str(tmp / "calls.jsonl"),
        "--transport",
        transport,
    ]
    kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
    with (tmp / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "AUTOCALL_TTS_CACHE": str(tmp / "tts"), "PYTHONPATH": str(ROOT)},
        )
        try:
            deadline = time.monotonic() + 60  # a slow machine's first TTS load
            while not port_bound("127.0.0.1", port, kind):
                assert proc.poll() is None, (tmp / "serve.log").read_text()
                assert time.monotonic() < deadline, "serve did not bind its port"
                time.sleep(0.05)
            # serve binds first, then renders the tree's prompts (loading the TTS engine,
            # well over 100 MB) and only then says it listens: that line is the baseline
            while READY not in (tmp / "serve.log").read_bytes():
                assert proc.poll() is None, (tmp / "serve.log").read_text()
                assert time.monotonic() < deadline, "serve did not say it listens"
                time.sleep(0.05)
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def malformed(n: int, port: int) -> bytes:
    """The n-th hostile datagram: a rotation of the malformed kinds of issue 12 item 4."""
    branch = f"z9hG4bKsoak{n}"
    base = (
        f"INVITE sip:frontdesk@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch={branch}\r\n"
        f"From: <sip:soak@127.0.0.1>;tag=s{n}\r\nTo: <sip:frontdesk@127.0.0.1>\r\n"
        f"Call-ID: soak-{n}\r\nCSeq: 1 INVITE\r\n"
    )
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0\x00.1\r\nt=0 0\r\n"
        "m=audio 9 RTP/AVP 0\r\n"
    )
    kind = n % 8
    if kind == 0:  # NUL in the SDP address
        text = (
            base + "Contact: <sip:soak@127.0.0.1:9>\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(sdp)}\r\n\r\n" + sdp
        )
    elif kind == 1:
        text = base + "Contact: <>\r\nContent-Length: 0\r\n\r\n"
    elif kind == 2:
        text = base + 'Contact: "unterminated <sip:x@y\r\nContent-Length: 0\r\n\r\n'
    elif kind == 3:
        text = base.replace("CSeq: 1 INVITE", "CSeq: x INVITE") + "Content-Length: 0\r\n\r\n"
    elif kind == 4:
        text = base + "Content-Length: 500\r\n\r\nshort"
    elif kind == 5:
        text = base + "a header line without a colon\r\nContent-Length: 0\r\n\r\n"
    elif kind == 6:
        text = base + "Max-Forwards: lots\r\nContact: <sip:x@127.0.0.1:9>\r\n\r\n"
    else:
        return bytes([n % 256]) * 64 + b"\x00garbage\xff" * 8
    return text.encode("latin-1")


def soak(
    tmp: Path,
    base_port: int,
    *,
    datagrams: int,
    slow_tcp: int,
    rate: float = 20_000.0,
    settle: float = 3.0,
) -> SoakResult:
    """Run the soak; ports ``base_port`` … ``base_port + 20`` are used."""
    result = SoakResult()
    udp_port, tcp_port = base_port, base_port + 1
    with (
        _serve(tmp / "udp", udp_port, "udp") as udp_proc,
        _serve(tmp / "tcp", tcp_port, "tcp") as tcp_proc,
    ):
        # both serves said they listen: imports done, prompts rendered: the baseline
        result.udp.rss_before = _mb(udp_proc.pid, "VmRSS")
        result.tcp.rss_before = _mb(tcp_proc.pid, "VmRSS")
        slow: list[socket.socket] = []

        def flood() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.setblocking(False)
                t0 = time.monotonic()
                for n in range(datagrams):  # all of them, even after the calls ended
                    with contextlib.suppress(BlockingIOError):
                        s.sendto(malformed(n, udp_port), ("127.0.0.1", udp_port))
                    result.datagrams_sent = n + 1
                    ahead = (n + 1) / rate - (time.monotonic() - t0)
                    if ahead > 0.001:
                        time.sleep(ahead)

        def loris() -> None:
            head = (
                b"INVITE sip:frontdesk@127.0.0.1 SIP/2.0\r\n"
                b"Via: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKloris\r\n"
            )
            for n in range(slow_tcp):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:  # 30 per loopback source: under the 32-per-source cap
                    s.bind((f"127.0.{2 + n // 30 // 250}.{1 + n // 30 % 250}", 0))
                    s.connect(("127.0.0.1", tcp_port))
                    s.send(head)
                except OSError:
                    s.close()
                    continue
                slow.append(s)
                result.slow_opened = len(slow)

        loris()  # the slow connections first: the call runs while they are all held
        workers = [threading.Thread(target=flood)]
        for w in workers:
            w.start()
        calls = [
            (
                result.udp,
                Sipp(
                    SCENARIOS / "uac_call.xml",
                    port=base_port + 10,
                    media_port=base_port + 12,
                    remote=f"127.0.0.1:{udp_port}",
                    service="frontdesk",
                    timeout=60,
                ),
            ),
            (
                result.tcp,
                Sipp(
                    SCENARIOS / "uac_call.xml",
                    port=base_port + 14,
                    media_port=base_port + 16,
                    remote=f"127.0.0.1:{tcp_port}",
                    service="frontdesk",
                    timeout=60,
                    transport="t1",
                ),
            ),
        ]
        try:
            for _, peer in calls:
                peer.start()
            for side, peer in calls:
                side.sipp_exit = peer.wait(90)
                if side.sipp_exit != 0:
                    side.sipp_errors = peer.errors()
        finally:
            for _, peer in calls:
                peer.stop()
            for w in workers:
                w.join(120)
        result.udp.rss_peak = _mb(udp_proc.pid, "VmHWM")
        result.tcp.rss_peak = _mb(tcp_proc.pid, "VmHWM")
        for s in slow:
            with contextlib.suppress(OSError):
                s.close()
        time.sleep(settle)
        result.udp.rss_after = _mb(udp_proc.pid, "VmRSS")
        result.tcp.rss_after = _mb(tcp_proc.pid, "VmRSS")
    for side, where in ((result.udp, tmp / "udp"), (result.tcp, tmp / "tcp")):
        log = (where / "serve.log").read_text(errors="replace")
        side.tracebacks = log.count("Traceback")
        side.log_lines = len(log.splitlines())
        rows = records(where)
        side.record_status = rows[0]["status"] if len(rows) == 1 else f"{len(rows)} records"
    return result
