"""The call as the dialogue and the dialer see it: outcome, audio, digits, hangup.

A ``Call`` hides SIP (``autocall.sip``) and RTP (``autocall.media``) behind the
Twilio-like status vocabulary of DESIGN.md §4, because campaigns and prompt trees care
about *outcomes* (busy, no-answer, completed…) and *events* (digits, hangup), not about
transactions and dialogs.

Usage::

    ua = await UserAgent.start(bind_host="0.0.0.0", advertise_host="203.0.113.7",
                               proxy="sip:pbx.example.com", username=..., password=...)
    call = await ua.call("sip:+15550100@pbx.example.com", caller_id="+15550199",
                         ring_timeout=30)
    if await call.wait_answer() is CallStatus.IN_PROGRESS:
        await call.play(pcm_int16)               # at call.media.rate; False if flushed
        async for event in call:                  # DigitEvent … then one HangupEvent
            ...
        await call.hangup()
    print(call.status, call.sip_code, call.reason)
    await ua.close()

Inbound: ``async for call in ua.incoming(): await call.answer()`` (or
``await call.reject(486)``), or ``UserAgent.start(..., on_call=handler)``. A Call starts
at initiated (outbound) or ringing (inbound); ``queued`` is the dialer's status before.

Being transferred: the far end may REFER us elsewhere (RFC 3515). A ``UserAgent`` refuses
that (603) unless started with ``accept_refer``, a predicate on the Refer-To URI: it dials
through our trunk, so only targets it accepts are followed (toll fraud). For an accepted
REFER we answer 202, INVITE the target (with the REFER's Referred-By), report progress and
outcome in NOTIFYs, and on success hang up the old dialog: the same ``Call`` (same media
stream, digits and events, status in-progress) goes on with the new party, and says so in
``transferred_to`` and a ``TransferredEvent``. If the target does not answer, the original
call goes on — unless the referrer already hung up, which then ends the call.

Status mapping of a final response to our INVITE: 2xx → in-progress (completed once it
ends); 486/600 → busy; 603 → busy (declined; ``sip_code`` tells them apart);
408/480 and our CANCEL on ring timeout → no-answer; our explicit ``cancel()`` → canceled;
anything else (404, 503, a transaction timeout without any response at all…) → failed.
A 2xx that crosses our CANCEL is ACKed and ended at once and keeps the cancel's outcome.
A dead trunk is not a callee who did not answer: a refused TCP connection fails the call
at once with 503, and silence (not even 100 Trying) fails it with 408 when Timer B fires,
even if the ring timeout came first; both end ``by`` local with ``network_fault`` set.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy.typing as npt

from autocall.config import Settings, TrunkSettings
from autocall.media import MediaEngine, MediaSession
from autocall.media.session import Digit
from autocall.media.srtp import SrtpKeys
from autocall.sip.auth import Credentials
from autocall.sip.callerid import IDENTITY_HEADERS, CallerIdStyle, caller_id_plan
from autocall.sip.dialog import InDialogKind
from autocall.sip.invite import (
    RINGING,
    Acked,
    Answered,
    Ended,
    Failed,
    InDialog,
    InviteState,
    Progress,
)
from autocall.sip.message import URI, Response, reason_cause
from autocall.sip.sdes import SECURE_PROFILES, Crypto, SrtpPolicy, SrtpRefused, new_key
from autocall.sip.sdp import (
    KNOWN,
    SUPPORTED,
    Negotiated,
    answer_direction,
    build_sdp,
    negotiate,
    parse_sdp,
)
from autocall.sip.session_timer import TimerPolicy
from autocall.sip.transaction import Timers
from autocall.sip.transport import TcpLimits, TlsSettings
from autocall.sip.ua import InviteSession, ReferSubscription, SessionEvent, SipUA, UAConfig
from autocall.telephony.record import CallStatus

__all__ = ["CallStatus", "Call", "UserAgent", "DigitEvent", "HangupEvent", "TransferredEvent",
           "CallEvent", "status_for"]

log = logging.getLogger(__name__)
DEFAULT_SESSION_TIMER = TimerPolicy()
CODECS = KNOWN


def status_for(code: int, *, cancel_cause: str | None = None, rang: bool = True) -> CallStatus:
    """Outcome of an unanswered call from the final SIP code (and why we cancelled, if we did).

    A 408 with no provisional response before it (``rang=False``) is our own transaction
    timeout: nobody is there, so the call failed rather than went unanswered.
    """
    if code == 408 and not rang:
        return CallStatus.FAILED
    if code == 487 and cancel_cause is not None:
        return CallStatus.NO_ANSWER if cancel_cause == "ring-timeout" else CallStatus.CANCELED
    if code in (486, 600, 603):
        return CallStatus.BUSY
    if code in (408, 480, 487):
        return CallStatus.NO_ANSWER
    return CallStatus.FAILED


DigitEvent = Digit
"""A key press of the far end, as the media reported it (source: rfc4733, inband, info)."""


@dataclass(frozen=True)
class HangupEvent:
    """The call ended: ``by`` local or remote, with the final status and SIP code.

    ``network_fault``: the far end never answered at all — a refused connection (503) or
    no response before Timer B (408), status failed, ``by`` local. A trunk or network
    problem to retry as such, not a callee who did not pick up.
    """

    by: str
    status: CallStatus
    sip_code: int | None
    reason: str | None
    network_fault: bool = False


@dataclass(frozen=True)
class TransferredEvent:
    """The far end transferred us (REFER) and ``target`` answered: the call goes on there."""

    target: str
    referred_by: str | None
    sip_code: int


CallEvent = DigitEvent | HangupEvent | TransferredEvent
AcceptRefer = Callable[[str], bool]


def _now() -> datetime:
    return datetime.now(UTC)


class Call:
    """One call, outbound or inbound. Get it from ``UserAgent.call`` or ``UserAgent.incoming``."""

    def __init__(self, ua: UserAgent, session: InviteSession, media: MediaSession,
                 direction: Literal["outbound", "inbound"], remote: str) -> None:
        self.ua = ua
        self.session = session
        self.media = media
        self.direction = direction
        self.remote = remote
        self.id = secrets.token_hex(8)
        self.status = CallStatus.INITIATED if direction == "outbound" else CallStatus.RINGING
        self.sip_code: int | None = None
        self.reason: str | None = None
        self.q850_cause: int | None = None
        """ITU-T Q.850 cause from the far end's Reason header (RFC 3326), when it sends one."""
        self.created_at = _now()
        self.ringing_at: datetime | None = None  # first 180/183 of an outbound call
        self.on_ringing: list[Callable[[], None]] = []
        """Called at ``ringing_at``, the moment the 18x arrives (status callbacks)."""
        self.answered_at: datetime | None = None
        self.ended_at: datetime | None = None
        self.ended_by: str | None = None
        self.network_fault = False
        """True when the call failed without any response from the far end (see HangupEvent)."""
        self.negotiated: Negotiated | None = None
        self.record_path: Path | None = None
        self.transfer_code: int | None = None
        self.transferred_to: str | None = None
        """Where a REFER we followed took this call (the Refer-To URI), once it answered."""
        self.referred_by: str | None = None
        self._first_call_id = session.usage.invite.call_id
        self._following: InviteSession | None = None
        self._following_version = 0
        self._old_ended: Ended | None = None
        self._cancel_cause: str | None = None
        self._media_refused: str | None = None
        self._ring_timer: asyncio.TimerHandle | None = None
        self._answered = asyncio.Event()
        self._ended = asyncio.Event()
        self._events: asyncio.Queue[CallEvent] = asyncio.Queue()
        self._sdp_version = 1
        self._session_id = secrets.randbelow(2**31)
        self._srtp_keys: dict[str, bytes] = {}  # suite -> our master key + salt (we send)
        self._notify: asyncio.Queue[str] = asyncio.Queue()
        self._attach(session)
        media.on_digit.append(self._events.put_nowait)

    def __repr__(self) -> str:
        return f"<Call {self.direction} {self.remote} {self.status} {self.sip_code}>"

    @property
    def call_id(self) -> str:
        """The first dialog's Call-ID: a transfer moves the call, it does not rename it."""
        return self._first_call_id

    def _attach(self, session: InviteSession) -> None:
        session.listener = self._on_session
        session.usage.answerer = self._answer_offer
        session.usage.offerer = self._sdp
        session.on_refer = self._on_refer

    @property
    def digits(self) -> list[DigitEvent]:
        """Every key the far end pressed, in order (a transfer keeps the media, and them)."""
        return self.media.received_digits

    @property
    def duration(self) -> float | None:
        """Billable seconds: from answer to end."""
        if self.answered_at is None:
            return None
        end = self.ended_at or _now()
        return (end - self.answered_at).total_seconds()

    # ---- waiting ------------------------------------------------------------------------
    async def wait_answer(self, timeout: float | None = None) -> CallStatus:
        """Wait until answered (in-progress) or finished unanswered; returns the status."""
        waiters = [asyncio.ensure_future(self._answered.wait()),
                   asyncio.ensure_future(self._ended.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        return self.status

    async def wait_ended(self, timeout: float | None = None) -> CallStatus:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ended.wait(), timeout)
        return self.status

    def __aiter__(self) -> AsyncIterator[CallEvent]:
        return self._iter()

    def events(self) -> AsyncIterator[CallEvent]:
        """Digits as they come, then one HangupEvent (same as ``async for ev in call``)."""
        return self._iter()

    async def _iter(self) -> AsyncIterator[CallEvent]:
        while True:
            if self._ended.is_set() and self._events.empty():
                return
            ev = await self._events.get()
            yield ev
            if isinstance(ev, HangupEvent):
                return

    async def next_event(self, timeout: float | None = None) -> CallEvent | None:
        """The next event, or None after ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self._events.get(), timeout)
        except TimeoutError:
            return None

    # ---- control ------------------------------------------------------------------------
    async def answer(self, *, record: str | Path | None = None) -> None:
        """Answer an inbound call (200 OK with our SDP)."""
        if self.direction != "inbound" or self.status is not CallStatus.RINGING:
            raise RuntimeError(f"cannot answer a call in state {self.status}")
        offer = self.session.usage.invite.body if self.session.usage.invite.content_type == \
            "application/sdp" else None
        if offer:
            answer = self._answer_offer(offer)
            if answer is None:
                await self.reject(488)
                return
            body = answer
        else:  # late offer: we offer in the 200 and get the answer in the ACK (RFC 3261 §13.2.1)
            body = self._sdp()
        if record is not None:
            self.record_path = Path(record)
        self.session.answer(body)
        self._set_answered(200, "OK")
        if self.negotiated is not None:
            self._start_media()

    def offer_problem(self) -> str | None:
        """Why the inbound INVITE's SDP offer cannot be answered (→ 488), or None; no side
        effects, so a server can refuse before it rings."""
        invite = self.session.usage.invite
        if invite.content_type != "application/sdp" or not invite.body:
            return None  # late offer: we offer in the 200
        try:
            self._negotiate(invite.body, answering=True)
        except ValueError as exc:
            return str(exc)
        return None

    async def reject(self, code: int = 486, reason: str | None = None) -> None:
        if self.direction != "inbound" or self.status is not CallStatus.RINGING:
            raise RuntimeError(f"cannot reject a call in state {self.status}")
        self.session.reject(code, reason)
        await self._finish(status_for(code) if code != 487 else CallStatus.CANCELED,
                           code, reason or Response(code).reason, by="local")

    async def play(self, pcm: npt.ArrayLike) -> bool:
        """Play int16 mono audio at ``media.rate`` (8 kHz; 16 kHz when the call negotiated
        G.722); True when all of it was sent, False if interrupted."""
        if self.status is not CallStatus.IN_PROGRESS:
            return False
        return await self.media.play(pcm)

    def flush(self) -> None:
        """Barge-in: stop what is playing now."""
        self.media.flush()

    async def send_dtmf(self, digits: str, *, method: str = "rfc4733",
                        duration_ms: int = 100, gap_ms: int = 100) -> str:
        """Send key presses as rfc4733 (default), inband tones or SIP INFO; returns the method."""
        if self.status is not CallStatus.IN_PROGRESS:
            raise RuntimeError(f"cannot send DTMF in state {self.status}")
        if method == "info":
            for d in digits:
                body = f"Signal={d}\r\nDuration={duration_ms}\r\n".encode()
                resp = await self.session.request("INFO", body=body,
                                                  content_type="application/dtmf-relay")
                if resp.status >= 300:
                    raise RuntimeError(f"INFO {d!r} refused: {resp.status} {resp.reason}")
            return "info"
        if method not in ("rfc4733", "inband"):
            raise ValueError(f"DTMF method {method!r}: use rfc4733, inband or info")
        return await self.media.send_dtmf(digits, duration_ms, gap_ms, method)  # type: ignore[arg-type]

    def record(self, path: str | Path) -> None:
        self.record_path = Path(path)
        if self.media.started:
            self.media.record(self.record_path)

    async def transfer(self, target: str, timeout: float = 30.0) -> bool:
        """Blind transfer with REFER (RFC 3515): True when the NOTIFYs report a 2xx.

        ``transfer_code`` keeps the final code (REFER's refusal, the NOTIFY sipfrag's, or
        408 when nothing final came within ``timeout``). On success we hang up: the
        transferee is now talking to ``target``.
        """
        code = await self._refer(target, timeout)
        self.transfer_code = code
        if 200 <= code < 300:
            await self.hangup()
            return True
        return False

    async def _refer(self, target: str, timeout: float) -> int:
        if self.status is not CallStatus.IN_PROGRESS:
            raise RuntimeError(f"cannot transfer a call in state {self.status}")
        uri = _target_uri(target, self.ua.sip)
        me = f"<sip:{self.ua.sip.config.user}@{self.ua.sip.domain}>"
        resp = await self.session.request(
            "REFER", extra=[("Refer-To", f"<{uri}>"), ("Referred-By", me)])
        if resp.status >= 300:
            return resp.status
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (remaining := deadline - loop.time()) > 0:
            try:
                frag = await asyncio.wait_for(self._notify.get(), remaining)
            except TimeoutError:
                break
            parts = frag.split()  # message/sipfrag: "SIP/2.0 200 OK" (RFC 3515 §2.4.5)
            if len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) >= 200:
                return int(parts[1])
        return 408

    # ---- being transferred (RFC 3515, we are the REFER's recipient) ------------------------
    def _on_refer(self, sub: ReferSubscription) -> bool:
        """Policy for a REFER in our dialog: follow it only if ``accept_refer`` says so."""
        accept = self.ua.accept_refer
        target = str(sub.target.uri)
        if accept is None or self.status is not CallStatus.IN_PROGRESS \
                or self._following is not None or sub.session is not self.session:
            return False
        try:
            if not accept(target):
                log.info("call %s: REFER to %s refused by accept_refer", self.id, target)
                return False
        except Exception:
            log.exception("call %s: accept_refer failed on %s", self.id, target)
            return False
        self._follow(sub)
        return True

    def _follow(self, sub: ReferSubscription) -> None:
        """Build the INVITE to the Refer-To target now (so a hangup meanwhile can cancel it)
        and run the rest in a task the agent owns."""
        old = self.session
        assert old.usage.dialog is not None
        local = old.usage.dialog.local_uri
        headers = [("Referred-By", sub.target.referred_by)] if sub.target.referred_by else []
        if old.usage.role == "uac":  # our call: the new leg asserts the caller ID we did
            headers += [(name, value) for name in IDENTITY_HEADERS
                        for value in old.usage.invite.headers.get_all(name)]
        outcome: asyncio.Future[Answered | Failed | Ended] = self.ua.loop.create_future()

        def listen(ev: SessionEvent) -> None:
            if isinstance(ev, Answered | Failed | Ended) and not outcome.done():
                outcome.set_result(ev)

        # The offer to the target starts the new dialog's SDP versions; the old dialog's
        # next offer must still be exactly one up from its last (RFC 3264 §8).
        version = self._sdp_version
        sdp = self._sdp()
        self._sdp_version = version
        new = self.ua.sip.invite(sub.target.uri, from_user=local.uri.user, display=local.display,
                                 headers=headers, sdp=sdp, listener=listen, send=False)
        self._following = new
        self._following_version = version
        self.ua.spawn(self._follow_refer(sub, old, new, outcome))

    async def _follow_refer(self, sub: ReferSubscription, old: InviteSession,
                            new: InviteSession,
                            outcome: asyncio.Future[Answered | Failed | Ended]) -> None:
        """INVITE the target; on a usable answer move the call there, then NOTIFY and BYE."""
        code, reason = 503, "Service Unavailable"
        ring: asyncio.TimerHandle | None = None
        old_peer: tuple[str, int] | None = None
        moved = False
        try:
            try:
                await self.ua.sip.prepare(sub.target.uri)
                dest = self.ua.sip.destination(sub.target.uri)
            except (OSError, ValueError) as exc:
                log.info("call %s: cannot route REFER target %s: %s", self.id, sub.target.uri, exc)
                return  # §8.1.3.1: a transport failure counts as 503
            if self.status.final:
                code, reason = 487, "Request Terminated"
                return
            new.send(dest)
            ring = self.ua.loop.call_later(self.ua.refer_ring_timeout, new.cancel)
            ev = await outcome
            if isinstance(ev, Ended):  # the target hung up before it answered
                code, reason = 487, "Request Terminated"
                return
            code, reason = ev.status, ev.reason or "Request Terminated"
            if isinstance(ev, Failed):
                return
            neg = None
            with contextlib.suppress(ValueError):
                neg = self._negotiate(new.usage.remote_sdp or b"", answering=False)
            if neg is None or self.status.final:
                new.bye(reason="no common codec" if neg is None else "call ended")
                code, reason = (488, "Not Acceptable Here") if neg is None else \
                    (487, "Request Terminated")
                return
            old_peer = self.media.remote_addr
            self._move_to(new, neg, sub)
            moved = True
        finally:
            if ring is not None:
                ring.cancel()
            if not moved:
                self._following = None
                if new.usage.state in RINGING:
                    new.cancel()
                elif new.usage.state is InviteState.CONFIRMED:
                    new.bye(reason="transfer abandoned")
            sub.notify(code, reason)  # §2.4.5: the INVITE's final status line
            if not moved and self._old_ended is not None and not self.status.final:
                # The referrer hung up after its REFER and the target did not take the call.
                await self._finish(CallStatus.COMPLETED, self.sip_code, self.reason, by="remote")
        notified = sub._last
        if notified is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(notified), 10)
        old.bye(reason="transferred")  # a no-op if the referrer already hung up
        # Until its BYE the old party still sends RTP, and our reopened latch may have taken
        # one of its packets; once it has stopped, point the stream at the new party again.
        for delay in (0.2, 1.0):
            self.ua.loop.call_later(delay, self._unlatch_from, old_peer, new)

    def _unlatch_from(self, old_peer: tuple[str, int] | None, new: InviteSession) -> None:
        neg = self.negotiated
        if self.session is new and not self.status.final and neg is not None \
                and old_peer is not None and old_peer != neg.remote \
                and self.media.remote_addr == old_peer and not self.media.closed:
            log.info("call %s: RTP latched to the old party %s:%s, reopening", self.id, *old_peer)
            self.media.update(remote_addr=neg.remote)

    def _move_to(self, new: InviteSession, neg: Negotiated, sub: ReferSubscription) -> None:
        """The transfer target answered: same Call and media stream, new dialog and peer."""
        old = self.session
        old.listener = lambda ev: None  # its BYE no longer ends the call
        old.usage.answerer = lambda offer: None  # nor may a late re-INVITE there move our media
        old.on_refer = None
        self.session = new
        self._attach(new)
        self._following = None
        self._old_ended = None
        self._sdp_version = max(self._sdp_version, self._following_version + 1)
        self.negotiated = neg
        if self.media.started:
            self._apply_update(neg)
        else:
            self._start_media()
        self.transferred_to = str(sub.target.uri)
        self.referred_by = sub.target.referred_by
        log.info("call %s: transferred to %s", self.id, self.transferred_to)
        self._events.put_nowait(TransferredEvent(self.transferred_to, sub.target.referred_by,
                                                 new.usage.final_status or 200))
        if new.usage.state is InviteState.TERMINATED:  # the target hung up before we took over
            self.ua.loop.create_task(self._finish(CallStatus.COMPLETED, self.sip_code,
                                                  self.reason, by="remote"))

    async def hold(self) -> int:
        """Put the far end on hold (re-INVITE with a=sendonly, RFC 3264 §8.4)."""
        return await self._reinvite("sendonly", hold=True)

    async def unhold(self) -> int:
        return await self._reinvite("sendrecv", hold=False)

    async def change_codec(self, codec: str) -> int:
        """Re-INVITE offering only ``codec`` (PCMU, PCMA or G722); the RTP stream goes on
        (at the rate it started with: the media resamples if the new codec's differs)."""
        if codec.upper() not in self.ua.codecs:
            raise ValueError(f"codec {codec!r}: this agent allows {', '.join(self.ua.codecs)}")
        return await self._reinvite("sendrecv", hold=False, codecs=[codec.upper()])

    async def hangup(self) -> None:
        """End the call: BYE if answered, CANCEL if still ringing (status canceled)."""
        if self.status.final:
            return
        if self.status is CallStatus.IN_PROGRESS:
            self.session.bye()
            return  # the session's "ended" event finishes the call
        if self.direction == "outbound":
            await self.cancel()
        else:
            await self.reject(603)

    async def cancel(self) -> None:
        """CANCEL a call that has not been answered yet (status canceled)."""
        self._cancel("canceled")
        await self.wait_ended(40)

    # ---- internals ----------------------------------------------------------------------
    def _cancel(self, cause: str) -> None:
        if self.status.final or self.status is CallStatus.IN_PROGRESS:
            return
        self._cancel_cause = cause
        self.session.cancel()
        if cause == "ring-timeout" and not self.session.usage.heard_back:
            # Nothing at all came back: not a phone left ringing but a dead trunk or
            # network. Timer B (64*T1 from the INVITE, §17.1.1.2) ends it as failed/408.
            return
        if not self.session.usage.provisional:
            # No provisional yet: we may not send CANCEL (§9.1) and need not wait for it.
            self.ua.loop.create_task(self._finish(
                status_for(487, cancel_cause=cause), 487,
                "ring timeout" if cause == "ring-timeout" else "cancelled", by="local"))

    def _sdp(self, direction: str = "sendrecv", codecs: list[str] | None = None,
             answer: Negotiated | None = None) -> bytes:
        """Our SDP: an offer, or with ``answer`` the answer to that negotiated offer (its
        profile, and our key for the crypto line we accepted, under its tag)."""
        names = codecs or list(self.ua.codecs)
        host = self.ua.media_advertise or self.ua.sip.advertised[0]
        if answer is None:
            profile, crypto = self.ua.srtp.offer_profile, self._our_crypto()
        else:
            profile = "RTP/SAVP" if answer.profile in SECURE_PROFILES else "RTP/AVP"
            theirs = answer.crypto
            crypto = [] if theirs is None else \
                [Crypto(theirs.tag, theirs.suite, self._srtp_key(theirs.suite))]
        sdp = build_sdp(host, self.media.local_port, session_id=self._session_id,
                        version=self._sdp_version, codecs=[(CODECS[n], n) for n in names],
                        direction=direction, profile=profile, crypto=crypto)
        self._sdp_version += 1
        return sdp

    def _srtp_key(self, suite: str) -> bytes:
        """Our key for ``suite``: made once per call, the same in every offer and answer
        (RFC 4568 §7.1.4 lets a re-offer keep it), so a re-INVITE does not re-key."""
        key = self._srtp_keys.get(suite)
        if key is None:
            key = self._srtp_keys[suite] = new_key(suite)
        return key

    def _our_crypto(self) -> list[Crypto]:
        """The a=crypto lines of every offer of ours (tag n: the policy's n-th suite)."""
        return self.ua.srtp.offer({s: self._srtp_key(s) for s in self.ua.srtp.suites}) \
            if self.ua.srtp.on else []

    def _negotiate(self, sdp: bytes, *, answering: bool) -> Negotiated:
        """Codec, DTMF and SRTP from the far end's offer (``answering``) or its answer to
        our offer; ValueError says why it cannot be used (→ 488)."""
        return negotiate(parse_sdp(sdp), self.ua.codecs, srtp=self.ua.srtp,
                         ours=None if answering else self._our_crypto())

    def _srtp_for(self, neg: Negotiated) -> SrtpKeys | None:
        if neg.crypto is None:
            return None
        suite = neg.crypto.suite
        return SrtpKeys(suite, tx_key=self._srtp_key(suite), rx_key=neg.crypto.key)

    def _answer_offer(self, offer: bytes) -> bytes | None:
        """SDP answer for an offer (initial, late-offer 200, re-INVITE/UPDATE), or None → 488."""
        try:
            neg = self._negotiate(offer, answering=True)
        except ValueError as exc:
            log.info("call %s: unusable SDP offer: %s", self.id, exc)
            return None
        first = self.negotiated is None
        self.negotiated = neg
        if not first and self.media.started:
            self._apply_update(neg)
        elif first and self.status is CallStatus.IN_PROGRESS:
            self._start_media()
        direction = answer_direction(neg.direction)
        return self._sdp(direction, [neg.codec], answer=neg)

    def _apply_update(self, neg: Negotiated) -> None:
        hold = neg.direction in ("sendonly", "inactive") or neg.remote[0] == "0.0.0.0"
        self.media.update(remote_addr=None if hold else neg.remote, payload_type=neg.pt,
                          dtmf_payload_type=_dynamic(neg.dtmf_pt), hold=hold,
                          srtp=self._srtp_for(neg))

    async def _reinvite(self, direction: str, *, hold: bool,
                        codecs: list[str] | None = None) -> int:
        if self.status is not CallStatus.IN_PROGRESS:
            raise RuntimeError(f"cannot re-INVITE a call in state {self.status}")
        resp = await self.session.request("INVITE", body=self._sdp(direction, codecs),
                                          content_type="application/sdp")
        if 200 <= resp.status < 300 and resp.body:
            try:
                neg = self._negotiate(resp.body, answering=False)
            except ValueError:
                return resp.status
            self.negotiated = neg
            self.media.update(remote_addr=neg.remote, payload_type=neg.pt,
                              dtmf_payload_type=_dynamic(neg.dtmf_pt), hold=hold,
                              srtp=self._srtp_for(neg))
        return resp.status

    def _start_media(self) -> None:
        if self.media.started or self.media.closed or self.negotiated is None:
            return
        neg = self.negotiated
        self.media.start(neg.remote, neg.pt, _dynamic(neg.dtmf_pt), srtp=self._srtp_for(neg))
        if neg.direction in ("sendonly", "inactive"):
            self.media.update(hold=True)
        if self.record_path is not None:
            self.media.record(self.record_path)

    def _set_answered(self, code: int, reason: str) -> None:
        if self._ring_timer is not None:
            self._ring_timer.cancel()
        self.status = CallStatus.IN_PROGRESS
        self.sip_code, self.reason = code, reason
        self.answered_at = _now()
        self._answered.set()

    def _on_session(self, ev: SessionEvent) -> None:
        if isinstance(ev, Progress):
            if self.status is CallStatus.INITIATED and ev.status in (180, 183):
                self.status = CallStatus.RINGING
                self.ringing_at = _now()
                for notify in self.on_ringing:
                    notify()
            self.sip_code, self.reason = ev.status, ev.reason
            early = self.session.usage.remote_sdp
            if early and self.negotiated is None and self.direction == "outbound" \
                    and self.session.usage.invite.body:
                # Early media (RFC 3960): the answer came in a 183; hear it before the 200
                with contextlib.suppress(ValueError):
                    self.negotiated = negotiate(parse_sdp(early), self.ua.codecs)
                    self._start_media()
        elif isinstance(ev, Answered):
            if self.status.final:
                return
            if self.negotiated is None and self.session.usage.remote_sdp:
                try:
                    self.negotiated = self._negotiate(self.session.usage.remote_sdp,
                                                      answering=False)
                except ValueError as exc:
                    # Answered, but nothing can be said on it: hang up and record the call
                    # as failed with 488 (RFC 3261 §21.4.26), never as a completed call.
                    log.info("call %s: answer SDP unusable (%s): hanging up", self.id, exc)
                    self._media_refused = f"Not Acceptable Here ({exc})"[:200]
                    self.session.bye(reason="SRTP refused" if isinstance(exc, SrtpRefused)
                                     else "no common codec")
                    return
            self._set_answered(ev.status, ev.reason or "OK")
            self._start_media()
        elif isinstance(ev, Acked):
            late = self.session.usage.remote_sdp if self.negotiated is None else None
            sdp = ev.message.body or late
            if sdp:
                with contextlib.suppress(ValueError):
                    neg = self._negotiate(sdp, answering=False)
                    self.negotiated = neg
                    if self.media.started:
                        self._apply_update(neg)
            self._start_media()
        elif isinstance(ev, Failed):
            code = ev.status
            if ev.message is not None:
                self.q850_cause = reason_cause(ev.message)
            if self.direction == "inbound" and code == 487:
                status = CallStatus.CANCELED if self.status is CallStatus.RINGING \
                    else CallStatus.NO_ANSWER
            else:
                status = status_for(code, cancel_cause=self._cancel_cause,
                                    rang=self.session.usage.provisional)
            if ev.network_fault:
                status = CallStatus.FAILED
                self.network_fault = True
            self.ua.loop.create_task(self._finish(status, code, ev.reason,
                                                  by=ev.by or "remote"))
        elif isinstance(ev, Ended):
            if ev.message is not None:
                self.q850_cause = reason_cause(ev.message)
            if self._media_refused is not None:
                self.ua.loop.create_task(self._finish(CallStatus.FAILED, 488,
                                                      self._media_refused, by="local"))
                return
            if self._following is not None and ev.by == "remote" \
                    and self.status is CallStatus.IN_PROGRESS:
                # The referrer may hang up once we accepted its REFER: the transfer decides.
                self._old_ended = ev
                return
            if self.status is CallStatus.IN_PROGRESS:
                if ev.reason is not None:  # the record says why the call ended, not "OK"
                    self.reason = ev.reason
                self.ua.loop.create_task(self._finish(CallStatus.COMPLETED, self.sip_code,
                                                      self.reason, by=ev.by))
            elif not self.status.final:
                # A 2xx crossed our CANCEL (§9.1): the session ACKed and ended it at once.
                status = status_for(487, cancel_cause=self._cancel_cause or "canceled")
                self.ua.loop.create_task(self._finish(status, 200, "answered after CANCEL",
                                                      by="local"))
        elif isinstance(ev, InDialog):
            de = ev.dialog_event
            if de.kind == InDialogKind.INFO_DTMF and de.digit is not None:
                self.media.report_digit(de.digit, "info", float(de.duration_ms or 0))
            elif de.kind == InDialogKind.NOTIFY:
                with contextlib.suppress(UnicodeDecodeError):
                    self._notify.put_nowait(de.request.body.decode())

    async def _finish(self, status: CallStatus, code: int | None, reason: str | None,
                      by: str) -> None:
        if self.status.final:
            return
        if self._ring_timer is not None:
            self._ring_timer.cancel()
        following = self._following
        if following is not None:  # a transfer target still ringing: it reports 487
            if following.usage.state in RINGING:
                following.cancel()
            elif following.usage.state is InviteState.CONFIRMED:
                following.bye(reason="call ended")
        self.status = status
        if self.answered_at is None or status is not CallStatus.COMPLETED:
            self.sip_code, self.reason = code, reason
        self.ended_at = _now()
        self.ended_by = by
        self._ended.set()
        self.ua._calls.discard(self)
        await self.media.close()
        # Media closing may have queued digits; the hangup event comes last.
        self._events.put_nowait(HangupEvent(by, status, self.sip_code, self.reason,
                                            self.network_fault))


def _dynamic(pt: int | None) -> int | None:
    return pt if pt is not None and 96 <= pt <= 127 else None


def _target_uri(target: str, sip: SipUA) -> URI:
    """``sip:…``/``sips:``/``tel:`` as given; a bare number or user goes to the proxy's domain."""
    if ":" in target.split("@")[0] and target.split(":")[0].lower() in ("sip", "sips", "tel"):
        return URI.parse(target)
    if "@" in target:
        return URI.parse("sip:" + target)
    host = URI.parse(sip.config.proxy).host if sip.config.proxy else sip.domain
    return URI("sip", target, host)


OnCall = Callable[[Call], Awaitable[None] | None]


class UserAgent:
    """Process-wide phone: one SIP endpoint plus one media clock for all its calls."""

    def __init__(self, sip: SipUA, engine: MediaEngine, media_host: str,
                 media_advertise: str | None) -> None:
        self.sip = sip
        self.engine = engine
        self.media_host = media_host
        self.media_advertise = media_advertise
        self._calls: set[Call] = set()
        self._incoming: asyncio.Queue[Call] = asyncio.Queue()
        self.on_call: OnCall | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.accept_refer: AcceptRefer | None = None
        """Which Refer-To URIs a call of ours may be transferred to (None: no REFER)."""
        self.refer_ring_timeout = 30.0
        """Seconds a transfer target may ring before we CANCEL and report 487."""
        self.srtp = SrtpPolicy()
        """SRTP policy of every call (RFC 3711 with SDES keys, `autocall.sip.sdes`)."""
        self.caller_id_header = CallerIdStyle.FROM
        """The header our calls carry their caller ID in (`autocall.sip.callerid`)."""
        self.codecs: tuple[str, ...] = SUPPORTED
        """Audio codecs every call allows, in offer order (``AUTOCALL_CODECS``)."""

    @classmethod
    async def start(cls, *, bind_host: str = "127.0.0.1", bind_port: int = 0,
                    transport: str = "udp", advertise_host: str | None = None,
                    advertise_port: int | None = None, user: str = "autocall",
                    domain: str | None = None, display_name: str | None = None,
                    proxy: str | None = None, username: str | None = None,
                    password: str | None = None, register: bool = False,
                    registrar: str | None = None, register_expires: int = 600,
                    media_host: str | None = None, timers: Timers | None = None,
                    on_call: OnCall | None = None, accept_refer: AcceptRefer | None = None,
                    refer_ring_timeout: float = 30.0,
                    tcp_limits: TcpLimits | None = None,
                    dns_servers: tuple[tuple[str, int], ...] = (),
                    tls: TlsSettings | None = None,
                    session_timer: TimerPolicy | None = DEFAULT_SESSION_TIMER,
                    srtp: SrtpPolicy | None = None,
                    keepalive: float = 0.0,
                    caller_id_header: CallerIdStyle = CallerIdStyle.FROM,
                    codecs: tuple[str, ...] = SUPPORTED) -> UserAgent:
        """Bind the SIP transport and start the media clock (and REGISTER if asked).

        ``accept_refer(uri)`` decides which transfer targets a far end's REFER may send our
        calls to; without it every REFER is declined (603), because following one dials
        through our trunk at the referrer's choice. ``session_timer`` is the RFC 4028
        policy (None: no session timers). ``srtp`` the SRTP policy (default off); SDES
        keys need ``transport="tls"`` unless the policy allows clear keys (ValueError).
        ``caller_id_header`` is where ``call(caller_id=…)`` puts the caller ID: the From
        user, P-Asserted-Identity or Remote-Party-ID (`autocall.sip.callerid`).
        ``codecs``: the audio codecs allowed, in the order we offer them (PCMU, PCMA,
        G722; default G.711 only).
        """
        unknown = [c for c in codecs if c not in CODECS]
        if unknown or not codecs:
            raise ValueError(f"codecs {codecs!r}: name one or more of {', '.join(CODECS)}")
        srtp = srtp or SrtpPolicy()
        srtp.check_transport(transport)
        creds = Credentials(username or user, password) if password is not None else None
        config = UAConfig(bind_host=bind_host, bind_port=bind_port, transport=transport,
                          advertise_host=advertise_host, advertise_port=advertise_port,
                          user=user, domain=domain, display_name=display_name, proxy=proxy,
                          credentials=creds, register=register, registrar=registrar,
                          register_expires=register_expires, timers=timers or Timers(),
                          tcp_limits=tcp_limits or TcpLimits(), dns_servers=dns_servers,
                          tls=tls or TlsSettings(), session_timer=session_timer,
                          keepalive=keepalive)
        self = cls.__new__(cls)
        sip = await SipUA.start(config, on_invite=self._on_invite)
        cls.__init__(self, sip, MediaEngine(), media_host or bind_host, advertise_host)
        self.on_call = on_call
        self.accept_refer = accept_refer
        self.refer_ring_timeout = refer_ring_timeout
        self.srtp = srtp
        self.caller_id_header = caller_id_header
        self.codecs = tuple(codecs)
        return self

    @classmethod
    async def from_settings(cls, settings: Settings, trunk: TrunkSettings | None = None, *,
                            proxy: str | None = None, on_call: OnCall | None = None
                            ) -> UserAgent:
        """The agent on ``trunk`` (default: the settings' own): the one mapping from
        settings that ``call``, ``serve`` and campaigns share, so they cannot drift."""
        trunk = trunk or settings.trunk
        return await cls.start(
            bind_host=settings.bind_host, bind_port=settings.bind_port, transport=trunk.transport,
            advertise_host=settings.advertised_host, advertise_port=settings.advertised_port,
            user=trunk.user or "autocall",
            username=trunk.user, password=trunk.password, register=trunk.register,
            registrar=trunk.uri if trunk.register else None, proxy=proxy, on_call=on_call,
            dns_servers=settings.dns_servers, tls=trunk.tls,
            session_timer=TimerPolicy(settings.session_expires, settings.min_se)
            if settings.session_expires else None, srtp=trunk.srtp,
            keepalive=trunk.keepalive, caller_id_header=trunk.caller_id_header,
            codecs=trunk.codecs)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    @property
    def calls(self) -> list[Call]:
        return list(self._calls)

    async def wait_registered(self, timeout: float = 10.0) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.sip.registered.wait(), timeout)
        return self.sip.registered.is_set()

    async def call(self, target: str, *, caller_id: str | None = None,
                   display_name: str | None = None,
                   headers: dict[str, str] | list[tuple[str, str]] | None = None,
                   ring_timeout: float | None = 30.0, record: str | Path | None = None,
                   late_offer: bool = False) -> Call:
        """Place a call; returns at once with status initiated (see ``Call.wait_answer``).

        ``caller_id`` goes where ``caller_id_header`` says (From user, P-Asserted-Identity
        or Remote-Party-ID); one that cannot be a SIP URI user is a ValueError.
        """
        uri = _target_uri(target, self.sip)
        config = self.sip.config
        # The identity's domain: the trunk's (configured, registrar or proxy), else the host
        # the call goes to (a campaign dials sip:NUMBER@trunk with no proxy), never ours.
        named = config.domain or config.registrar or config.proxy
        plan = caller_id_plan(self.caller_id_header, caller_id, display_name,
                              account_user=config.user,
                              domain=self.sip.domain if named or not uri.host else uri.host)
        await self.sip.prepare(uri)
        media = await MediaSession.open(self.engine, host=self.media_host, port=0)
        extra = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        try:
            session = self.sip.invite(uri, from_user=plan.from_user, display=plan.display,
                                      headers=plan.headers + extra, sdp=None, send=False)
        except (ValueError, OSError):
            await media.close()
            raise
        call = Call(self, session, media, "outbound", str(uri))
        if record is not None:
            call.record_path = Path(record)
        if not late_offer:
            session.set_offer(call._sdp())
        # The INVITE was built before the Call existed so the SDP could name the media port;
        # now send it.
        session.send(*self.sip.destinations(uri))
        self._calls.add(call)
        if ring_timeout is not None:
            call._ring_timer = self.loop.call_later(ring_timeout, call._cancel, "ring-timeout")
        return call

    def incoming(self) -> AsyncIterator[Call]:
        """Inbound calls (ringing) in arrival order; answer or reject each."""
        return self._iter_incoming()

    async def _iter_incoming(self) -> AsyncIterator[Call]:
        while True:
            yield await self._incoming.get()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """A task the agent owns: kept referenced until done, cancelled by ``close``."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_invite(self, session: InviteSession) -> None:
        self.spawn(self._accept_invite(session))

    async def _accept_invite(self, session: InviteSession) -> None:
        media = await MediaSession.open(self.engine, host=self.media_host, port=0)
        remote = str(session.usage.invite.from_.uri)
        call = Call(self, session, media, "inbound", remote)
        self._calls.add(call)
        if self.on_call is not None:
            # The handler decides first: a caller it refuses (403, 503…) must not hear a
            # 180 Ringing before the refusal (issue 12). Still ringing afterwards: ring.
            result = self.on_call(call)
            if inspect.isawaitable(result):
                await result
            if call.status is CallStatus.RINGING:
                session.ring()
        else:
            session.ring()
            self._incoming.put_nowait(call)

    async def options(self, target: str) -> tuple[int, str, float]:
        """OPTIONS ping: (status, reason, seconds) — checks a trunk is there."""
        uri = _target_uri(target, self.sip)
        t0 = self.loop.time()
        resp = await self.sip.options(uri)
        return resp.status, resp.reason, self.loop.time() - t0

    async def close(self) -> None:
        for call in list(self._calls):
            with contextlib.suppress(Exception):
                if call.status is CallStatus.IN_PROGRESS:
                    call.session.bye()
                elif not call.status.final and call.direction == "outbound":
                    call.session.cancel()
                await call._finish(CallStatus.COMPLETED if call.status is CallStatus.IN_PROGRESS
                                   else CallStatus.CANCELED, call.sip_code, "agent closed",
                                   by="local")
        for task in list(self._tasks):
            task.cancel()
        await self.sip.close()
        self.engine.close()
