"""The INVITE usage (RFC 3261 §13–§15), client and server side, sans-I/O.

An ``InviteUsage`` is one call's INVITE dialog usage: the INVITE and its final answer,
CANCEL and the 2xx that may cross it, the ACK of a 2xx, re-INVITEs and the BYE. Like
``transaction``, it takes messages and a ``now`` and returns actions; ``deadline`` is when
``on_timer(now)`` is due. The driver (``ua.SipUA``) runs the transactions the actions
start, resolves where they go (DNS is I/O) and hands the events to the application.
"""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Literal, Protocol

from autocall.sip.dialog import ALLOW, Dialog, DialogEvent, InDialogKind, response_to
from autocall.sip.message import Headers, Request, Response, printable, split_list, warning
from autocall.sip.sdp import parse_sdp
from autocall.sip.session_timer import (
    Interval,
    Role,
    TimerPolicy,
    TooSmall,
    answer_headers,
    granted,
    interval_of,
    min_se_of,
    next_deadlines,
    refresh_headers,
    request_headers,
)
from autocall.sip.transaction import Timers, make_cancel

__all__ = ["InviteState", "InviteUsage", "Agent", "SessionEvent", "Progress", "Answered",
           "Failed", "Ended", "Acked", "InDialog", "LocalFailure", "StartRequest", "Transmit",
           "Respond", "DialogUp", "Emit", "InviteAction", "new_tag", "bad_request"]

log = logging.getLogger(__name__)
Addr = tuple[str, int]
SDP = "application/sdp"


def new_tag() -> str:
    return secrets.token_hex(8)  # §19.3: unguessable, so nobody can inject into a dialog


def bad_request(request: Request, reason: str) -> Response:
    """400 for a request we parsed but cannot accept, the reason also in a Warning."""
    return response_to(request, 400, printable(reason), to_tag=new_tag(),
                       headers=Headers([("Warning", warning(reason))]))


class InviteState(Enum):
    """calling → early → confirmed → terminated."""

    CALLING = "calling"
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


RINGING = (InviteState.CALLING, InviteState.EARLY)


@dataclass(frozen=True)
class _Reply:
    status: int
    reason: str
    message: Response


class Progress(_Reply):
    """A provisional response above 100 to our INVITE: ringing or early media."""


class Answered(_Reply):
    """A 2xx to our INVITE (already ACKed)."""


@dataclass(frozen=True)
class Failed:
    """The INVITE ended without a call. ``network_fault``: nothing at all came back, the
    connection was refused (503, §8.1.3.1) or Timer B fired (408): a trunk or network
    problem, not a callee who did not pick up."""

    status: int
    reason: str
    message: Response | None = None
    by: str | None = None
    network_fault: bool = False


@dataclass(frozen=True)
class Ended:
    """A confirmed call hung up, ``by`` us or by the far end's BYE (``message``);
    ``reason``: why we did, when it was not asked for (session expired, no ACK, ...)."""

    by: str
    message: Request | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Acked:
    """The ACK of our 2xx; with a late offer it carries the answer."""

    message: Request


@dataclass(frozen=True)
class InDialog:
    """Another in-dialog request (INFO, NOTIFY) the usage answered with 200."""

    dialog_event: DialogEvent


SessionEvent = Progress | Answered | Failed | Ended | Acked | InDialog
"""What a usage tells the application: one class each, matched with ``isinstance``."""


class LocalFailure(Response):
    """A final response we made up because the request could not reach anyone (§8.1.3.1:
    a transport error counts as 503, Timer B as 408); it never crossed the network."""


class Agent(Protocol):
    """What a usage needs from its user agent: a fresh Via (new branch, §8.1.1.7), our
    Contact (a sips: one for a sips: INVITE, RFC 5630 §3.1.3), and credentials for a
    401/407 (§22.2), or None."""

    def via(self) -> str: ...

    def contact(self, user: str | None = None, secure: bool = False) -> str: ...

    def authorized_retry(self, request: Request, response: Response) -> Request | None: ...


@dataclass(frozen=True)
class StartRequest:
    """Send ``request`` in a client transaction of its own (INVITE, CANCEL, BYE) to ``to``:
    an address, or a dialog's next hop. Responses to the INVITE go back to ``receive``,
    those to a session refresh (``refresh``: a re-INVITE or UPDATE, RFC 4028) to
    ``refreshed``; a transaction timeout as a ``LocalFailure`` 408 to either."""

    request: Request
    to: Addr | Dialog
    refresh: bool = False


@dataclass(frozen=True)
class Transmit:
    """Send without a transaction: the ACK of a 2xx (§13.2.2.4), a 2xx again (§13.3.1.4)."""

    message: Request | Response
    to: Addr | Dialog


@dataclass(frozen=True)
class Respond:
    """Answer the request being handled, by default the INVITE (its server transaction)."""

    response: Response


@dataclass(frozen=True)
class DialogUp:
    """A dialog now exists: route its in-dialog requests to this usage."""

    dialog: Dialog


@dataclass(frozen=True)
class Emit:
    """An event for the application."""

    event: SessionEvent


InviteAction = StartRequest | Transmit | Respond | DialogUp | Emit


def requires_100rel(msg: Request | Response) -> bool:
    """The message's Require lists 100rel (RFC 3262): a reliable provisional response,
    or an INVITE that wants its provisional responses so."""
    return any(o.strip().lower() == "100rel" for raw in msg.headers.get_all("Require")
               for o in split_list(raw))


def _rseq(resp: Response) -> int | None:
    """The RSeq of a reliable provisional response (RFC 3262 §7.1: 1 to 2**32-1)."""
    raw = (resp.headers.get("RSeq") or "").strip()
    if not raw.isdigit() or not 0 < int(raw) < 2**32:
        return None
    return int(raw)


def _allows_update(msg: Request | Response) -> bool:
    return any(m.strip().upper() == "UPDATE" for raw in msg.headers.get_all("Allow")
               for m in split_list(raw))


class InviteUsage:
    """One INVITE usage, outgoing (``uac``) or incoming (``uas``, ``peer`` = where the
    INVITE came from). ``answerer`` makes our SDP answer to an offer (None → 488) and
    ``offerer`` our offer, for a late-offer 2xx or an offerless re-INVITE.

    With a ``session_timer`` policy (RFC 4028) an outgoing INVITE offers a session
    interval and retries once with the far end's Min-SE after a 422; an incoming one is
    ``screen``-ed (422, 400) before the application sees it. Once confirmed, the usage
    refreshes the session as the refresher (UPDATE if the far end allows it, else a
    re-INVITE with our last SDP, at half the interval) and sends BYE when the session
    expires unrefreshed: both are deadlines of ``on_timer``."""

    def __init__(self, agent: Agent, role: Literal["uac", "uas"], invite: Request, *,
                 peer: Addr | None = None, timers: Timers | None = None,
                 session_timer: TimerPolicy | None = None) -> None:
        self.agent = agent
        self.role = role
        self.invite = invite
        self.peer = peer
        self.timers = timers or Timers()
        self.state = InviteState.CALLING
        self.dialog: Dialog | None = None
        self.remote_sdp: bytes | None = None
        self.answerer: Callable[[bytes], bytes | None] = lambda offer: None
        self.offerer: Callable[[], bytes] = lambda: b""
        self.final_status: int | None = None
        self.local_tag = (invite.from_.tag or new_tag()) if role == "uac" else new_tag()
        self.heard_back = False
        """Whether anything at all (even 100 Trying) answered our INVITE."""
        self.provisional = False
        """A 1xx beyond 100 came (the phone rang), or any 1xx once we wanted to CANCEL."""
        self._cancel_requested = False
        self._cancel_sent = False
        self._ack: Request | None = None
        self._ok: tuple[Response, Addr | Dialog] | None = None
        self._ok_interval = 0.0
        self._auth_tries = 0
        self._deadlines: dict[str, float] = {}
        self._alternates: list[Addr] = []
        self.session_timer = session_timer
        """RFC 4028 policy; None: no session timers (``Require: timer`` gets 420)."""
        self.interval: Interval | None = None
        """The running session interval, None when no timer runs; set by a transaction in
        which our role was ``interval_role`` (the refresher is named by that role)."""
        self.interval_role: Role = role
        self.refreshes = 0
        """Session refreshes that succeeded, ours and the far end's."""
        self.local_sdp = b""
        """Our SDP as last sent (offer or answer): a refresh re-INVITE repeats it as is."""
        self._floor = 0  # the Min-SE a 422 asked for (§7.4)
        self._timer_retried = False
        self._timer_answer: tuple[Headers, Interval] | None = None
        self._refreshing: Request | None = None
        self._refresh_ack: Request | None = None
        self._peer_updates = False  # the far end's Allow lists UPDATE
        self._early: dict[str, Dialog] = {}
        """Early dialogs (RFC 3261 §12.1) by the far end's tag: a 1xx with a To tag makes
        one, PRACK and UPDATE (RFC 3311) travel in it, and its 2xx confirms it."""
        self._rseq: dict[str, int] = {}  # the last RSeq PRACKed, per early dialog (UAC)
        self.reliable_1xx = role == "uas" and requires_100rel(invite)
        """Our provisional responses are sent reliably: the INVITE requires 100rel."""
        self._rel: Response | None = None  # our reliable 1xx awaiting its PRACK (UAS)
        self._rel_interval = 0.0
        self._local_rseq = random.randint(1, 2**31 - 1)  # RFC 3262 §3
        self.pracks = 0
        """PRACKs: sent for the far end's reliable 1xx (UAC) or received for ours (UAS)."""
        if role == "uac" and session_timer is not None:
            for name, value in request_headers(session_timer):
                invite.headers.add(name, value)

    # ---- timers (the driver calls on_timer at deadline) --------------------------------
    @property
    def deadline(self) -> float | None:
        return min(self._deadlines.values()) if self._deadlines else None

    def on_timer(self, now: float) -> list[InviteAction]:
        actions: list[InviteAction] = []
        for name in sorted(self._deadlines, key=self._deadlines.__getitem__):
            if name in self._deadlines and self._deadlines[name] <= now:
                del self._deadlines[name]
                actions += self._fire(name, now)
        return actions

    def _fire(self, name: str, now: float) -> list[InviteAction]:
        if name == "cancel":  # §9.1: no final response 64*T1 after CANCEL: give up
            return self._fail(487, "Request Terminated (local)", by="local")
        if name == "no-ack":  # §13.3.1.4: 2xx sent for 64*T1 without ACK: end the session
            self._ok = None
            self._deadlines.pop("2xx", None)
            return self.bye(reason="no ACK")
        if name == "2xx" and self._ok is not None and self.state is InviteState.CONFIRMED:
            self._ok_interval = min(2 * self._ok_interval, self.timers.t2)
            self._deadlines["2xx"] = now + self._ok_interval
            return [Transmit(*self._ok)]
        if name == "rel1xx" and self._rel is not None and self.state is InviteState.EARLY:
            # RFC 3262 §3: our reliable 1xx again at T1, 2T1, 4T1… until its PRACK comes
            self._rel_interval *= 2
            self._deadlines["rel1xx"] = now + self._rel_interval
            return [Respond(self._rel)]
        if name == "rel1xx-timeout" and self._rel is not None and self.state in RINGING:
            # §3: no PRACK for 64*T1: the INVITE is refused with a 5xx
            self.final_status = 504
            self._terminate()
            return [Respond(response_to(self.invite, 504, "Server Time-out (no PRACK)",
                                        to_tag=self.local_tag)),
                    Emit(Failed(504, "no PRACK for our reliable provisional response",
                                by="local"))]
        if name == "refresh":  # RFC 4028 §10: the refresher refreshes at half the interval
            return self._send_refresh()
        if name == "expire" and self._refreshing is not None:
            return []  # our refresh is on its way: its answer (or timeout) decides
        if name == "expire":  # §10: nobody refreshed the session in time: end it
            log.info("call %s: session interval of %s s expired without a refresh: BYE",
                     self.invite.call_id, self.interval.seconds if self.interval else "?")
            return self.bye(reason="session expired")
        return []

    @property
    def dialogs(self) -> list[Dialog]:
        """Every dialog of this usage: the confirmed one and any early ones."""
        found = [self.dialog] if self.dialog is not None else []
        return found + [d for d in self._early.values() if d is not self.dialog]

    def dialog_for(self, request: Request) -> Dialog | None:
        """The dialog (confirmed or early) an in-dialog request names by its tags."""
        for dialog in self.dialogs:
            if dialog.matches(request):
                return dialog
        return None

    def _terminate(self) -> None:
        self.state = InviteState.TERMINATED
        self._rel = None
        self._deadlines.clear()
        self._ok = None
        self.interval = None

    def _fail(self, code: int, reason: str, resp: Response | None = None, *,
              by: str | None = None, network: bool = False) -> list[InviteAction]:
        if self.state is InviteState.TERMINATED:
            return []
        self.final_status = code
        self._terminate()
        return [Emit(Failed(code, reason, resp, by=by, network_fault=network))]

    # ---- messages ------------------------------------------------------------------------
    def receive(self, msg: Request | Response, now: float) -> list[InviteAction]:
        """A response to our INVITE (a ``LocalFailure`` for a transport error or Timer B),
        or the ACK or CANCEL of the INVITE we received."""
        if isinstance(msg, Response):
            return self._response(msg, now)
        if msg.method == "ACK":
            return self._ack_received(msg)
        if msg.method == "CANCEL" and self.role == "uas" and self.state in RINGING:
            self.final_status = 487
            self._terminate()  # §9.2: the INVITE gets 487, the CANCEL its own 200
            return [Respond(response_to(self.invite, 487, to_tag=self.local_tag)),
                    Emit(Failed(487, "cancelled by caller", by="remote"))]
        return []

    def on_request(self, ev: DialogEvent, source: Addr, now: float) -> list[InviteAction]:
        """An in-dialog request the dialog accepted (§12.2.2); REFER is the driver's."""
        req, kind = ev.request, ev.kind
        if kind == InDialogKind.BYE:  # §15.1.2
            bye: list[InviteAction] = [Respond(response_to(req, 200))]
            if self.state is not InviteState.TERMINATED:
                bye.append(Emit(Ended("remote", req)))
            self._terminate()
            return bye
        if kind == InDialogKind.OPTIONS:
            return [Respond(response_to(req, 200, headers=Headers(
                [("Allow", ALLOW), ("Accept", SDP)])))]
        if kind == InDialogKind.PRACK:
            return self._prack_received(req)
        if kind not in (InDialogKind.REINVITE, InDialogKind.UPDATE):
            return [Respond(response_to(req, 200)), Emit(InDialog(ev))]
        pending = self._refreshing
        if pending is not None and pending.method == "INVITE" and (kind == InDialogKind.REINVITE
                                                                   or bool(req.body)):
            # Our refresh re-INVITE's offer is out: no second offer at once (RFC 3261
            # §14.2, RFC 3311 §5.2). A bodiless UPDATE offers nothing and may pass.
            return [Respond(response_to(req, 491))]
        early = self._early_refusal(req, kind)
        if early is not None:
            return [Respond(early)]
        h = Headers([("Contact", self._contact())])
        refreshed: Interval | None = None
        if self.session_timer is not None:  # RFC 4028 §9: every re-INVITE/UPDATE refreshes
            try:
                timer_h, refreshed = answer_headers(
                    req, self.session_timer, self.interval.seconds if self.interval else None)
            except TooSmall as exc:
                return [Respond(response_to(req, 422, headers=Headers(
                    [("Min-SE", str(exc.min_se))])))]
            except ValueError as exc:
                return [Respond(bad_request(req, str(exc)))]
            for name, value in timer_h:
                h.add(name, value)
        if req.body and req.content_type == SDP:
            try:
                parse_sdp(req.body)
            except ValueError as exc:  # malformed, not merely unacceptable: 400
                return [Respond(bad_request(req, f"bad SDP: {exc}"))]
            answer = self.answerer(req.body)
            if answer is None:
                return [Respond(response_to(req, 488))]
            self.remote_sdp = req.body
            self.local_sdp = answer
            ok = response_to(req, 200, headers=h, body=answer, content_type=SDP)
        elif kind == InDialogKind.REINVITE:  # offerless: we offer in the 200, answer in the ACK
            self.local_sdp = self.offerer()
            ok = response_to(req, 200, headers=h, body=self.local_sdp, content_type=SDP)
        else:
            ok = response_to(req, 200, headers=h)
        if kind == InDialogKind.REINVITE:
            self._retransmit_until_ack(ok, source, now)
        if refreshed is not None:
            self.refreshes += 1
            self._arm(refreshed, "uas", now)
        return [Respond(ok), Emit(InDialog(ev))]

    def _early_refusal(self, req: Request, kind: InDialogKind) -> Response | None:
        """Why a re-INVITE or UPDATE must be refused before the call is answered, or None.

        A re-INVITE while the INVITE is pending: 500 with Retry-After (RFC 3261 §14.2).
        An UPDATE with an offer (RFC 3311 §5.2) while the INVITE's offer is not answered:
        500 with Retry-After if the offer was theirs (we have not answered it yet), 491 if
        it was ours (no answer came back yet). A bodiless UPDATE may always pass."""
        if self.state not in RINGING:
            return None
        retry = Headers([("Retry-After", "1")])
        if kind == InDialogKind.REINVITE:
            return response_to(req, 500, "Initial INVITE pending", headers=retry)
        if not req.body:
            return None
        if self.role == "uas" and not self.local_sdp:
            return response_to(req, 500, "Offer in the INVITE not yet answered", headers=retry)
        if self.role == "uac" and self.remote_sdp is None:
            return response_to(req, 491)
        return None

    # ---- UAC -----------------------------------------------------------------------------
    def set_offer(self, sdp: bytes | None) -> None:
        """Our SDP offer in the INVITE, or None for a late offer (the 2xx offers, §13.2.1)."""
        self.invite.body = sdp or b""
        self.local_sdp = sdp or b""
        if sdp:
            self.invite.headers.set("Content-Type", SDP)
        else:
            self.invite.headers.remove("Content-Type")

    def start(self, dest: Addr, now: float, alternates: Sequence[Addr] = ()) -> list[InviteAction]:
        """Send the INVITE to ``dest`` (resolved by the driver); ``alternates`` are the
        next servers for the same target (RFC 3263 §4.3), tried in order while nobody
        has answered."""
        self.peer = dest
        self.heard_back = False
        self._alternates = list(alternates)
        return [StartRequest(self.invite, dest)]

    def _next_server(self, resp: Response, now: float) -> list[InviteAction] | None:
        """RFC 3263 §4.3: a transport error, a timeout or a 503 before any ringing moves
        the INVITE to the next server, as a new transaction (a new Via branch)."""
        if not self._alternates or self.state is not InviteState.CALLING \
                or self._cancel_requested or not (isinstance(resp, LocalFailure)
                                                  or resp.status == 503):
            return None
        log.info("INVITE to %s:%s failed (%s %s); trying the next server",
                 *(self.peer or ("?", 0)), resp.status, resp.reason)
        retry = Request(self.invite.method, self.invite.uri, self.invite.headers.copy(),
                        self.invite.body)
        retry.headers.remove("Via")
        retry.headers.add("Via", self.agent.via(), first=True)
        self.invite = retry
        rest = self._alternates
        return self.start(rest[0], now, rest[1:])

    def _response(self, resp: Response, now: float) -> list[InviteAction]:
        moved = self._next_server(resp, now)
        if moved is not None:
            return moved
        if isinstance(resp, LocalFailure):
            return self._fail(resp.status, resp.reason, resp, by="local", network=True)
        self.heard_back = True
        code = resp.status
        if code < 200:
            actions: list[InviteAction] = []
            if code > 100 and self.state in RINGING:
                fresh = (resp.to.tag or "") not in self._early
                early = self._early_dialog(resp)
                if early is not None and fresh:
                    actions.append(DialogUp(early))  # route its PRACKs and UPDATEs here
                if early is not None and requires_100rel(resp):
                    prack = self._prack(early, resp)
                    if prack is None:
                        return []  # a retransmission or out of order: not processed (§4)
                    actions += prack
            self.provisional = self.provisional or code > 100 or self._cancel_requested
            if code > 100 and self.state in RINGING:
                self.state = InviteState.EARLY
                actions.append(Emit(Progress(code, resp.reason, resp)))
            return actions + (self._send_cancel() if self._cancel_requested else [])
        if code < 300:
            return self._on_2xx(resp, now)
        if code == 422 and not self._cancel_requested and self.peer is not None:
            retry = self._retry_min_se(resp)
            if retry is not None:  # RFC 4028 §7.4: once more with the far end's Min-SE
                self.invite = retry
                return self.start(self.peer, now)
        if code in (401, 407) and self._auth_tries < 2 and not self._cancel_requested \
                and self.peer is not None:
            retry = self.agent.authorized_retry(self.invite, resp)
            if retry is not None:  # §22.2: the same INVITE with credentials, CSeq + 1
                self._auth_tries += 1
                self.invite = retry
                return self.start(self.peer, now)
        return self._fail(code, resp.reason, resp)

    def _early_dialog(self, resp: Response) -> Dialog | None:
        """The early dialog a 1xx with a To tag belongs to, made on its first 1xx
        (RFC 3261 §12.1.2); None for a 1xx without a tag or one that cannot make one."""
        tag = resp.to.tag
        if not tag:
            return None
        early = self._early.get(tag)
        if early is None:
            try:
                early = Dialog.as_uac(self.invite, resp)
            except ValueError as exc:
                log.info("call %s: 1xx makes no early dialog: %s", self.invite.call_id, exc)
                return None
            self._early[tag] = early
        if resp.content_type == SDP and resp.body and self.remote_sdp is None:
            self.remote_sdp = resp.body  # the answer (or a late offer) in a 1xx
        return early

    def _prack(self, early: Dialog, resp: Response) -> list[InviteAction] | None:
        """PRACK a reliable 1xx (RFC 3262 §4): RAck = its RSeq, the INVITE's CSeq. The
        first sets the dialog's RSeq; later ones must be the next number, else they are
        retransmissions (our PRACK transaction retransmits on its own) or out of order:
        None, and the 1xx is not processed. A 1xx with no valid RSeq is taken unreliably."""
        rseq = _rseq(resp)
        if rseq is None:
            log.info("call %s: 1xx requires 100rel without a valid RSeq: no PRACK",
                     self.invite.call_id)
            return []
        last = self._rseq.get(early.remote_tag)
        if last is not None and rseq != last + 1:
            return None
        self._rseq[early.remote_tag] = rseq
        cseq = self.invite.cseq
        body, ctype = b"", None
        if not self.invite.body and resp.content_type == SDP and resp.body \
                and not self.local_sdp:
            body = self.answerer(resp.body) or b""  # a late offer's answer goes in the
            self.local_sdp = body  # PRACK (RFC 3262 §5)
            ctype = SDP if body else None
        prack = early.new_request("PRACK", self.agent.via(), body=body, content_type=ctype,
                                  extra=[("RAck", f"{rseq} {cseq.number} {cseq.method}")])
        self.pracks += 1
        return [StartRequest(prack, early)]

    def _retry_min_se(self, resp: Response) -> Request | None:
        """The INVITE again for a 422 (RFC 4028 §7.4): Session-Expires and Min-SE raised to
        the 422's Min-SE, CSeq + 1, a new Via branch; None when there is nothing to retry
        (no timer policy, already retried, no or a malformed Min-SE, or one no larger than
        what we asked for)."""
        if self.session_timer is None or self._timer_retried:
            return None
        try:
            floor = min_se_of(resp)
            asked = interval_of(self.invite)
        except ValueError as exc:
            log.info("422 with %s: not retried", exc)
            return None
        if floor is None or (asked is not None and floor <= asked.seconds):
            return None
        self._timer_retried = True
        self._floor = floor
        retry = Request(self.invite.method, self.invite.uri, self.invite.headers.copy(),
                        self.invite.body)
        for name, value in request_headers(self.session_timer, floor):
            if name != "Supported":  # already there
                retry.headers.set(name, value)
        retry.headers.set("CSeq", f"{self.invite.cseq.number + 1} INVITE")
        retry.headers.remove("Via")
        retry.headers.add("Via", self.agent.via(), first=True)
        return retry

    def _on_2xx(self, resp: Response, now: float) -> list[InviteAction]:
        if self.dialog is not None and self._ack is not None and self.dialog.matches(resp):
            # A retransmitted 2xx: our ACK was lost, send it again (§13.2.2.4).
            return [Transmit(self._ack, self.dialog)]
        early = self._early.get(resp.to.tag or "")
        if early is not None and self._ack is None:
            dialog = early  # the early dialog is confirmed (§13.2.2.4): CSeq goes on
            dialog.refresh_target(resp)
        else:
            try:
                dialog = Dialog.as_uac(self.invite, resp)
            except ValueError as exc:
                log.info("unusable 2xx: %s", exc)
                return []
        cseq = self.invite.cseq.number
        if self._ack is not None and self.dialog is not None:
            # Another fork answered too (§13.2.2.4): ACK its 2xx, then end that dialog.
            return [Transmit(dialog.ack(cseq, self.agent.via()), dialog),
                    StartRequest(dialog.new_request("BYE", self.agent.via()), dialog)]
        self.dialog = dialog
        if resp.content_type == SDP:
            self.remote_sdp = resp.body
        body = b""
        if not self.invite.body and self.remote_sdp is not None and not self.local_sdp:
            body = self.answerer(self.remote_sdp) or b""  # late offer: answer in the ACK
            self.local_sdp = body
        self._ack = dialog.ack(cseq, self.agent.via(), body, SDP if body else None)
        actions: list[InviteAction] = [DialogUp(dialog), Transmit(self._ack, dialog)]
        crossed = self._cancel_requested or self.state is InviteState.TERMINATED
        self.state = InviteState.CONFIRMED
        if crossed:  # the 2xx crossed our CANCEL (§9.1): answered anyway, so end it
            return actions + self.bye(reason="cancelled")
        self.final_status = resp.status
        self._peer_updates = _allows_update(resp)
        self._timer_from(resp, now)
        return actions + [Emit(Answered(resp.status, resp.reason, resp))]

    def cancel(self, now: float) -> list[InviteAction]:
        """CANCEL a ringing call (§9.1): it waits for a provisional response if none came
        yet, and without a final response within 64*T1 the call fails here with 487."""
        if self.role != "uac" or self.state not in RINGING or self._cancel_requested:
            return []
        self._cancel_requested = True
        self._deadlines["cancel"] = now + 64 * self.timers.t1
        return self._send_cancel() if self.provisional else []

    def _send_cancel(self) -> list[InviteAction]:
        if self._cancel_sent or self.peer is None:
            return []
        self._cancel_sent = True
        return [StartRequest(make_cancel(self.invite), self.peer)]

    @property
    def secure(self) -> bool:
        """A sips: INVITE: our Contact in it, its answers and the dialog is sips too."""
        return self.invite.uri.scheme == "sips"

    def _contact(self) -> str:
        return self.agent.contact(secure=True) if self.secure else self.agent.contact()

    # ---- UAS -----------------------------------------------------------------------------
    def ring(self, status: int = 180, now: float = 0.0) -> list[InviteAction]:
        """A provisional response; reliable (RFC 3262 §3: Require: 100rel, RSeq, sent
        again until PRACKed) when the INVITE requires 100rel. It makes the early dialog
        in which the caller may PRACK or UPDATE (RFC 3311)."""
        if self.role != "uas" or self.state is not InviteState.CALLING:
            return []
        self.state = InviteState.EARLY
        h = Headers([("Contact", self._contact()), ("Allow", ALLOW)])
        if self.reliable_1xx:
            h.add("Require", "100rel")
            h.add("RSeq", str(self._local_rseq))
        ringing = response_to(self.invite, status, to_tag=self.local_tag, headers=h)
        try:
            self.dialog = Dialog.as_uas(self.invite, self.local_tag)
        except ValueError as exc:  # no Contact: screened before; ring without a dialog
            log.info("call %s: no early dialog: %s", self.invite.call_id, exc)
            return [Respond(ringing)]
        if self.reliable_1xx:
            self._rel = ringing
            self._rel_interval = self.timers.t1
            self._deadlines["rel1xx"] = now + self.timers.t1
            self._deadlines["rel1xx-timeout"] = now + 64 * self.timers.t1
        return [DialogUp(self.dialog), Respond(ringing)]

    def _prack_received(self, prack: Request) -> list[InviteAction]:
        """RFC 3262 §3: a PRACK whose RAck names our pending reliable 1xx stops its
        retransmission and gets 200; any other PRACK gets 481."""
        rel, cseq = self._rel, self.invite.cseq
        want = f"{self._local_rseq} {cseq.number} {cseq.method}"
        got = " ".join((prack.headers.get("RAck") or "").split())
        if rel is None or got != want:
            return [Respond(response_to(prack, 481, "No such reliable provisional response"))]
        self._rel = None
        self._local_rseq += 1
        self._deadlines.pop("rel1xx", None)
        self._deadlines.pop("rel1xx-timeout", None)
        self.pracks += 1
        ok = response_to(prack, 200)
        if prack.body and prack.content_type == SDP:  # the answer to an offer in our 1xx
            self.remote_sdp = prack.body
        return [Respond(ok)]

    def answer(self, sdp: bytes | None, now: float) -> list[InviteAction]:
        """200 OK (with our SDP), re-sent until the ACK comes (§13.3.1.4)."""
        if self.role != "uas" or self.state not in RINGING:
            return []
        h = Headers([("Contact", self._contact()), ("Allow", ALLOW)])
        if self._timer_answer is not None:
            for name, value in self._timer_answer[0]:
                h.add(name, value)
        ok = response_to(self.invite, 200, to_tag=self.local_tag, headers=h,
                         body=sdp or b"", content_type=SDP if sdp else None)
        self.local_sdp = sdp or b""
        if self.dialog is None:  # else the early dialog our 1xx made is confirmed
            self.dialog = Dialog.as_uas(self.invite, self.local_tag)
        self._rel = None  # a 2xx ends our 1xx's retransmissions (RFC 3262 §3)
        self._deadlines.pop("rel1xx", None)
        self._deadlines.pop("rel1xx-timeout", None)
        self.state = InviteState.CONFIRMED
        self.final_status = 200
        self._retransmit_until_ack(ok, self.peer or self.dialog, now)
        if self._timer_answer is not None:
            self._peer_updates = _allows_update(self.invite)
            self._arm(self._timer_answer[1], "uas", now)
        return [DialogUp(self.dialog), Respond(ok)]

    def screen(self) -> list[InviteAction]:
        """Vet an incoming INVITE's session timer before the application sees it (RFC 4028
        §9): 422 with our Min-SE for too short an interval, 400 for a malformed one (the
        usage then ends), else nothing: ``answer`` will grant the interval."""
        if self.role != "uas" or self.session_timer is None \
                or self.state is not InviteState.CALLING:
            return []
        try:
            self._timer_answer = answer_headers(self.invite, self.session_timer)
        except TooSmall as exc:
            self.final_status = 422
            self._terminate()
            return [Respond(response_to(self.invite, 422, to_tag=self.local_tag,
                                        headers=Headers([("Min-SE", str(exc.min_se))])))]
        except ValueError as exc:
            self.final_status = 400
            self._terminate()
            return [Respond(bad_request(self.invite, str(exc)))]
        return []

    def reject(self, status: int = 486, reason: str | None = None) -> list[InviteAction]:
        if self.role != "uas" or self.state not in RINGING:
            return []
        self.final_status = status
        self._terminate()
        return [Respond(response_to(self.invite, status, reason, to_tag=self.local_tag))]

    def _retransmit_until_ack(self, ok: Response, to: Addr | Dialog, now: float) -> None:
        """§13.3.1.4: the UAS core re-sends a 2xx at T1, 2T1, 4T1… capped at T2, and
        gives up after 64*T1 (the transaction layer does not, §17.2.1)."""
        self._ok = (ok, to)
        self._ok_interval = self.timers.t1
        self._deadlines["2xx"] = now + self.timers.t1
        self._deadlines["no-ack"] = now + 64 * self.timers.t1

    def _ack_received(self, ack: Request) -> list[InviteAction]:
        has_sdp = bool(ack.body) and ack.content_type == SDP
        if self._ok is None and not has_sdp:
            return []  # a retransmitted ACK, or one for a 2xx we no longer resend
        self._ok = None
        self._deadlines.pop("2xx", None)
        self._deadlines.pop("no-ack", None)
        if has_sdp:  # the answer to the offer we put in a 2xx (late offer, §13.2.1)
            self.remote_sdp = ack.body
        return [Emit(Acked(ack))]

    # ---- session timers (RFC 4028) -------------------------------------------------------
    def _timer_from(self, resp: Response, now: float) -> None:
        """The interval a 2xx to our INVITE or refresh grants (§7.2); none turns it off."""
        if self.session_timer is None:
            return
        try:
            interval = granted(resp, self.session_timer)
        except ValueError as exc:  # the call is up: run without a timer, say why
            log.info("call %s: %s in a 2xx: no session timer", self.invite.call_id, exc)
            interval = None
        self._arm(interval, "uac", now)

    def _arm(self, interval: Interval | None, role: Role, now: float) -> None:
        self.interval, self.interval_role = interval, role
        self._deadlines.pop("refresh", None)
        self._deadlines.pop("expire", None)
        if interval is None or self.state is not InviteState.CONFIRMED:
            return
        refresh, expire = next_deadlines(interval, role, now)
        if refresh is not None:
            self._deadlines["refresh"] = refresh
        self._deadlines["expire"] = expire

    def _send_refresh(self) -> list[InviteAction]:
        """Our session refresh (§7.4): UPDATE without a body when the far end allows it
        (no offer/answer to get wrong), else a re-INVITE repeating our last SDP as is (the
        same o= version: no change, RFC 3264 §8)."""
        if self.state is not InviteState.CONFIRMED or self.dialog is None \
                or self.interval is None or self.session_timer is None \
                or self._refreshing is not None:
            return []
        min_se = max(self.session_timer.min_se, self._floor)
        extra = refresh_headers(max(self.interval.seconds, min_se), min_se)
        contact = self._contact()
        if self._peer_updates:
            req = self.dialog.new_request("UPDATE", self.agent.via(), contact=contact,
                                          extra=extra)
        else:
            req = self.dialog.new_request("INVITE", self.agent.via(), contact=contact,
                                          body=self.local_sdp,
                                          content_type=SDP if self.local_sdp else None,
                                          extra=extra)
        self._refreshing = req
        return [StartRequest(req, self.dialog, refresh=True)]

    def refresh_extra(self) -> list[tuple[str, str]]:
        """Headers for a re-INVITE or UPDATE the application sends (hold, codec change):
        it refreshes the session too (§7.4), so it carries the running interval with the
        refresher unchanged; without them the far end's 2xx could turn its timer off
        while ours runs on (§7.2). Pass its 2xx to ``app_refreshed``."""
        if self.session_timer is None or self.interval is None:
            return []
        refresher: Role = "uac" if self.interval.refresher == self.interval_role else "uas"
        min_se = max(self.session_timer.min_se, self._floor)
        return refresh_headers(max(self.interval.seconds, min_se), min_se, refresher)

    def app_refreshed(self, resp: Response, now: float) -> list[InviteAction]:
        """The final response to a re-INVITE or UPDATE the application sent with
        ``refresh_extra``: a 2xx sets the interval anew (§7.2), anything else changes
        nothing. Returns no actions (the driver re-arms the deadline)."""
        if self.session_timer is not None and 200 <= resp.status < 300 \
                and self.state is InviteState.CONFIRMED:
            self.refreshes += 1
            self._timer_from(resp, now)
        return []

    def refreshed(self, resp: Response, now: float) -> list[InviteAction]:
        """A response to our session refresh (a ``LocalFailure`` 408 when it timed out).

        2xx: ACK a re-INVITE's, take the new interval (§7.2). 422: once more with its
        Min-SE. 405/501 to UPDATE: a re-INVITE instead. 491: again in 2.1–4 s (RFC 3261
        §14.1). 408, 481 or no answer: the session is gone, BYE (§10, RFC 3261 §12.2.1.2).
        Anything else: the session stays as it was until it expires.
        """
        req, code = self._refreshing, resp.status
        if code < 200:
            return []
        if req is None or resp.cseq.number != req.cseq.number:
            ack = self._refresh_ack  # a retransmitted 2xx of the last refresh: ACK it again
            if 200 <= code < 300 and ack is not None and self.dialog is not None \
                    and resp.cseq.number == ack.cseq.number and resp.cseq.method == "INVITE":
                return [Transmit(ack, self.dialog)]
            return []
        self._refreshing = None
        actions: list[InviteAction] = []
        if code < 300:
            if req.method == "INVITE" and self.dialog is not None:
                self._refresh_ack = self.dialog.ack(req.cseq.number, self.agent.via())
                actions.append(Transmit(self._refresh_ack, self.dialog))
            if self.state is InviteState.CONFIRMED and self.dialog is not None:
                self.dialog.refresh_target(resp)
                self.refreshes += 1
                self._timer_from(resp, now)
            return actions
        if self.state is not InviteState.CONFIRMED:
            return []
        if code == 422:
            try:
                floor = min_se_of(resp) or 0
            except ValueError:
                floor = 0
            if self.interval is not None and floor > max(self.interval.seconds, self._floor):
                self._floor = floor
                self.interval = Interval(floor, self.interval.refresher)
                return self._send_refresh()
        if code in (405, 501) and req.method == "UPDATE":
            self._peer_updates = False
            return self._send_refresh()
        if code == 491:
            self._deadlines["refresh"] = now + random.uniform(2.1, 4.0)
            return []
        if code in (408, 481) or isinstance(resp, LocalFailure):
            return self.bye(reason=f"session refresh failed ({code})")
        if "expire" not in self._deadlines:  # it expired while we waited for this answer
            return self.bye(reason="session expired")
        log.info("call %s: session refresh got %s %s; the session expires unless refreshed",
                 self.invite.call_id, code, resp.reason)
        return []

    # ---- both ----------------------------------------------------------------------------
    def bye(self, reason: str | None = None) -> list[InviteAction]:
        """Hang up a confirmed call (BYE, §15.1.1); its transaction retries on its own."""
        if self.state is not InviteState.CONFIRMED or self.dialog is None:
            return []
        extra = [("Reason", f'SIP;cause=200;text="{reason}"')] if reason else None
        req = self.dialog.new_request("BYE", self.agent.via(), extra=extra)
        self._terminate()
        return [StartRequest(req, self.dialog), Emit(Ended("local", reason=reason))]
