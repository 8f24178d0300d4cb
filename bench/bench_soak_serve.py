"""Soak `autocall serve`: 100,000 malformed UDP datagrams and 3,000 slow TCP connections
while SIPp places a real call to it (issue 12).

Prints, for the UDP and the TCP serve process: whether SIPp's call passed, the call
record's status, tracebacks and log lines in serve's log, and RSS before / peak / after.
Done when both calls pass and are completed, no traceback, RSS after within 20 MB of
before. The test suite runs a bounded version (tests/sip/test_hostile_soak.py).

    PYTHONPATH=. python bench/bench_soak_serve.py
    PYTHONPATH=. python bench/bench_soak_serve.py --datagrams 20000 --slow-tcp 500

Uses ports 42700-42720 and loopback sources 127.0.2.x; needs sipp (and root for its
RFC 4733 pcap) and ``ulimit -n`` above the slow-connection count.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.sip.soak import soak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datagrams", type=int, default=100_000)
    ap.add_argument("--slow-tcp", type=int, default=3000)
    ap.add_argument("--rate", type=float, default=20_000.0, help="datagrams per second")
    ap.add_argument("--port", type=int, default=42700)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        r = soak(
            Path(tmp), args.port, datagrams=args.datagrams, slow_tcp=args.slow_tcp, rate=args.rate
        )
    print(
        f"sent {r.datagrams_sent} malformed datagrams, opened {r.slow_opened} slow TCP connections"
    )
    ok = True
    for side in (r.udp, r.tcp):
        grew = side.rss_after - side.rss_before
        good = (
            side.sipp_exit == 0
            and side.record_status == "completed"
            and side.tracebacks == 0
            and grew < 20
        )
        ok = ok and good
        print(
            f"{side.transport}: call {'passed' if side.sipp_exit == 0 else 'FAILED'}, "
            f"record {side.record_status}, {side.tracebacks} tracebacks, "
            f"{side.log_lines} log lines, RSS {side.rss_before:.1f} → peak "
            f"{side.rss_peak:.1f} → {side.rss_after:.1f} MB ({grew:+.1f}) "
            f"{'ok' if good else 'NOT OK'}"
        )
        if side.sipp_errors:
            print(side.sipp_errors[-1500:])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
