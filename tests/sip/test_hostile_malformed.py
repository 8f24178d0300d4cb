"""Malformed SIP against `autocall serve` over a raw UDP socket (issue 12 item 4).

Every malformed request that can be answered gets one final 400 with a ``Warning: 399``
saying what is wrong (RFC 3261 §20.43); nothing leaves a traceback in the log, and the
log lines about them are rate-limited.
"""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import pytest

from tests.telephony.serving import serve

pytestmark = [pytest.mark.peers, pytest.mark.timeout(120)]

PORT = 42100  # h3's range: 42000-42999
FLOOD = 300


def _invite(
    n: int,
    *,
    contact: str = "<sip:caller@127.0.0.1:5999>",
    sdp_addr: str = "127.0.0.1",
    extra: str = "",
) -> bytes:
    sdp = (
        f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 {sdp_addr}\r\nt=0 0\r\n"
        "m=audio 42900 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode("utf-8", "surrogatepass")
    head = (
        f"INVITE sip:frontdesk@127.0.0.1:{PORT} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKmal{n}\r\n"
        f"From: <sip:caller@127.0.0.1>;tag=mal{n}\r\nTo: <sip:frontdesk@127.0.0.1>\r\n"
        f"Call-ID: malformed-{n}\r\nCSeq: 1 INVITE\r\nContact: {contact}\r\n{extra}"
        f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n"
    )
    return head.encode("latin-1") + sdp


CASES: dict[str, bytes] = {
    "NUL in SDP address": _invite(1, sdp_addr="127.0.0\x00.1"),
    "SDP host name": _invite(2, sdp_addr="nowhere.invalid"),
    "empty Contact": _invite(3, contact=""),
    "Contact without URI": _invite(4, contact="<>"),
    "Contact unterminated": _invite(5, contact='"Bob <sip:bob@127.0.0.1'),
    "Contact no scheme": _invite(6, contact="<bob@127.0.0.1>"),
    "Contact junk": _invite(7, contact=";;;;"),
    "Contact star": _invite(8, contact="*"),
    "Contact bad port": _invite(9, contact="<sip:bob@127.0.0.1:99999>"),
    "bad Max-Forwards": _invite(10, extra="Max-Forwards: many\r\n"),
    "bad Expires": _invite(11, extra="Expires: soon\r\n"),
    "bad CSeq": _invite(12).replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE"),
    "CSeq method mismatch": _invite(13).replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"),
    "bad From": _invite(14).replace(
        b"From: <sip:caller@127.0.0.1>;tag=mal14", b"From: <<<>;tag=mal14"
    ),
    "bad Content-Length": _invite(15).replace(b"Content-Length: ", b"Content-Length: x"),
    "bad Require-free header line": _invite(16).replace(
        b"CSeq: 1 INVITE\r\n", b"CSeq: 1 INVITE\r\nno colon here\r\n"
    ),
}


def _final(sock: socket.socket, call_id: bytes) -> bytes | None:
    """The first final response for ``call_id`` (bounded: 3 s)."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            reply = sock.recv(65535)
        except TimeoutError:
            return None
        if not reply.startswith(b"SIP/2.0 1") and b"Call-ID: " + call_id + b"\r\n" in reply:
            return reply
    return None


def test_every_malformed_request_gets_400_with_warning_and_no_traceback(tmp_path: Path) -> None:
    failures: list[str] = []
    with serve(tmp_path, PORT):
        for n, (name, data) in enumerate(CASES.items(), 1):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", 0))
                s.settimeout(3)
                here = f"127.0.0.1:{s.getsockname()[1]}".encode()
                s.sendto(data.replace(b"127.0.0.1:5999", here), ("127.0.0.1", PORT))
                reply = _final(s, f"malformed-{n}".encode())
            if (
                reply is None
                or not reply.startswith(b"SIP/2.0 400")
                or b"\r\nWarning: 399 " not in reply
            ):
                failures.append(f"{name}: {reply[:60] if reply else None!r}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # a flood: log stays short
            s.bind(("127.0.0.1", 0))
            s.settimeout(0.05)
            flood = _invite(99, sdp_addr="127.0.0\x00.1")
            for n in range(FLOOD):
                s.sendto(flood.replace(b"mal99", f"flood{n}".encode()), ("127.0.0.1", PORT))
                with contextlib.suppress(TimeoutError):
                    s.recv(65535)
        time.sleep(1.0)  # let anything a bad request set off reach the log
    log = (tmp_path / "serve.log").read_text(errors="replace")
    assert not failures, "\n".join(failures)
    assert "Traceback" not in log, log[-3000:]
    lines = [line for line in log.splitlines() if "invalid <Request" in line]
    assert 0 < len(lines) <= 10, len(lines)  # LogRate's burst, however many came
