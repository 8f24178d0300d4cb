"""Fuzz the SIP parser: ≥ 1,000,000 generated and mutated messages, no crash allowed.

Every input must either parse or raise ``ValueError`` — any other exception is a crash
and is printed with the input that caused it (exit status 1). Parsed messages are also
validated, their typed headers read, re-serialised and re-parsed, and fed through the
TCP framer in random segments, so the whole read path is covered.

    python bench/bench_fuzz_sip.py               # 1,000,000 messages
    python bench/bench_fuzz_sip.py --count 50000 --seed 7
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import time
import traceback

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from autocall.sip.auth import parse_challenge
from autocall.sip.dialog import parse_info_dtmf
from autocall.sip.message import StreamParser, parse_message
from autocall.sip.sdp import negotiate, parse_sdp

SDP = (b"v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
       b"m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
       b"a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n")

SEEDS = [
    b"INVITE sip:+15550100@pbx.example.com;user=phone SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK74bf9;rport\r\n"
    b"Via: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKx;received=192.0.2.1\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Caller, The" <sip:1000@example.com>;tag=9fxced76sl\r\n'
    b"To: <tel:+15550100;phone-context=example.com>\r\n"
    b"Call-ID: 3848276298220188511@10.0.0.1\r\nCSeq: 1 INVITE\r\n"
    b"Contact: <sip:1000@10.0.0.1:5060;transport=udp>\r\n"
    b"Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    b"Content-Type: application/sdp\r\nContent-Length: " + str(len(SDP)).encode() +
    b"\r\n\r\n" + SDP,
    b"SIP/2.0 407 Proxy Authentication Required\r\n"
    b"v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nf: <sip:a@b>;tag=1\r\nt: <sip:c@d>;tag=2\r\n"
    b"i: abc\r\nCSeq: 1 INVITE\r\n"
    b'Proxy-Authenticate: Digest realm="example.com", nonce="abc123", qop="auth",'
    b' algorithm=SHA-256, opaque="x"\r\nl: 0\r\n\r\n',
    b"INFO sips:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TLS h;branch=z9hG4bK2\r\n"
    b"From: <sips:a@b>;tag=1\r\nTo: <sips:bob@example.com>;tag=2\r\nCall-ID: q\r\n"
    b"CSeq: 3 INFO\r\nSubject: folded\r\n\tline\r\n"
    b"Content-Type: application/dtmf-relay\r\nContent-Length: 22\r\n\r\n"
    b"Signal=5\r\nDuration=160",
    b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h:5060;branch=z9hG4bK3\r\n"
    b"From: alice <sip:alice@example.com>;tag=r1\r\nTo: sip:alice@example.com\r\n"
    b"Call-ID: reg1\r\nCSeq: 2 REGISTER\r\nContact: <sip:alice@h>;expires=60, *\r\n"
    b'Authorization: Digest username="alice", realm="example.com", nonce="n", '
    b'uri="sip:example.com", response="0123", nc=00000001, cnonce="c", qop=auth\r\n'
    b"Expires: 60\r\n\r\n",
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK4\r\nFrom: <sip:a@b>;tag=1\r\n"
    b"To: <sip:c@d>;tag=2\r\nCall-ID: z\r\nCSeq: 5 REFER\r\nContent-Length: 0\r\n\r\n",
]
SPECIAL = [b":", b";", b",", b'"', b"<", b">", b"\\", b"\r\n", b"\r\n ", b"\n", b" ", b"=",
           b"@", b"[", b"]", b"?", b"\x00", b"\xff", b"\xc3\xa9", b"Content-Length: 99999\r\n",
           b"l: -1\r\n", b"SIP/2.0", b"sip:", b"tel:", b"z9hG4bK", b"CSeq: 4294967296 BYE\r\n",
           b"\r\n\r\n"]


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(8)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:
            buf[pos:pos] = rng.choice(SPECIAL)
        elif op == 2 and buf:
            del buf[pos : pos + rng.randint(1, 20)]
        elif op == 3:
            buf = buf[:pos]
        elif op == 4:
            lines = bytes(buf).split(b"\r\n")
            i = rng.randrange(len(lines))
            lines.insert(rng.randrange(len(lines) + 1), lines[i])
            buf = bytearray(b"\r\n".join(lines))
        elif op == 5:
            lines = bytes(buf).split(b"\r\n")
            rng.shuffle(lines)
            buf = bytearray(b"\r\n".join(lines))
        elif op == 6:
            buf[pos:pos] = rng.choice(SEEDS)[: rng.randrange(200)]
        else:
            text = bytes(buf)
            buf = bytearray(text.swapcase() if rng.random() < 0.5 else text.upper())
    return bytes(buf)


def generate(rng: random.Random) -> bytes:
    """A message built from parts, so the parser meets shapes the seeds do not have."""
    method = rng.choice([b"INVITE", b"ACK", b"BYE", b"CANCEL", b"OPTIONS", b"X", b"refer"])
    uri = rng.choice([b"sip:a@b", b"sips:[::1]:5061", b"tel:+1", b"sip:a:p@h;x=\"y\"", b"h"])
    lines = [rng.choice([method + b" " + uri + b" SIP/2.0",
                         b"SIP/2.0 " + str(rng.randrange(90, 710)).encode() + b" R"])]
    for _ in range(rng.randrange(12)):
        name = rng.choice([b"Via", b"v", b"From", b"f", b"To", b"t", b"Call-ID", b"i",
                           b"CSeq", b"Contact", b"m", b"Route", b"Content-Length", b"l",
                           b"X-" + bytes(rng.randrange(97, 123) for _ in range(3))])
        value = b"".join(rng.choice(SPECIAL + [b"a", b"1", b"tag=x", b"branch=z9hG4bKq",
                                               b"SIP/2.0/UDP h", b"<sip:x@y>"])
                         for _ in range(rng.randrange(8)))
        lines.append(name + rng.choice([b": ", b":", b" : "]) + value)
    body = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def exercise(data: bytes, rng: random.Random) -> bool:
    """True if the input parsed (then everything downstream ran on it)."""
    try:
        msg = parse_message(data)
    except ValueError:
        return False
    with contextlib.suppress(ValueError):
        msg.validate()
    for getter in ("vias", "contact", "from_", "to", "cseq", "call_id"):
        with contextlib.suppress(ValueError):
            getattr(msg, getter)
    for name in ("Proxy-Authenticate", "WWW-Authenticate"):
        value = msg.headers.get(name)
        if value is not None:
            with contextlib.suppress(ValueError):
                parse_challenge(value)
    if msg.content_type == "application/sdp":
        with contextlib.suppress(ValueError):
            negotiate(parse_sdp(msg.body))
    parse_info_dtmf(msg.content_type, msg.body)
    again = parse_message(bytes(msg))  # what we serialise we must read back
    framed = bytes(again)
    parser = StreamParser()
    cut = rng.randrange(len(framed) + 1)
    try:
        parser.feed(framed[:cut])
        parser.feed(framed[cut:])
    except ValueError:
        pass
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    crashes = 0
    parsed = 0
    t0 = time.perf_counter()
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeRemainingColumn()) as progress:
        task = progress.add_task("fuzzing", total=args.count)
        for i in range(args.count):
            r = rng.random()
            data = generate(rng) if r < 0.2 else mutate(rng, rng.choice(SEEDS))
            try:
                parsed += exercise(data, rng)
            except Exception:  # noqa: BLE001 - any non-ValueError is the bug we hunt
                crashes += 1
                if crashes <= 5:
                    print(f"CRASH on input {data!r}", file=sys.stderr)
                    traceback.print_exc()
            if i % 5000 == 0:
                progress.update(task, completed=i)
        progress.update(task, completed=args.count)
    dt = time.perf_counter() - t0
    print(f"{args.count:,} messages in {dt:.1f} s ({args.count / dt:,.0f}/s), "
          f"{parsed:,} parsed, the rest refused with ValueError; crashes: {crashes}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
