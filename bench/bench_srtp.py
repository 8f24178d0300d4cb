"""What SRTP costs: per-packet protect/unprotect, and RTP pacing of N calls with SRTP
against the same calls in plain RTP, in the same run.

    python bench/bench_srtp.py                          # 200 calls, 8 s each way
    python bench/bench_srtp.py --calls 100,200 --seconds 5 --json
    python bench/bench_srtp.py --sip --calls 200       # whole calls: TLS+SRTP vs UDP+RTP

Per packet (one process, 20 000 packets of a 20 ms PCMU frame, 172 bytes): building the
RTP packet (the plain path's own work, the baseline), `SrtpStream.protect` and
``unprotect`` for AES_CM_128_HMAC_SHA1_80 and _32 (libsrtp through pylibsrtp), in µs
per packet and as ratios to building the packet.

Pacing (each run in a fresh process): N calls = 2N `MediaSession`s on one
`MediaEngine`, paired like the two legs of a call, so every session sends 50 packets/s
and receives, de-jitters and runs in-band DTMF detection on 50 packets/s (a dialer's
work), once in plain RTP and once with SRTP (_80) keys. Per run: packets/s per stream
(mean, worst, drift from 50), p99 inter-departure, CPU per call; and the ratio SRTP /
plain of CPU per call and p99. The machine is shared: look at the load average printed
before and after.

``--sip``: whole calls between two of our agents in two processes, once over UDP with
plain RTP and once over TLS (a CA made here, certificates verified) with SRTP required.
The caller places N calls at once; calls/s is N over the time from the first INVITE to
the last answer; then the caller's N streams are timed for ``--seconds`` as above. Ports
19590-19599.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from _harness import WARMUP, cpu_seconds, paced_pairs, stamp_sends, summarise  # noqa: E402

SIP_PORT = {"udp": 19590, "tls": 19591}

SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
PACKETS = 20_000


def per_packet() -> dict[str, float]:
    from autocall.media.rtp import RtpSender
    from autocall.media.srtp import SrtpKeys, SrtpStream

    payload = bytes(160)
    sender = RtpSender()
    t0 = time.perf_counter()
    packets = [sender.packet(payload, 0, 160 * i, False) for i in range(PACKETS)]
    build = (time.perf_counter() - t0) / PACKETS * 1e6
    out = {"build_rtp_us": build}
    for suite in SUITES:
        key = os.urandom(30)
        tx = SrtpStream(SrtpKeys(suite, key, key))
        rx = SrtpStream(SrtpKeys(suite, key, key))
        t0 = time.perf_counter()
        wire = [tx.protect(p) for p in packets]
        out[f"protect_{suite[-2:]}_us"] = (time.perf_counter() - t0) / PACKETS * 1e6
        t0 = time.perf_counter()
        for w in wire:
            rx.unprotect(w)
        out[f"unprotect_{suite[-2:]}_us"] = (time.perf_counter() - t0) / PACKETS * 1e6
    return out


async def pacing(calls: int, seconds: float, srtp: bool) -> dict[str, Any]:
    from autocall.audio.tones import beep
    from autocall.media import MediaEngine, MediaSession
    from autocall.media.srtp import SrtpKeys

    engine = MediaEngine()
    n = 2 * calls
    sessions = [await MediaSession.open(engine) for _ in range(n)]
    times = stamp_sends(sessions)
    keys = [os.urandom(30) for _ in range(n)]
    for i, s in enumerate(sessions):
        j = i ^ 1  # the other leg: it sends with keys[j], we with keys[i]
        srtp_keys = SrtpKeys(SUITES[0], keys[i], keys[j]) if srtp else None
        s.start(("127.0.0.1", sessions[j].local_port), 0, 101, srtp=srtp_keys)
    prompt = beep(440, (seconds + WARMUP + 2) * 1000, -16)
    out, stats = await paced_pairs(engine, sessions, times, calls, seconds, prompt)
    out.update(srtp_failures=sum(x.srtp_failures for x in stats),
               encrypted=all(x.srtp_suite is not None for x in stats))
    return out


def _agent_args(transport: str, cadir: str, serve: bool) -> dict[str, Any]:
    from autocall.sip.sdes import SrtpPolicy
    from autocall.sip.transport import TlsSettings

    if transport == "udp":
        return {"transport": "udp", "srtp": SrtpPolicy("off")}
    d = Path(cadir)
    tls = TlsSettings(ca_file=d / "ca.pem", cert_file=d / "callee.pem" if serve else None,
                      key_file=d / "callee.key" if serve else None)
    return {"transport": "tls", "tls": tls, "srtp": SrtpPolicy("required")}


async def callee(transport: str, cadir: str) -> None:
    """Answers every call until its stdin closes."""
    from autocall.telephony.call import Call, UserAgent

    async def answer(call: Call) -> None:
        await call.answer()

    ua = await UserAgent.start(bind_port=SIP_PORT[transport], user="callee", on_call=answer,
                               **_agent_args(transport, cadir, serve=True))
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await ua.close()


async def caller(transport: str, cadir: str, calls: int, seconds: float) -> dict[str, Any]:
    from autocall.media import MediaSession
    from autocall.telephony.call import CallStatus, UserAgent

    ua = await UserAgent.start(user="caller", **_agent_args(transport, cadir, serve=False))
    scheme = "sips" if transport == "tls" else "sip"
    uri = f"{scheme}:callee@127.0.0.1:{SIP_PORT[transport]}"
    try:
        warm = await ua.call(uri, ring_timeout=10)  # the TLS connection: not counted
        await warm.wait_answer(10)
        await warm.hangup()
        # Departure times of every stream started from now on (the engine keeps the
        # bound method it is given at start, so the class is wrapped before the calls).
        sent: dict[int, list[float]] = {}
        orig = MediaSession._send_frame

        def timed(self: MediaSession, frame: int) -> None:
            sent.setdefault(id(self), []).append(time.monotonic())
            orig(self, frame)

        MediaSession._send_frame = timed  # type: ignore[method-assign]
        t0 = time.monotonic()
        placed = await asyncio.gather(*(ua.call(uri, ring_timeout=30) for _ in range(calls)))
        states = await asyncio.gather(*(c.wait_answer(30) for c in placed))
        setup = time.monotonic() - t0
        answered = [c for c, st in zip(placed, states, strict=True)
                    if st is CallStatus.IN_PROGRESS]
        await asyncio.sleep(WARMUP)
        t1, c1 = time.monotonic(), cpu_seconds()
        await asyncio.sleep(seconds)
        t2, c2 = time.monotonic(), cpu_seconds()
        stats = [c.media.stats() for c in answered]
        times = [sent.get(id(c.media), []) for c in answered]
        out: dict[str, Any] = summarise(times, t1, t2) if times else {}
        out.update(answered=len(answered), calls_per_s=len(answered) / setup,
                   setup_s=setup, cpu_pct_per_call=(c2 - c1) / (t2 - t1) / max(1, calls) * 100,
                   srtp_failures=sum(x.srtp_failures for x in stats),
                   encrypted=sum(x.srtp_suite is not None for x in stats))
        for c in answered:
            await c.hangup()
        return out
    finally:
        await ua.close()


def _sip_run(transport: str, calls: int, seconds: float, cadir: str) -> dict[str, Any] | None:
    far = subprocess.Popen([sys.executable, __file__, "--worker", "callee", transport, cadir],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert far.stdout is not None
        if far.stdout.readline().strip() != "ready":
            print(f"callee over {transport} did not start", file=sys.stderr)
            return None
        proc = subprocess.run([sys.executable, __file__, "--worker", "caller", transport,
                               cadir, str(calls), str(seconds)],
                              capture_output=True, text=True, timeout=seconds + 180)
        if proc.returncode != 0:
            print(f"caller over {transport} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            return None
        return dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    finally:
        if far.stdin is not None:
            far.stdin.close()
        try:
            far.wait(10)
        except subprocess.TimeoutExpired:
            far.kill()


def _sip_main(calls_list: list[int], seconds: float, as_json: bool,
              report: dict[str, Any]) -> None:
    import tempfile

    from tests.tlsca import TestCa

    with tempfile.TemporaryDirectory() as tmp:
        ca = TestCa(Path(tmp))
        issued = ca.issue("callee.bench", ips=("127.0.0.1",))
        issued.cert_file.rename(Path(tmp) / "callee.pem")
        issued.key_file.rename(Path(tmp) / "callee.key")
        for calls in calls_list:
            runs = {t: _sip_run(t, calls, seconds, tmp) for t in ("udp", "tls")}
            for t, r in runs.items():
                if r is None:
                    continue
                r.update(calls=calls, media="UDP+RTP" if t == "udp" else "TLS+SRTP")
                report["sip"].append(r)
                if not as_json:
                    print(f"{r['media']:>8} N={calls}: answered {r['answered']} in "
                          f"{r['setup_s']:.2f} s ({r['calls_per_s']:.0f} calls/s) | pps mean "
                          f"{r.get('pps_mean', 0):6.2f} worst {r.get('pps_worst', 0):6.2f} "
                          f"healthy {r.get('healthy_streams', 0)}/{r['answered']} | p99 "
                          f"{r.get('gap_p99_ms', 0):.1f} max {r.get('gap_max_ms', 0):.1f} ms | "
                          f"caller CPU {r['cpu_pct_per_call']:.3f}%/call | encrypted "
                          f"{r['encrypted']} srtp failures {r['srtp_failures']}", flush=True)
            plain, sec = runs["udp"], runs["tls"]
            if plain and sec and not as_json and plain.get("gap_p99_ms") and \
                    sec.get("gap_p99_ms"):
                print(f"TLS+SRTP vs UDP+RTP, N={calls}: calls/s "
                      f"x{sec['calls_per_s'] / plain['calls_per_s']:.2f}, caller CPU per call "
                      f"x{sec['cpu_pct_per_call'] / plain['cpu_pct_per_call']:.2f}, p99 gap "
                      f"x{sec['gap_p99_ms'] / plain['gap_p99_ms']:.2f}", flush=True)


def _worker(what: str, calls: int, seconds: float) -> None:
    if what == "packet":
        print(json.dumps(per_packet()))
    else:
        print(json.dumps(asyncio.run(pacing(calls, seconds, what == "srtp"))))


def _run(what: str, calls: int, seconds: float) -> dict[str, Any] | None:
    proc = subprocess.run([sys.executable, __file__, "--worker", what, str(calls), str(seconds)],
                          capture_output=True, text=True, timeout=seconds + 120)
    if proc.returncode != 0:
        print(f"{what} N={calls} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", default="200", help="comma-separated numbers of calls")
    ap.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--sip", action="store_true",
                    help="whole calls between two agents: TLS+SRTP vs UDP+RTP")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        w = args.worker
        if w[0] == "callee":
            asyncio.run(callee(w[1], w[2]))
        elif w[0] == "caller":
            print(json.dumps(asyncio.run(caller(w[1], w[2], int(w[3]), float(w[4])))))
        else:
            _worker(w[0], int(w[1]), float(w[2]))
        return 0
    load0 = os.getloadavg()[0]
    print(f"load average before: {load0:.2f} (cores: {os.cpu_count()})", flush=True)
    report: dict[str, Any] = {"load_before": load0, "pacing": [], "sip": []}
    calls_list = [int(c) for c in args.calls.split(",") if c.strip()]
    if args.sip:
        _sip_main(calls_list, args.seconds, args.json, report)
        load1 = os.getloadavg()[0]
        report["load_after"] = load1
        print(json.dumps(report, indent=2) if args.json else f"load average after: {load1:.2f}")
        return 0
    pkt = _run("packet", 0, 0)
    if pkt is not None:
        report["per_packet"] = pkt
        if not args.json:
            b = pkt["build_rtp_us"]
            print(f"per packet: build RTP {b:.2f} µs (baseline) | " + " | ".join(
                f"{k.removesuffix('_us').replace('_', ' ')} {v:.2f} µs (x{v / b:.1f})"
                for k, v in pkt.items() if k != "build_rtp_us"), flush=True)
    for calls in calls_list:
        runs = {what: _run(what, calls, args.seconds) for what in ("plain", "srtp")}
        plain, srtp = runs["plain"], runs["srtp"]
        for what, r in runs.items():
            if r is None:
                continue
            r.update(calls=calls, media=what)
            report["pacing"].append(r)
            if not args.json:
                print(f"{what:>5} N={calls} calls: pps mean {r['pps_mean']:6.2f} worst "
                      f"{r['pps_worst']:6.2f} drift {r['drift_pct']:.3f}% healthy "
                      f"{r['healthy_streams']}/{2 * calls} | p50 {r['gap_p50_ms']:.1f} p99 "
                      f"{r['gap_p99_ms']:.1f} max {r['gap_max_ms']:.1f} ms | CPU "
                      f"{r['cpu_pct_per_call']:.3f}%/call ({r['cpu_pct_total']:.0f}% total) | "
                      f"received {r['received']} srtp failures {r['srtp_failures']} "
                      f"encrypted {r['encrypted']}", flush=True)
        if plain and srtp and not args.json:
            print(f"SRTP vs plain RTP, N={calls}: CPU per call "
                  f"x{srtp['cpu_pct_per_call'] / plain['cpu_pct_per_call']:.2f}, p99 gap "
                  f"x{srtp['gap_p99_ms'] / plain['gap_p99_ms']:.2f}, drift "
                  f"{srtp['drift_pct']:.3f}% vs {plain['drift_pct']:.3f}%", flush=True)
    load1 = os.getloadavg()[0]
    report["load_after"] = load1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"load average after: {load1:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
