"""SIP over TLS against SIP over TCP: what a handshake costs, and what reuse saves.

    python bench/bench_tls.py [--rounds 100] [--json]

Kamailio (its TLS module, a certificate from a CA made here) listens on TCP and TLS on
127.0.0.1 and answers OPTIONS itself. Four ways of asking it, in the same run:

- ``tcp new``: a fresh agent, so a new TCP connection, then OPTIONS (the baseline);
- ``tls new``: the same over TLS: TCP connect, TLS 1.3 handshake with full certificate
  verification (chain, dates, name), then OPTIONS;
- ``tcp reused`` / ``tls reused``: one agent sends ``--rounds`` OPTIONS down the
  connection it keeps (what calls after the first pay).

Times are the client's, from ``options()`` called to its 200 answer (agent start-up is not
counted); median and p95 in ms, and each row's median as a ratio to ``tcp new``. Rounds
alternate TCP and TLS (and which goes first) so load changes hit both alike. The load
average is printed before and after: the machine is shared. Ports 18790–18799.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autocall.sip.message import URI  # noqa: E402
from autocall.sip.transport import TcpTransport, TlsSettings  # noqa: E402
from autocall.sip.ua import SipUA, UAConfig  # noqa: E402
from tests.peers import Kamailio, KamailioTls  # noqa: E402
from tests.tlsca import TestCa  # noqa: E402

UDP, TLS, TCP = 18790, 18791, 18792
NAME = "sip.bench"


async def ask(ua: SipUA, port: int) -> float:
    target = URI.parse(f"sip:127.0.0.1:{port}")
    t0 = time.perf_counter()
    resp = await ua.options(target)
    took = time.perf_counter() - t0
    if resp.status != 200:
        raise SystemExit(f"OPTIONS to {port} answered {resp.status} {resp.reason}")
    return took * 1000


def config(transport: str, tls: TlsSettings) -> UAConfig:
    return UAConfig(transport=transport, tls=tls)


async def fresh(transport: str, port: int, tls: TlsSettings) -> float:
    ua = await SipUA.start(config(transport, tls))
    try:
        return await ask(ua, port)
    finally:
        await ua.close()


async def run(rounds: int, tls: TlsSettings) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"tcp new": [], "tls new": [], "tcp reused": [],
                                     "tls reused": []}
    for _ in range(3):  # warm both paths (imports, Kamailio's first TLS context use)
        await fresh("tcp", TCP, tls)
        await fresh("tls", TLS, tls)
    for i in range(rounds):
        for kind in (("tcp", "tls") if i % 2 else ("tls", "tcp")):
            times[f"{kind} new"].append(await fresh(kind, TCP if kind == "tcp" else TLS, tls))
    tcp_ua = await SipUA.start(config("tcp", tls))
    tls_ua = await SipUA.start(config("tls", tls))
    try:
        await ask(tcp_ua, TCP)  # open the connections: not counted
        await ask(tls_ua, TLS)
        for i in range(rounds):
            for kind in (("tcp", "tls") if i % 2 else ("tls", "tcp")):
                ua, port = (tcp_ua, TCP) if kind == "tcp" else (tls_ua, TLS)
                times[f"{kind} reused"].append(await ask(ua, port))
        for ua in (tcp_ua, tls_ua):
            if not isinstance(ua.transport, TcpTransport) or ua.transport.connections != 1:
                raise SystemExit("a reused connection was not reused")
    finally:
        await tcp_ua.close()
        await tls_ua.close()
    return times


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    load_before = os.getloadavg()
    ca = TestCa(Path(tempfile.mkdtemp(prefix="bench-tls-")))
    cert = ca.issue(NAME)
    tls = TlsSettings(ca_file=ca.cert_file, server_name=NAME)
    listener = KamailioTls(TLS, cert.cert_file, cert.key_file)
    with Kamailio(port=UDP, users={"bench": "unused"}, tls=listener, tcp_port=TCP):
        times = asyncio.run(run(args.rounds, tls))
    load_after = os.getloadavg()
    base = statistics.median(times["tcp new"])
    rows = {name: {"median_ms": round(statistics.median(v), 3), "p95_ms": round(p95(v), 3),
                   "ratio": round(statistics.median(v) / base, 2), "n": len(v)}
            for name, v in times.items()}
    if args.json:
        print(json.dumps({"rows": rows, "load_before": load_before[0],
                          "load_after": load_after[0], "cpus": os.cpu_count()}))
        return
    print(f"load average before: {load_before[0]:.2f}, after: {load_after[0]:.2f} "
          f"({os.cpu_count()} CPUs, shared)")
    print(f"{'OPTIONS to Kamailio':<22}{'median ms':>10}{'p95 ms':>10}{'vs tcp new':>12}")
    for name, row in rows.items():
        print(f"{name:<22}{row['median_ms']:>10.2f}{row['p95_ms']:>10.2f}"
              f"{row['ratio']:>11.2f}x")
    med = {name: row["median_ms"] for name, row in rows.items()}
    print(f"TLS reused vs TCP reused: {med['tls reused'] / med['tcp reused']:.2f}x; a new TLS "
          f"connection costs {med['tls new'] - med['tcp new']:.2f} ms more than a new TCP one "
          "(medians)")


if __name__ == "__main__":
    main()
