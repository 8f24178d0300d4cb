"""``autocall sip check``: does a trunk answer, take our credentials and connect a call?

Four steps, each a :class:`Step` with ``pass``/``warn``/``fail``/``skip``:

1. ``dns``: the trunk's name resolves (RFC 3263 NAPTR/SRV/A; an address passes at once);
2. ``options``: an OPTIONS is answered (RFC 3261 §11);
3. ``register``: a REGISTER (digest, RFC 3261 §22) is accepted, when the trunk registers;
   the binding is removed again afterwards (``Expires: 0``, §10.2.2);
4. ``invite``: a test call to the trunk's echo number is answered;
5. ``media``: on that call, keys sent in-band come back from the echo: audio flows both
   ways (one-way audio, from a wrong public address or a firewall, is the usual fault of
   a new trunk, and SIP alone never shows it); then the call is hung up.

:func:`judge` (sans-I/O) turns what a step got back into its verdict and a sentence that
says what to do; :func:`check_trunk` is the thin asyncio driver. A step that fails
carries the SIP messages it sent and received (``trace``); a failed DNS or OPTIONS step
skips the rest (nothing else can work).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from autocall.config import Settings, TrunkSettings
from autocall.sip.invite import LocalFailure
from autocall.sip.message import URI, Response
from autocall.sip.trace import SipTrace, TraceEntry
from autocall.sip.transaction import Timers

if TYPE_CHECKING:
    from autocall.telephony.call import Call

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    outcome: str
    detail: str
    status: int | None = None
    ms: float | None = None
    trace: list[TraceEntry] = field(default_factory=list)

    def as_json(self, with_trace: bool) -> dict[str, object]:
        out: dict[str, object] = {
            "step": self.name,
            "outcome": self.outcome,
            "detail": self.detail,
            "status": self.status,
            "ms": None if self.ms is None else round(self.ms, 1),
        }
        if with_trace:
            out["trace"] = SipTrace.render(self.trace)
        return out


@dataclass(frozen=True, slots=True)
class Answer:
    """What a step got back: a final status and reason, whether it was made up locally
    (no response: timeout or transport failure), and whether we had a password."""

    status: int
    reason: str
    local: bool = False
    have_password: bool = True


def judge(step: str, answer: Answer, *, timeout: float, password_env: str) -> tuple[str, str]:
    """(outcome, detail) for ``step`` (``options``/``register``/``invite``) given ``answer``."""
    code, reason = answer.status, answer.reason
    said = f"{code} {reason}"
    if answer.local and code == 408:
        return FAIL, (
            f"no answer within {timeout:g} s: check host, port and transport, "
            "and that no firewall drops SIP"
        )
    if answer.local:
        return FAIL, f"{reason}: the trunk could not be reached (refused, closed, or TLS failed)"
    if 200 <= code < 300:
        return PASS, said
    if code in (401, 407):
        if not answer.have_password:
            return FAIL, (
                f"{said}: the trunk wants credentials and there is no password: set {password_env}"
            )
        return FAIL, (
            f"{said}: the trunk refused our credentials: check the user and "
            f"the password in {password_env}"
        )
    if code == 403:
        return FAIL, (
            f"{said}: the trunk refuses this account or our address (wrong "
            "user or password, or our IP is not on its allow-list)"
        )
    if step == "options" and code < 500:
        return WARN, f"{said}: reachable, but it does not answer OPTIONS with 200"
    if step == "invite" and code == 404:
        return FAIL, f"{said}: the trunk does not know the echo number"
    if step == "invite" and code in (486, 600, 603):
        return FAIL, f"{said}: the echo number is busy or declined"
    return FAIL, said


ECHO_KEYS = "159"
"""Sent in-band on the echo call: three keys, each on a different row and column."""


def judge_media(heard: str, received: int, seconds: float, local: str) -> tuple[str, str]:
    """The verdict on the echo call's audio: ``heard`` the keys detected in what came
    back, ``received`` its RTP packets, within ``seconds``; ``local`` our RTP port."""
    if received == 0:
        return FAIL, (
            f"one-way audio: no RTP came back in {seconds:g} s to our {local}; the far "
            "end cannot reach our media address (behind NAT set AUTOCALL_ADVERTISED_HOST "
            "to the public address; open the RTP ports in the firewall)"
        )
    if heard == ECHO_KEYS:
        return PASS, f"audio both ways: the echo returned our keys {ECHO_KEYS} in-band"
    got = f"heard {heard!r}" if heard else "heard no keys"
    return WARN, (
        f"audio comes back ({received} RTP packets) but not our keys {ECHO_KEYS} ({got}): "
        "the number may not be an echo, or the audio path distorts tones"
    )


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def echo_target(trunk: TrunkSettings, echo: str) -> str:
    """The echo number as a URI: as given if ``sip:``/``sips:``, else a user at the trunk."""
    if echo.split(":", 1)[0].lower() in ("sip", "sips"):
        URI.parse(echo)  # ValueError naming it
        return echo
    return str(URI("sip", echo, trunk.host, trunk.port))


async def check_trunk(
    trunk: TrunkSettings,
    settings: Settings,
    *,
    timeout: float = 5.0,
    echo: str | None = None,
    caller_id: str | None = None,
    ring_timeout: float = 15.0,
    password_env: str = "AUTOCALL_SIP_PASSWORD",
) -> list[Step]:
    """Run the steps against ``trunk``; never raises for what the trunk does."""
    from autocall.telephony.call import CallStatus, UserAgent

    steps: list[Step] = []
    ua = await UserAgent.start(
        bind_host=settings.bind_host,
        bind_port=settings.bind_port,
        transport=trunk.transport,
        advertise_host=settings.advertised_host,
        advertise_port=settings.advertised_port,
        user=trunk.user or "autocall",
        username=trunk.user,
        password=trunk.password,
        proxy=trunk.uri,
        registrar=trunk.uri,
        dns_servers=settings.dns_servers,
        tls=trunk.tls,
        timers=Timers(t1=min(0.5, timeout / 64)),
        session_timer=None,
        srtp=trunk.srtp,
        caller_id_header=trunk.caller_id_header,
    )
    trace = SipTrace(ua.loop.time())
    ua.sip.trace = trace.record
    have_password = trunk.password is not None

    def done(name: str, answer: Answer, t0: float, mark: int) -> Step:
        outcome, detail = judge(name, answer, timeout=timeout, password_env=password_env)
        return Step(
            name,
            outcome,
            detail,
            answer.status,
            (time.monotonic() - t0) * 1000,
            trace.since(mark) if outcome == FAIL else [],
        )

    def answer_of(resp: Response) -> Answer:
        return Answer(resp.status, resp.reason, isinstance(resp, LocalFailure), have_password)

    try:
        # 1. DNS
        t0 = time.monotonic()
        target = URI.parse(trunk.uri)
        try:
            await asyncio.wait_for(ua.sip.prepare(target), timeout)
        except (OSError, TimeoutError) as exc:
            why = str(exc) or f"no answer from the name servers within {timeout:g} s"
            steps.append(
                Step("dns", FAIL, f"{trunk.host}: {why}", None, (time.monotonic() - t0) * 1000)
            )
            return _skip_rest(steps, "dns")
        hops = ", ".join(f"{h}:{p}" for h, p in ua.sip.destinations(target)[:4])
        what = "an address" if _is_address(trunk.host) else "resolved"
        steps.append(
            Step(
                "dns", PASS, f"{trunk.host} is {what}: {hops}", None, (time.monotonic() - t0) * 1000
            )
        )

        # 2. OPTIONS
        t0, mark = time.monotonic(), trace.mark()
        try:
            resp = await ua.sip.options(target)
        except (OSError, ValueError) as exc:
            resp = LocalFailure(503, f"Service Unavailable ({exc})")
        step = done("options", answer_of(resp), t0, mark)
        steps.append(step)
        if step.outcome == FAIL and step.status in (408, 503) and answer_of(resp).local:
            return _skip_rest(steps, "options")

        # 3. REGISTER
        if trunk.register:
            t0, mark = time.monotonic(), trace.mark()
            try:
                resp = await ua.sip.register_once(600)
            except (OSError, ValueError) as exc:
                resp = LocalFailure(503, f"Service Unavailable ({exc})")
            step = done("register", answer_of(resp), t0, mark)
            steps.append(step)
            if step.outcome == PASS:
                # leave no binding behind (§10.2.2)
                with contextlib.suppress(OSError, ValueError, TimeoutError):
                    await asyncio.wait_for(ua.sip.register_once(0), timeout)
        else:
            steps.append(Step("register", SKIP, "the trunk does not register (register: false)"))

        # 4. INVITE
        if echo is None:
            steps.append(
                Step("invite", SKIP, "no echo number: set echo: in the trunk file or pass --echo")
            )
            steps.append(Step("media", SKIP, "no echo number to call"))
            return steps
        t0, mark = time.monotonic(), trace.mark()
        try:
            call = await ua.call(
                echo_target(trunk, echo), caller_id=caller_id, ring_timeout=ring_timeout
            )
        except (OSError, ValueError) as exc:
            steps.append(
                Step(
                    "invite",
                    FAIL,
                    f"not placed: {exc}",
                    None,
                    (time.monotonic() - t0) * 1000,
                    trace.since(mark),
                )
            )
            return _skip_rest(steps, "invite")
        status = await call.wait_answer(ring_timeout + timeout)
        if status is CallStatus.IN_PROGRESS:
            steps.append(
                done("invite", Answer(call.sip_code or 200, call.reason or "OK"), t0, mark)
            )
            steps.append(await _echo_media(call, timeout))
            await call.hangup()
            await call.wait_ended(timeout)
        else:
            if not status.final:
                await call.cancel()
                await call.wait_ended(timeout)
            code = call.sip_code or 408
            reason = call.reason or ("no answer" if code == 408 else "")
            steps.append(
                done(
                    "invite",
                    Answer(
                        code, reason, call.network_fault or call.sip_code is None, have_password
                    ),
                    t0,
                    mark,
                )
            )
            steps.append(Step("media", SKIP, "not tried: the test call was not answered"))
        return steps
    finally:
        ua.sip.trace = None
        await ua.close()


async def _echo_media(call: Call, timeout: float) -> Step:
    """Send :data:`ECHO_KEYS` in-band and listen for them (and any RTP) coming back."""
    media = call.media
    t0 = time.monotonic()
    media.inband_detection = True
    heard = ""

    async def listen() -> None:
        nonlocal heard
        async for d in media.digits():
            if d.source == "inband":
                heard += d.digit
                if len(heard) >= len(ECHO_KEYS):
                    return

    listening = asyncio.ensure_future(listen())
    try:
        await media.send_dtmf(ECHO_KEYS, method="inband")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(listening), timeout)
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
    seconds = time.monotonic() - t0
    outcome, detail = judge_media(heard, media.stats().packets_received, round(seconds, 1),
                                  f"RTP port {media.local_port}")
    return Step("media", outcome, detail, None, seconds * 1000)


def _skip_rest(steps: list[Step], after: str) -> list[Step]:
    for name in ("options", "register", "invite", "media"):
        if name not in {s.name for s in steps}:
            steps.append(Step(name, SKIP, f"not tried: {after} failed"))
    return steps
