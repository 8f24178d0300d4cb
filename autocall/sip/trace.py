"""A bounded record of the SIP messages an agent sent and received, to show on failure.

``SipUA.trace`` (None by default: nothing is kept) is called with each message as it
leaves or arrives; :class:`SipTrace` keeps the last :data:`MAX_MESSAGES` as text, each cut
at :data:`MAX_CHARS`, with control characters other than line breaks shown as ``\\xNN``
so a hostile peer cannot drive the terminal.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

MAX_MESSAGES = 40
MAX_CHARS = 4000

# A digest answer (RFC 7616 §3.4) is a hash of the password: enough to guess it offline,
# so a trace a user pastes into a ticket shows it as ***.
_DIGEST_RESPONSE = re.compile(r'(\bresponse\s*=\s*"?)[0-9A-Za-z]+', re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class TraceEntry:
    at: float
    """Seconds since the trace started."""
    direction: str
    """``sent`` or ``received``."""
    peer: tuple[str, int]
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0]


def _printable(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    text = _DIGEST_RESPONSE.sub(r"\1***", text)
    out = []
    for ch in text:
        code = ord(ch)
        out.append(ch if ch in "\n\t" or (code >= 0x20 and code != 0x7F) else f"\\x{code:02x}")
    shown = "".join(out)
    if len(shown) > MAX_CHARS:
        shown = shown[:MAX_CHARS] + f"\n… ({len(shown) - MAX_CHARS} more characters)"
    return shown


class SipTrace:
    """The last messages, oldest first; ``record`` is what ``SipUA.trace`` calls."""

    def __init__(self, start: float, limit: int = MAX_MESSAGES) -> None:
        self.start = start
        self.entries: deque[TraceEntry] = deque(maxlen=limit)
        self.dropped = 0

    def record(self, now: float, direction: str, peer: tuple[str, int], data: bytes) -> None:
        if len(self.entries) == self.entries.maxlen:
            self.dropped += 1
        self.entries.append(TraceEntry(now - self.start, direction, peer, _printable(data)))

    def mark(self) -> int:
        """A position to show the trace from (``since``): the messages of one step."""
        return self.dropped + len(self.entries)

    def since(self, mark: int) -> list[TraceEntry]:
        skip = max(0, mark - self.dropped)
        return list(self.entries)[skip:]

    @staticmethod
    def render(entries: list[TraceEntry]) -> str:
        """``+0.012 s  sent to 127.0.0.1:5060`` then the message, for each entry; a message
        sent again unchanged (a retransmission, RFC 3261 §17.1) is one line, not a copy."""
        blocks: list[str] = []
        previous: TraceEntry | None = None
        again: list[float] = []

        def flush() -> None:
            if again:
                times = ", ".join(f"+{t:.3f}" for t in again)
                blocks.append(f"  (sent again unchanged {len(again)}x: {times} s)")
                again.clear()

        for e in entries:
            if (
                previous is not None
                and e.direction == "sent" == previous.direction
                and e.peer == previous.peer
                and e.text == previous.text
            ):
                again.append(e.at)
                continue
            flush()
            arrow = "sent to" if e.direction == "sent" else "received from"
            blocks.append(f"+{e.at:.3f} s  {arrow} {e.peer[0]}:{e.peer[1]}\n{e.text.rstrip()}")
            previous = e
        flush()
        return "\n\n".join(blocks)
