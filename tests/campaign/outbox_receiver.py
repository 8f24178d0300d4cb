"""A CRM stand-in for the outbox tests: a real HTTP server on 127.0.0.1 (http.server in a
thread) that verifies every Standard Webhooks signature, answers 500 while told to be
down, and records what arrived. It also notices one event id arriving while the same id
is still being handled (two senders at once)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass
class Arrival:
    event_id: str
    type: str
    subject: str
    signed: bool
    verified: bool
    status: int
    body: dict[str, object]


@dataclass
class Receiver:
    secret: str | None = SECRET
    fail_first: int = 0  # answer 500 to this many requests first
    down_until: float = 0.0  # and 500 until this time.monotonic()
    hold: float = 0.0  # seconds to take per request
    port: int = 0  # 0: any free port
    arrivals: list[Arrival] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)
    _in_flight: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> str:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                self.send_response(receiver.handle(body, dict(self.headers.items())))
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, body: bytes, headers: dict[str, str]) -> int:
        lower = {k.lower(): v for k, v in headers.items()}
        event_id = lower.get("webhook-id", "")
        with self._lock:
            if event_id in self._in_flight:
                self.overlaps.append(event_id)
            self._in_flight.add(event_id)
            failing = self.fail_first > 0 or time.monotonic() < self.down_until
            if self.fail_first > 0:
                self.fail_first -= 1
        try:
            if self.hold:
                time.sleep(self.hold)
            verified = False
            if self.secret is not None and "webhook-signature" in lower:
                try:
                    Webhook(self.secret).verify(body, lower)
                    verified = True
                except Exception:  # noqa: BLE001 - recorded as not verified
                    verified = False
            data = json.loads(body)
            status = 500 if failing else 200
            with self._lock:
                self.arrivals.append(Arrival(event_id, data["type"], data["subject"],
                                             "webhook-signature" in lower, verified, status,
                                             data))
            return status
        finally:
            with self._lock:
                self._in_flight.discard(event_id)

    def accepted(self) -> list[Arrival]:
        """Arrivals answered 200, in arrival order."""
        with self._lock:
            return [a for a in self.arrivals if a.status == 200]
