"""SIP transactions (RFC 3261 §17, with the RFC 6026 Accepted state), sans-I/O.

Each transaction takes messages and the current time and returns actions: messages to
``Send`` and messages or a ``TimedOut`` for the transaction user (TU). ``deadline`` is
the next instant ``on_timer(now)`` must be called; the driver owns the clock. Timer
names and values follow §17 and Table 4 (T1 = 500 ms, T2 = 4 s, T4 = 5 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from autocall.sip.message import Headers, Request, Response

__all__ = [
    "Timers", "Send", "Deliver", "TimedOut", "TransportFailed", "State",
    "ClientTransaction", "ServerTransaction", "client_key", "server_key", "make_ack",
]


@dataclass(frozen=True)
class Timers:
    """§17.1.1.1 and Table 4; configurable for tests and for slow links."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_d: float = 32.0  # > 32 s for unreliable transports (§17.1.1.2)


@dataclass(frozen=True)
class Send:
    message: Request | Response


@dataclass(frozen=True)
class Deliver:
    """A message for the TU: a response (client side) or a request (server side)."""

    message: Request | Response


@dataclass(frozen=True)
class TimedOut:
    """Timer B, F or H fired: the TU treats it as a 408 (§8.1.3.1) or a lost ACK."""

    timer: str


@dataclass(frozen=True)
class TransportFailed:
    """The request could not be sent (a refused or broken connection, §17.1.4): the TU
    treats it as a 503 (§8.1.3.1). ``reason`` says what the transport saw."""

    reason: str


Action = Send | Deliver | TimedOut | TransportFailed


class State(Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


def client_key(msg: Request | Response) -> tuple[str, str]:
    """§17.1.3: branch of the top Via plus the CSeq method."""
    return (msg.top_via.branch or "", msg.cseq.method)


def server_key(req: Request) -> tuple[str, str, str]:
    """§17.2.3: branch, sent-by and method (ACK matches the INVITE it acknowledges)."""
    via = req.top_via
    branch = via.branch or ""
    if not branch.startswith("z9hG4bK"):
        # RFC 2543 peers: fall back to the dialog identifiers (§17.2.3 last paragraph).
        branch = "2543:" + req.call_id + ":" + str(req.cseq.number) + ":" + (req.from_.tag or "")
    method = "INVITE" if req.method == "ACK" else req.method
    return (branch, f"{via.host}:{via.port or 5060}", method)


def _sibling(invite: Request, method: str, to: str) -> Request:
    """A request that shares the INVITE's top Via (branch), routes, From, Call-ID and CSeq
    number: ACK for a non-2xx (§17.1.1.3) and CANCEL (§9.1) are built alike."""
    h = Headers()
    h.add("Via", invite.headers.get_all("Via")[0])
    for route in invite.headers.get_all("Route"):
        h.add("Route", route)
    h.add("Max-Forwards", "70")
    h.add("From", invite.headers.get("From") or "")
    h.add("To", to)
    h.add("Call-ID", invite.call_id)
    h.add("CSeq", f"{invite.cseq.number} {method}")
    return Request(method, invite.uri, h)


def make_ack(invite: Request, response: Response) -> Request:
    """ACK for a non-2xx final response, inside the INVITE transaction (§17.1.1.3)."""
    return _sibling(invite, "ACK", response.headers.get("To") or "")


def make_cancel(invite: Request) -> Request:
    """CANCEL of a pending INVITE: its To is the INVITE's, without a tag (§9.1)."""
    return _sibling(invite, "CANCEL", invite.headers.get("To") or "")


class _Transaction:
    def __init__(self, request: Request, reliable: bool, timers: Timers | None) -> None:
        self.request = request
        self.is_invite = request.method == "INVITE"
        self.reliable = reliable
        self.timers = timers or Timers()
        self.state = State.TERMINATED
        self._deadlines: dict[str, float] = {}
        self._intervals: dict[str, float] = {}

    @property
    def deadline(self) -> float | None:
        return min(self._deadlines.values()) if self._deadlines else None

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def _arm(self, name: str, now: float, interval: float) -> None:
        self._deadlines[name] = now + interval
        self._intervals[name] = interval

    def _enter(self, state: State, now: float, resend: str, give_up: str) -> None:
        """Enter ``state`` with its retransmit timer, T1 (unreliable transports only), and
        its timeout, 64*T1: A and B, E and F, G and H."""
        self.state = state
        if not self.reliable:
            self._arm(resend, now, self.timers.t1)
        self._arm(give_up, now, 64 * self.timers.t1)

    def _disarm(self, *names: str) -> None:
        for name in names:
            self._deadlines.pop(name, None)

    def _terminate(self) -> None:
        self.state = State.TERMINATED
        self._deadlines.clear()

    def on_timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for name in sorted(self._deadlines, key=self._deadlines.__getitem__):
            if name in self._deadlines and self._deadlines[name] <= now:
                del self._deadlines[name]
                actions += self._fire(name, now)
        return actions

    def _fire(self, name: str, now: float) -> list[Action]:
        raise NotImplementedError


class ClientTransaction(_Transaction):
    """INVITE (§17.1.1) or non-INVITE (§17.1.2) client transaction."""

    def __init__(self, request: Request, *, reliable: bool = False,
                 timers: Timers | None = None) -> None:
        super().__init__(request, reliable, timers)
        self.key = client_key(request)

    def start(self, now: float) -> list[Action]:
        if self.is_invite:
            self._enter(State.CALLING, now, "A", "B")
        else:
            self._enter(State.TRYING, now, "E", "F")
        return [Send(self.request)]

    def receive(self, response: Response, now: float) -> list[Action]:
        code = response.status
        st = self.state
        if self.is_invite:
            if st in (State.CALLING, State.PROCEEDING):
                if code < 200:
                    self.state = State.PROCEEDING
                    self._disarm("A", "B")
                    return [Deliver(response)]
                if code < 300:
                    # RFC 6026 §7.2: Accepted, absorb 2xx retransmissions for 64*T1 (Timer M).
                    self.state = State.ACCEPTED
                    self._deadlines.clear()
                    self._arm("M", now, 64 * self.timers.t1)
                    return [Deliver(response)]
                self.state = State.COMPLETED
                self._deadlines.clear()
                self._arm("D", now, 0 if self.reliable else self.timers.timer_d)
                return [Send(make_ack(self.request, response)), Deliver(response)]
            if st is State.ACCEPTED and 200 <= code < 300:
                return [Deliver(response)]  # the TU re-sends its ACK (§13.2.2.4)
            if st is State.COMPLETED and code >= 300:
                return [Send(make_ack(self.request, response))]
            return []
        if st in (State.TRYING, State.PROCEEDING):
            if code < 200:
                self.state = State.PROCEEDING
                return [Deliver(response)]
            self.state = State.COMPLETED
            self._deadlines.clear()
            self._arm("K", now, 0 if self.reliable else self.timers.t4)
            return [Deliver(response)]
        return []

    def transport_error(self, reason: str) -> list[Action]:
        """§17.1.4: a transport failure ends a transaction still waiting for its final
        response at once and tells the TU; later ones (an ACK's, say) change nothing."""
        if self.state not in (State.CALLING, State.TRYING, State.PROCEEDING):
            return []
        self._terminate()
        return [TransportFailed(reason)]

    def _fire(self, name: str, now: float) -> list[Action]:
        t = self.timers
        if name == "A" and self.state is State.CALLING:
            self._arm("A", now, 2 * self._intervals["A"])
            return [Send(self.request)]
        if name == "E" and self.state in (State.TRYING, State.PROCEEDING):
            nxt = t.t2 if self.state is State.PROCEEDING else min(2 * self._intervals["E"], t.t2)
            self._arm("E", now, nxt)
            return [Send(self.request)]
        if name in ("B", "F"):
            self._terminate()
            return [TimedOut(name)]
        if name in ("D", "K", "M"):
            self._terminate()
        return []


class ServerTransaction(_Transaction):
    """INVITE (§17.2.1) or non-INVITE (§17.2.2) server transaction."""

    def __init__(self, request: Request, *, reliable: bool = False,
                 timers: Timers | None = None) -> None:
        super().__init__(request, reliable, timers)
        self.last_response: Response | None = None
        self.key = server_key(request)
        self.state = State.PROCEEDING if self.is_invite else State.TRYING

    def start(self, now: float, trying: Response | None = None) -> list[Action]:
        """Deliver the request to the TU; INVITE answers 100 Trying at once (§17.2.1)."""
        actions: list[Action] = [Deliver(self.request)]
        if self.is_invite and trying is not None:
            self.last_response = trying
            actions.insert(0, Send(trying))
        return actions

    def receive(self, request: Request, now: float) -> list[Action]:
        """A retransmission of the request, or the ACK of a non-2xx final response."""
        if request.method == "ACK":
            if self.is_invite and self.state is State.COMPLETED:
                self.state = State.CONFIRMED
                self._deadlines.clear()
                self._arm("I", now, 0 if self.reliable else self.timers.t4)
            return []
        if self.state in (State.PROCEEDING, State.COMPLETED) and self.last_response is not None:
            return [Send(self.last_response)]
        return []

    def respond(self, response: Response, now: float) -> list[Action]:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return []
        self.last_response = response
        code = response.status
        t1 = self.timers.t1
        if code < 200:
            self.state = State.PROCEEDING
        elif self.is_invite and code < 300:
            self.state = State.ACCEPTED  # RFC 6026 §8.7: Timer L absorbs INVITE retransmits
            self._arm("L", now, 64 * t1)
        elif self.is_invite:
            self._enter(State.COMPLETED, now, "G", "H")
        else:
            self.state = State.COMPLETED
            self._arm("J", now, 0 if self.reliable else 64 * t1)
        return [Send(response)]

    def _fire(self, name: str, now: float) -> list[Action]:
        if name == "G" and self.state is State.COMPLETED and self.last_response is not None:
            self._arm("G", now, min(2 * self._intervals["G"], self.timers.t2))
            return [Send(self.last_response)]
        if name == "H":
            self._terminate()
            return [TimedOut("H")]
        if name in ("I", "J", "L"):
            self._terminate()
        return []
