"""The SIP user agent: asyncio driver over the sans-I/O message/transaction/dialog cores.

``SipUA`` owns one transport, runs every transaction's timers on the event loop
(``loop.call_at``: no per-call tasks or sleeps), answers what needs no decision
(100 Trying, OPTIONS, CANCEL, 481, 400 for malformed requests), keeps an optional
registration fresh, and exposes INVITE sessions (``InviteSession``) that the telephony
layer turns into calls. Call-IDs, tags and branches come from ``secrets`` (§8.1.1.4,
§19.3: they must be unguessable so nobody can inject into a dialog).

Being transferred (RFC 3515, we are the REFER's recipient): ``parse_refer`` checks the
REFER (exactly one Refer-To, a sip:/sips:/tel: URI, no Replaces, INVITE only) and the
session asks its ``on_refer`` policy; without one, or when it says no, the REFER gets 603
(§2.4.2: following any target would let whoever reaches the dialog dial through our trunk).
An accepted REFER gets 202 and a ``ReferSubscription`` that sends the NOTIFYs (§2.4.4);
the telephony layer places the INVITE and reports its outcome through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autocall.sip.auth import Credentials, DigestClient
from autocall.sip.dialog import ALLOW, Dialog, DialogEvent, response_to
from autocall.sip.lograte import LogRate
from autocall.sip.message import (
    URI,
    Address,
    Headers,
    Request,
    Response,
    canonical_name,
    split_list,
)
from autocall.sip.sdp import parse_sdp
from autocall.sip.transaction import (
    ClientTransaction,
    Deliver,
    Send,
    ServerTransaction,
    State,
    TimedOut,
    Timers,
    TransportFailed,
    make_cancel,
    server_key,
)
from autocall.sip.transport import Received, TcpLimits, TcpTransport, Transport, UdpTransport

__all__ = ["UAConfig", "SipUA", "InviteSession", "SessionEvent", "LocalFailure", "new_tag",
           "new_branch",
           "ReferTarget", "ReferRefused", "ReferSubscription", "parse_refer", "sipfrag"]

log = logging.getLogger(__name__)
Addr = tuple[str, int]
SDP = "application/sdp"


def new_tag() -> str:
    return secrets.token_hex(8)


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(10)  # §8.1.1.7 magic cookie


def new_call_id() -> str:
    return secrets.token_hex(16)


@dataclass
class UAConfig:
    """Where we listen, what we advertise, whom we talk to and how we authenticate."""

    bind_host: str = "127.0.0.1"
    bind_port: int = 0
    transport: str = "udp"
    advertise_host: str | None = None
    advertise_port: int | None = None
    user: str = "autocall"
    domain: str | None = None
    display_name: str | None = None
    proxy: str | None = None
    """Outbound proxy or trunk (``sip:host:port``): every out-of-dialog request goes there."""
    credentials: Credentials | None = field(default=None, repr=False)
    register: bool = False
    registrar: str | None = None
    register_expires: int = 600
    timers: Timers = field(default_factory=Timers)
    user_agent: str = "autocall/0.1"
    tcp_limits: TcpLimits = field(default_factory=TcpLimits)
    """Slow-loris limits of the TCP transport (timeouts, message size, connections)."""


@dataclass(frozen=True)
class SessionEvent:
    """progress | answered | failed | ended | dialog (with ``dialog_event``) | ack.

    ``network_fault`` (on failed): nothing at all came back from the far end, the
    connection was refused (503, §8.1.3.1) or Timer B fired (408): a trunk or network
    problem, not a callee who did not pick up.
    """

    kind: str
    status: int | None = None
    reason: str | None = None
    message: Request | Response | None = None
    dialog_event: DialogEvent | None = None
    by: str | None = None
    network_fault: bool = False


class LocalFailure(Response):
    """A final response we made up because the request could not reach anyone (§8.1.3.1:
    a transport error counts as 503); it never crossed the network."""


_DNS: dict[str, tuple[str, float]] = {}
DNS_TTL = 60.0


def _known(host: str) -> str | None:
    """``host`` itself when it is an address, else its unexpired cached address."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    hit = _DNS.get(host)
    if hit is not None and hit[1] > time.monotonic():
        return hit[0]
    return None


def _resolve(host: str) -> str:
    """IPv4 address of ``host``; names come from the cache ``resolve_async`` fills.

    A miss falls back to a blocking lookup (cached too): DNS on the event loop would stall
    every call's media, so ``UserAgent.call`` resolves ahead with ``resolve_async``.
    """
    known = _known(host)
    if known is not None:
        return known
    addr = socket.gethostbyname(host)
    _DNS[host] = (addr, time.monotonic() + DNS_TTL)
    return addr


async def resolve_async(host: str) -> str:
    """Resolve ``host`` off the event loop and cache it for ``_resolve`` (A record only:
    RFC 3263 SRV/NAPTR selection is left to the deployment's DNS)."""
    known = _known(host)
    if known is not None:
        return known
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, family=socket.AF_INET,
                                                          type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"cannot resolve {host!r}")
    addr = str(infos[0][4][0])
    _DNS[host] = (addr, time.monotonic() + DNS_TTL)
    return addr


def warning(reason: str) -> str:
    """A ``Warning`` value saying why we refused (RFC 3261 §20.43: 399 = miscellaneous;
    the warn-text is a quoted string, so quotes, backslashes and controls are replaced)."""
    text = re.sub(r'[^\x20-\x7e]|["\\]', "?", reason)[:120]
    return f'399 autocall "{text}"'


def bad_request(request: Request, reason: str) -> Response:
    """400 for a request we parsed but cannot accept, the reason also in a Warning."""
    safe = re.sub(r"[^\x20-\x7e]", "?", reason)[:120]
    return response_to(request, 400, safe, to_tag=new_tag(),
                       headers=Headers([("Warning", warning(reason))]))


def salvage_400(raw: bytes, reason: str) -> bytes | None:
    """A 400 for a request we could not parse, built from whatever header lines survive."""
    try:
        text = raw.decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - decoding with "replace" does not raise; belt and braces
        return None
    head = text.split("\r\n\r\n", 1)[0].split("\n")
    if not head or head[0].startswith("SIP/2.0") or not re.match(r"^[A-Z]+ \S+ SIP/2\.0", head[0]):
        return None
    if head[0].startswith("ACK "):
        return None  # §17.2.1: never answer an ACK
    wanted = {"Via": [], "From": [], "To": [], "Call-ID": [], "CSeq": []}  # type: dict[str, list[str]]
    for line in head[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            continue
        try:
            key = canonical_name(name)
        except Exception:  # noqa: BLE001
            continue
        if key in wanted:
            wanted[key].append(re.sub(r"[\x00-\x1f\x7f]", "", value.strip()))
    if not all(wanted.values()):
        return None
    safe = re.sub(r"[^\x20-\x7e]", "?", reason)[:120]
    lines = [f"SIP/2.0 400 {safe}"]
    lines += [f"{k}: {v}" for k, vs in wanted.items() for v in vs]
    lines.append(f"Warning: {warning(reason)}")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _short(text: str) -> str:
    """One printable line of at most 200 characters (what a stranger sent may be anything)."""
    return re.sub(r"[^\x20-\x7e]", "?", text)[:200]


def invite_problem(invite: Request) -> str | None:
    """Why a new INVITE cannot start a dialog (→ 400), or None.

    Exactly one Contact with a SIP URI (RFC 3261 §8.1.1.8) and, with an SDP body, one we can
    parse whose connection address is an IP address (a NUL byte or a host name there would
    otherwise reach the media sender on every 20 ms frame).
    """
    try:
        values = [v for raw in invite.headers.get_all("Contact") for v in split_list(raw)]
    except ValueError as exc:  # an unterminated quote or the like
        return f"bad Contact: {exc}"
    if len(values) != 1:
        return "INVITE needs exactly one Contact" if values else "Missing Contact"
    if values[0].strip() == "*":
        return "Contact * is only for REGISTER"
    try:
        uri = Address.parse(values[0]).uri
    except ValueError as exc:
        return f"bad Contact: {exc}"
    if uri.scheme not in ("sip", "sips") or not uri.host:
        return "Contact must be a sip: or sips: URI with a host"
    if invite.body and invite.content_type == SDP:
        try:
            parse_sdp(invite.body)
        except ValueError as exc:
            return f"bad SDP: {exc}"
    return None


# ---- being transferred (RFC 3515) --------------------------------------------------------
REFER_SCHEMES = ("sip", "sips", "tel")
SIPFRAG = "message/sipfrag;version=2.0"
REFER_EXPIRES = 60
"""Seconds our implicit subscription lasts while active (RFC 6665 §4.2.2 wants a value)."""


class ReferRefused(ValueError):
    """A REFER we answer with ``status`` and ``reason`` instead of following it."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class ReferTarget:
    """What an acceptable REFER asks for: INVITE ``uri`` (``Referred-By`` to copy, if any)."""

    uri: URI
    referred_by: str | None = None


def parse_refer(request: Request) -> ReferTarget:
    """The target of a REFER, or ``ReferRefused`` saying why we will not follow it.

    400 when the request is broken: zero or several Refer-To values (RFC 3515 §2.4.1) or a
    URI we cannot parse. 603 when it is well formed but asks for what we do not do: another
    scheme than sip/sips/tel, a Replaces header (attended transfer, RFC 3891) or a method
    other than INVITE (§2.4.2 lets the recipient decline). Other headers embedded in the URI
    (RFC 3261 §19.1.5) are dropped: a remote party does not get to write our INVITE.
    """
    try:
        values = [v for raw in request.headers.get_all("Refer-To") for v in split_list(raw)]
    except ValueError:  # an unterminated quote or the like
        raise ReferRefused(400, "Bad Refer-To") from None
    if len(values) != 1:
        raise ReferRefused(400, "Exactly one Refer-To required" if values else "Missing Refer-To")
    value = values[0].strip()
    inner = value[value.find("<") + 1:value.find(">")] if "<" in value and ">" in value \
        else value.split(";")[0]
    scheme = inner.split(":", 1)[0].strip().lower() if ":" in inner else ""
    if scheme and scheme not in REFER_SCHEMES and re.match(r"^[a-z][a-z0-9+.\-]*$", scheme):
        raise ReferRefused(603, f"Refer-To scheme {scheme[:20]}: not followed")
    try:
        uri = Address.parse(value).uri
    except ValueError:
        raise ReferRefused(400, "Bad Refer-To") from None
    if uri.headers is not None:
        names = {h.split("=", 1)[0].strip().lower() for h in uri.headers.split("&")}
        if "replaces" in names:
            raise ReferRefused(603, "Replaces (attended transfer) not supported")
    method = (uri.params.get("method") or "INVITE").upper()
    if method != "INVITE":
        raise ReferRefused(603, f"Refer-To method {method[:20]}: only INVITE is followed")
    params = {k: v for k, v in uri.params.items() if k != "method"}
    referred_by: str | None = None
    by = request.headers.get("Referred-By")
    if by:
        with contextlib.suppress(ValueError):
            Address.parse(by)  # RFC 3892 §3: copied as is, but only if it is an address
            referred_by = by.strip()
    return ReferTarget(uri.copy(params=params, headers=None), referred_by)


def sipfrag(status: int, reason: str | None = None) -> bytes:
    """A message/sipfrag body of one status line (RFC 3420), as RFC 3515 §2.4.5 NOTIFYs carry."""
    text = reason if reason is not None else Response(status).reason
    text = re.sub(r"[^\x20-\x7e]", "?", text)[:120]
    return f"SIP/2.0 {status} {text}\r\n".encode()


class SipUA:
    """One SIP endpoint. Create with ``await SipUA.start(config, on_invite=…)``."""

    def __init__(self, config: UAConfig) -> None:
        self.config = config
        self.transport: Transport | None = None
        self.on_invite: Callable[[InviteSession], None] | None = None
        self._client: dict[tuple[str, str], tuple[ClientTransaction, Callable[[Any], None]]] = {}
        self._client_dest: dict[tuple[str, str], Addr] = {}
        self._server: dict[tuple[str, str, str], tuple[ServerTransaction, Addr]] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._dialogs: dict[tuple[str, str, str], InviteSession] = {}
        self._pending_invites: dict[tuple[str, str, str], InviteSession] = {}
        self._auth = DigestClient(config.credentials) if config.credentials else None
        self._reg_task: asyncio.Task[None] | None = None
        self.registered = asyncio.Event()
        self.register_error: str | None = None
        self._reg_call_id: str | None = None  # one Call-ID for all REGISTERs (§10.2.4)
        self._reg_cseq = 0
        self._reg_tag: str | None = None
        self._closed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.lograte = LogRate(log)
        """Lines about what strangers send are rate-limited (one line each, no traceback)."""

    # ---- lifecycle -------------------------------------------------------------------
    @classmethod
    async def start(cls, config: UAConfig,
                    on_invite: Callable[[InviteSession], None] | None = None) -> SipUA:
        self = cls(config)
        self.on_invite = on_invite
        bind = (config.bind_host, config.bind_port)
        advertise = (config.advertise_host, config.advertise_port)
        if config.transport.lower() == "tcp":
            self.transport = await TcpTransport.create(self._received, bind, advertise,
                                                       config.tcp_limits)
        else:
            self.transport = await UdpTransport.create(self._received, bind, advertise)
        if config.register:
            self._reg_task = asyncio.get_running_loop().create_task(self._register_loop())
        self.transport.on_unreachable = self._unreachable
        return self

    def _unreachable(self, dest: Addr, why: str) -> None:
        """End every client transaction bound for ``dest`` at once (§17.1.4)."""
        for key, (tx, deliver) in list(self._client.items()):
            if self._client_dest.get(key) == dest:
                self._run(tx, tx.transport_error(why), dest, deliver)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for session in list(self._dialogs.values()):
            if session.state == "confirmed":
                session.bye()
        if self._reg_task is not None:
            self._reg_task.cancel()
            if self.registered.is_set():
                with contextlib.suppress(TimeoutError, OSError, ValueError):
                    await asyncio.wait_for(self._register_once(expires=0), 2)
        await asyncio.sleep(0.05)  # let final BYEs leave
        for task in list(self._tasks):
            task.cancel()
        for handle in self._timers.values():
            handle.cancel()
        if self.transport is not None:
            self.transport.close()

    # ---- addressing ------------------------------------------------------------------
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    @property
    def advertised(self) -> Addr:
        assert self.transport is not None
        return self.transport.advertise

    @property
    def domain(self) -> str:
        """Our From/AOR domain: configured, else the trunk's (registrars expect that)."""
        if self.config.domain:
            return self.config.domain
        for uri in (self.config.registrar, self.config.proxy):
            if uri:
                with contextlib.suppress(ValueError):
                    return URI.parse(uri).host
        return self.advertised[0]

    def via(self) -> str:
        host, port = self.advertised
        name = self.transport.name if self.transport else "UDP"
        return f"SIP/2.0/{name} {host}:{port};branch={new_branch()};rport"

    def contact(self, user: str | None = None) -> str:
        host, port = self.advertised
        tp = ";transport=tcp" if self.transport is not None and self.transport.reliable else ""
        return f"<sip:{user or self.config.user}@{host}:{port}{tp}>"

    def local_address(self, user: str | None = None, display: str | None = None) -> Address:
        uri = URI("sip", user or self.config.user, self.domain)
        return Address(uri, display if display is not None else self.config.display_name,
                       {"tag": new_tag()})

    async def prepare(self, uri: URI) -> None:
        """Resolve where a request to ``uri`` goes before building it (DNS off the loop)."""
        if self.config.proxy:
            await resolve_async(URI.parse(self.config.proxy).host)
        elif uri.scheme != "tel":
            await resolve_async(uri.host)

    def destination(self, uri: URI) -> Addr:
        """Out-of-dialog requests go to the proxy/trunk if configured, else to the URI."""
        if self.config.proxy:
            host, port = URI.parse(self.config.proxy).hostport
        else:
            if uri.scheme == "tel":
                raise ValueError("a tel: URI needs a proxy/trunk to route it")
            host, port = uri.hostport
        return _resolve(host), port

    def base_request(self, method: str, uri: URI, from_: Address, to: Address,
                     call_id: str, cseq: int) -> Request:
        h = Headers()
        h.add("Via", self.via())
        h.add("Max-Forwards", "70")
        h.add("From", str(from_))
        h.add("To", str(to))
        h.add("Call-ID", call_id)
        h.add("CSeq", f"{cseq} {method}")
        h.add("User-Agent", self.config.user_agent)
        return Request(method, uri, h)

    # ---- transaction plumbing ------------------------------------------------------------
    def _now(self) -> float:
        return self.loop.time()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        """A task the agent owns: kept referenced, cancelled by ``close``."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _send(self, msg: Request | Response, dest: Addr) -> None:
        if self.transport is not None:
            self.transport.send(msg, dest)

    def _run(self, tx: ClientTransaction | ServerTransaction, actions: list[Any], dest: Addr,
             deliver: Callable[[Any], None] | None) -> None:
        for action in actions:
            if isinstance(action, Send):
                self._send(action.message, dest)
            elif deliver is not None and isinstance(action, (Deliver, TimedOut, TransportFailed)):
                try:
                    deliver(action)
                except Exception:  # a TU bug must not take the whole agent down
                    log.exception("transaction user failed on %s", action)
        self._schedule(tx, dest, deliver)

    def _schedule(self, tx: ClientTransaction | ServerTransaction, dest: Addr,
                  deliver: Callable[[Any], None] | None) -> None:
        old = self._timers.pop(id(tx), None)
        if old is not None:
            old.cancel()
        if tx.terminated:
            if isinstance(tx, ClientTransaction):
                self._client.pop(tx.key, None)
                self._client_dest.pop(tx.key, None)
            else:
                self._server.pop(tx.key, None)
            return
        deadline = tx.deadline
        if deadline is not None and not self._closed:
            def fire() -> None:
                self._timers.pop(id(tx), None)
                self._run(tx, tx.on_timer(self._now()), dest, deliver)
            self._timers[id(tx)] = self.loop.call_at(deadline, fire)

    def send_request(self, request: Request, dest: Addr,
                     on_result: Callable[[Response | None], None]) -> ClientTransaction:
        """Start a client transaction; ``on_result`` gets each response, or None on timeout."""
        reliable = bool(self.transport and self.transport.reliable)
        tx = ClientTransaction(request, reliable=reliable, timers=self.config.timers)

        def deliver(action: Any) -> None:
            if isinstance(action, TransportFailed):
                on_result(LocalFailure(503, f"Service Unavailable ({action.reason})",
                                       response_to(request, 503).headers))
                return
            msg = action.message if isinstance(action, Deliver) else None
            on_result(msg if isinstance(msg, Response) else None)

        self._client[tx.key] = (tx, deliver)
        self._client_dest[tx.key] = dest
        self._run(tx, tx.start(self._now()), dest, deliver)
        return tx

    async def request(self, request: Request, dest: Addr | None = None) -> Response:
        """Send a non-INVITE request, answer digest challenges, return the final response.

        A transaction timeout comes back as a local 408 (§8.1.3.1).
        """
        dest = dest or self.destination(request.uri)
        for _attempt in range(3):
            fut: asyncio.Future[Response] = self.loop.create_future()

            def on_result(resp: Response | None, fut: asyncio.Future[Response] = fut) -> None:
                if fut.done():
                    return
                if resp is None:
                    fut.set_result(Response(408, "Request Timeout (no response)"))
                elif resp.status >= 200:
                    fut.set_result(resp)

            self.send_request(request, dest, on_result)
            resp = await fut
            retry = self._authorized_retry(request, resp)
            if retry is None:
                return resp
            request = retry
        return resp

    def _authorized_retry(self, request: Request, resp: Response) -> Request | None:
        """The same request with credentials for a 401/407, or None (§22.2, §22.3)."""
        if resp.status not in (401, 407) or self._auth is None:
            return None
        header = DigestClient.challenge_headers(resp.status)
        challenges = resp.headers.get_all(header)
        if not challenges:
            return None
        answer_name = "Proxy-Authorization" if resp.status == 407 else "Authorization"
        stale = any("stale=true" in c.lower().replace(" ", "") for c in challenges)
        if request.headers.get(answer_name) and not stale:
            return None  # we already answered this challenger: the credentials are wrong
        retry = Request(request.method, request.uri, request.headers.copy(), request.body)
        retry.headers.remove(answer_name)  # a registrar's and a proxy's answers can coexist
        for value in challenges:
            hdr = self._auth.authorize(resp.status, value, request.method, str(request.uri))
            if hdr is not None:
                retry.headers.add(*hdr)
                break
        else:
            return None
        cseq = request.cseq
        retry.headers.set("CSeq", f"{cseq.number + 1} {cseq.method}")
        vias = retry.headers.get_all("Via")
        retry.headers.remove("Via")
        retry.headers.add("Via", self.via(), first=True)
        for v in vias[1:]:
            retry.headers.add("Via", v)
        return retry

    # ---- receiving -------------------------------------------------------------------
    def _received(self, rx: Received) -> None:
        try:
            self._dispatch(rx)
        except Exception as exc:  # one bad message must never stop the agent (nor flood the log)
            self.lograte.log(logging.WARNING, "sip-failure",
                             "failed to handle a message from %s:%s: %s: %s", rx.source[0],
                             rx.source[1], type(exc).__name__, _short(str(exc)))

    def _dispatch(self, rx: Received) -> None:
        msg = rx.message
        if msg is None:
            self.lograte.log(logging.WARNING, "sip-malformed", "malformed message from %s:%s: %s",
                             rx.source[0], rx.source[1], _short(rx.error or "?"))
            reply = salvage_400(rx.raw, rx.error or "Bad Request")
            if reply is not None:
                rx.transport.send(_Raw(reply), rx.source)  # type: ignore[arg-type]
            return
        try:
            msg.validate()
        except ValueError as exc:
            self.lograte.log(logging.WARNING, "sip-malformed", "invalid %r from %s:%s: %s", msg,
                             rx.source[0], rx.source[1], _short(str(exc)))
            if isinstance(msg, Request) and msg.method != "ACK":
                reply = salvage_400(bytes(msg), str(exc))
                if reply is not None:
                    rx.transport.send(_Raw(reply), rx.source)  # type: ignore[arg-type]
            return
        if isinstance(msg, Response):
            entry = self._client.get((msg.top_via.branch or "", msg.cseq.method))
            if entry is None:
                return  # stray response (§18.1.2): drop
            tx, deliver = entry
            self._run(tx, tx.receive(msg, self._now()), rx.source, deliver)
            return
        self._on_request(msg, rx.source)

    def _on_request(self, req: Request, source: Addr) -> None:
        key = server_key(req)
        existing = self._server.get(key)
        if existing is not None:
            tx, dest = existing
            self._run(tx, tx.receive(req, self._now()), dest, None)
            return
        if req.method == "ACK":
            session = self._dialogs.get((req.call_id, req.to.tag or "", req.from_.tag or ""))
            if session is not None and session.dialog is not None \
                    and session.dialog.vet(req, source, check_port=self._check_port) is None:
                session._ack_received(req)
            return
        if req.method == "INVITE" and not req.to.tag and self.on_invite is not None \
                and not self._closed:
            problem = invite_problem(req)
            if problem is not None:
                # Answered statelessly (RFC 3261 §8.2.7: no 100, no retransmission, a
                # retransmitted INVITE just gets another 400): a flood of broken INVITEs
                # that never ACK must not keep a transaction each for 64*T1.
                self.lograte.log(logging.WARNING, "sip-malformed", "invalid %r from %s:%s: %s",
                                 req, source[0], source[1], _short(problem))
                response = bad_request(req, problem)
                response.headers.add("Server", self.config.user_agent)
                self._send(response, source)
                return
        reliable = bool(self.transport and self.transport.reliable)
        tx = ServerTransaction(req, reliable=reliable, timers=self.config.timers)
        self._server[tx.key] = (tx, source)
        trying = response_to(req, 100) if req.method == "INVITE" else None
        self._run(tx, tx.start(self._now(), trying), source, None)
        try:
            self._handle_new_request(tx, req, source)
        except ValueError as exc:
            # A header we only read now (Contact, SDP, Refer-To…) is broken: the request
            # still gets its final answer, never just the 100 Trying (issue 12 item 4).
            self.lograte.log(logging.WARNING, "sip-malformed", "invalid %r from %s:%s: %s", req,
                             source[0], source[1], _short(str(exc)))
            if tx.last_response is None or tx.last_response.status < 200:
                self.respond(tx, bad_request(req, str(exc)))

    def respond(self, tx: ServerTransaction, response: Response) -> None:
        entry = self._server.get(tx.key)
        dest = entry[1] if entry else (tx.request.top_via.host, tx.request.top_via.port or 5060)
        if "User-Agent" not in response.headers and "Server" not in response.headers:
            response.headers.add("Server", self.config.user_agent)
        self._run(tx, tx.respond(response, self._now()), dest, None)

    def _handle_new_request(self, tx: ServerTransaction, req: Request, source: Addr) -> None:
        method = req.method
        if method == "CANCEL":
            inv_key = (tx.key[0], tx.key[1], "INVITE")
            entry = self._server.get(inv_key)
            session = self._pending_invites.get(inv_key)
            if entry is None:
                self.respond(tx, response_to(req, 481))
                return
            if session is None:  # already answered: the CANCEL changes nothing (§9.2)
                self.respond(tx, response_to(req, 200, to_tag=new_tag()))
                return
            self.respond(tx, response_to(req, 200, to_tag=session.local_tag))
            session._cancelled()
            return
        required = [o.strip() for o in req.headers.get_all("Require")]
        if required:  # we implement no extensions (no 100rel, no timer): §8.2.2.3
            h = Headers([("Unsupported", ", ".join(required))])
            self.respond(tx, response_to(req, 420, "Bad Extension", to_tag=new_tag(), headers=h))
            return
        to_tag = req.to.tag
        if to_tag:
            session = self._dialogs.get((req.call_id, to_tag, req.from_.tag or ""))
            if session is None or session.dialog is None:
                self.respond(tx, response_to(req, 481))
                return
            refusal = session.dialog.vet(req, source, check_port=self._check_port)
            if refusal is not None:
                self.respond(tx, response_to(req, refusal[0], refusal[1]))
                return
            session._in_dialog(tx, session.dialog.accept(req))
            return
        if method == "INVITE":
            if self.on_invite is None or self._closed:
                self.respond(tx, response_to(req, 480, to_tag=new_tag()))
                return
            session = InviteSession(self, "uas", req)
            session.server_tx = tx
            session.source = source
            self._pending_invites[tx.key] = session
            self.on_invite(session)
            return
        if method == "OPTIONS":
            h = Headers([("Allow", ALLOW), ("Accept", SDP)])
            self.respond(tx, response_to(req, 200, to_tag=new_tag(), headers=h))
            return
        if method in ("BYE", "INFO", "UPDATE", "NOTIFY", "PRACK"):
            self.respond(tx, response_to(req, 481, to_tag=new_tag()))
            return
        h = Headers([("Allow", ALLOW)])
        self.respond(tx, response_to(req, 405, to_tag=new_tag(), headers=h))

    @property
    def _check_port(self) -> bool:
        """In-dialog sources are checked by (IP, port) over UDP; over TCP by IP only: the
        port of an inbound connection is ephemeral (RFC 3261 §18.2.1) and TCP sources
        cannot be spoofed."""
        return not (self.transport is not None and self.transport.reliable)

    def _trust(self, dialog: Dialog, source: Addr | None = None) -> None:
        """Also accept in-dialog requests from our proxy and from where the INVITE came."""
        if self.config.proxy:
            with contextlib.suppress(OSError, ValueError):
                host, port = URI.parse(self.config.proxy).hostport
                dialog.peers.add((_resolve(host), port))
        if source is not None:
            dialog.peers.add(source)

    # ---- outgoing requests ----------------------------------------------------------------
    def invite(self, target: URI, *, from_user: str | None = None, display: str | None = None,
               headers: list[tuple[str, str]] | None = None, sdp: bytes | None = None,
               listener: Callable[[SessionEvent], None] | None = None,
               send: bool = True) -> InviteSession:
        """Start an outgoing INVITE session (``sdp=None`` means a late offer).

        ``send=False`` builds the session without sending, so the caller can put its media
        port into the SDP first and then call ``session._send_invite(ua.destination(uri))``.
        """
        from_ = self.local_address(from_user, display)
        to = Address(target.copy())
        req = self.base_request("INVITE", target, from_, to, new_call_id(), 1)
        req.headers.add("Contact", self.contact(from_user))
        req.headers.add("Allow", ALLOW)
        for name, value in headers or []:
            req.headers.add(name, value)
        if sdp is not None:
            req.headers.add("Content-Type", SDP)
            req.body = sdp
        session = InviteSession(self, "uac", req)
        if listener is not None:
            session.listener = listener
        if send:
            session._send_invite(self.destination(target))
        return session

    async def options(self, target: URI) -> Response:
        await self.prepare(target)
        req = self.base_request("OPTIONS", target, self.local_address(), Address(target.copy()),
                                new_call_id(), 1)
        req.headers.add("Accept", SDP)
        return await self.request(req, self.destination(target))

    # ---- registration ---------------------------------------------------------------------
    def _registrar_uri(self) -> URI:
        if self.config.registrar:
            return URI.parse(self.config.registrar)
        if self.config.proxy:
            return URI("sip", None, URI.parse(self.config.proxy).host,
                       URI.parse(self.config.proxy).port)
        raise ValueError("register=True needs a registrar or proxy URI")

    async def _register_once(self, expires: int) -> int:
        """Send one REGISTER; return the granted expiry (0 when unregistering)."""
        uri = self._registrar_uri()
        self._reg_call_id = self._reg_call_id or new_call_id()
        self._reg_tag = self._reg_tag or new_tag()
        self._reg_cseq += 1
        aor = Address(URI("sip", self.config.user, self.config.domain or uri.host))
        from_ = Address(aor.uri.copy(), None, {"tag": self._reg_tag})
        req = self.base_request("REGISTER", uri, from_, aor, self._reg_call_id, self._reg_cseq)
        req.headers.add("Contact", f"{self.contact()};expires={expires}")
        req.headers.add("Expires", str(expires))
        dest = (await resolve_async(uri.hostport[0]), uri.hostport[1])
        resp = await self.request(req, dest)
        self._reg_cseq = resp.cseq.number if resp.status < 300 else self._reg_cseq + 1
        if resp.status >= 300:
            raise ValueError(f"REGISTER failed: {resp.status} {resp.reason}")
        granted = expires
        for value in resp.headers.get_all("Contact"):
            try:
                addr = Address.parse(value)
            except ValueError:
                continue
            if addr.uri.host == self.advertised[0] and addr.params.get("expires"):
                granted = int(addr.params["expires"] or expires)
        if (resp.headers.get("Expires") or "").strip().isdigit() and granted == expires:
            granted = int(resp.headers.get("Expires") or expires)
        return granted

    async def _register_loop(self) -> None:
        delay = 1.0
        while True:
            try:
                granted = await self._register_once(self.config.register_expires)
                self.register_error = None
                self.registered.set()
                delay = 1.0
                # Refresh well before expiry (RFC 3261 §10.2.4 leaves the margin to us).
                await asyncio.sleep(max(1.0, granted * 0.5))
            except (ValueError, OSError) as exc:
                self.register_error = str(exc)
                self.registered.clear()
                log.warning("registration: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)


class _Raw:
    """Pre-serialised bytes that a transport can send like a message."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __bytes__(self) -> bytes:
        return self.data


class ReferSubscription:
    """The implicit subscription an accepted REFER creates (RFC 3515 §2.4.4).

    ``notify`` sends one NOTIFY (Event: refer;id=<REFER CSeq>, §2.4.6; a message/sipfrag
    status line, §2.4.5) after the previous one was answered, so the referrer sees them in
    order; the first final status (≥ 200) ends the subscription with
    ``terminated;reason=noresource`` (§2.4.7) and later calls send nothing. NOTIFYs still
    go out after the INVITE usage ended with a BYE: the subscription is its own dialog
    usage (RFC 5057 §5).
    """

    def __init__(self, session: InviteSession, request: Request, target: ReferTarget) -> None:
        self.session = session
        self.request = request
        self.target = target
        self.event_id = request.cseq.number
        self.terminated = False
        self.final_status: int | None = None
        self._last: asyncio.Task[int] | None = None

    @property
    def uri(self) -> URI:
        return self.target.uri

    @property
    def referred_by(self) -> str | None:
        return self.target.referred_by

    def notify(self, status: int, reason: str | None = None) -> asyncio.Task[int]:
        """Report ``status`` to the referrer; the task gives the NOTIFY's response code
        (0 when nothing was sent: the subscription had already ended or the agent closed)."""
        previous = self._last
        final = status >= 200
        skip = self.terminated
        if final and not skip:
            self.terminated = True
            self.final_status = status
        task = self.session.ua._spawn(self._send_after(previous, status, reason, final, skip))
        self._last = task
        return task

    async def _send_after(self, previous: asyncio.Task[int] | None, status: int,
                          reason: str | None, final: bool, skip: bool) -> int:
        if previous is not None:
            with contextlib.suppress(Exception):
                await previous
        session, ua = self.session, self.session.ua
        if skip or session.dialog is None or ua._closed:
            return 0
        state = "terminated;reason=noresource" if final else f"active;expires={REFER_EXPIRES}"
        req = session.dialog.new_request(
            "NOTIFY", ua.via(), contact=ua.contact(), body=sipfrag(status, reason),
            content_type=SIPFRAG,
            extra=[("Event", f"refer;id={self.event_id}"), ("Subscription-State", state)])
        try:
            resp = await ua.request(req, session._hop())
        except (OSError, ValueError) as exc:
            log.info("NOTIFY for REFER %s not sent: %s", self.event_id, exc)
            return 0
        if resp.status == 481:  # the referrer forgot the subscription: nothing more to say
            self.terminated = True
        return resp.status


class InviteSession:
    """One INVITE dialog usage, outgoing (``uac``) or incoming (``uas``).

    State: calling → early → confirmed → terminated. Events go to ``listener``; the
    telephony Call installs ``answerer`` (SDP answer to an offer) and ``offerer`` (our
    SDP offer, for an offerless INVITE or re-INVITE).
    """

    def __init__(self, ua: SipUA, role: str, invite: Request) -> None:
        self.ua = ua
        self.role = role
        self.invite = invite
        self.state = "calling"
        self.dialog: Dialog | None = None
        self.remote_sdp: bytes | None = None
        self.listener: Callable[[SessionEvent], None] = lambda ev: None
        self.answerer: Callable[[bytes], bytes | None] = lambda offer: None
        self.offerer: Callable[[], bytes] = lambda: b""
        self.final_status: int | None = None
        self.final_reason: str | None = None
        self.server_tx: ServerTransaction | None = None
        self.invite_tx: ClientTransaction | None = None
        self.local_tag: str = (invite.from_.tag or new_tag()) if role == "uac" else new_tag()
        self._dest: Addr = ("", 0)
        self._provisional = False
        self._cancel_requested = False
        self._cancel_sent = False
        self._cancel_handle: asyncio.TimerHandle | None = None
        self._ack: Request | None = None
        self._ok: Response | None = None
        self._ok_timer: asyncio.TimerHandle | None = None
        self._ok_interval = 0.0
        self._ok_started = 0.0
        self._ok_tx: ServerTransaction | None = None
        self._auth_tries = 0
        self.source: Addr | None = None
        self.on_refer: Callable[[ReferSubscription], bool] | None = None
        """Policy for a REFER in this dialog: True to follow it (then place the INVITE and
        report through the subscription). None refuses every REFER with 603."""
        self.refer: ReferSubscription | None = None

    @property
    def call_id(self) -> str:
        return self.invite.call_id

    def _hop(self) -> Addr:
        """The dialog's next hop, resolved (DNS is I/O, so it lives here, not in dialog.py)."""
        assert self.dialog is not None
        host, port = self.dialog.next_hop()
        return _resolve(host), port

    def _emit(self, event: SessionEvent) -> None:
        try:
            self.listener(event)
        except Exception:
            log.exception("session listener failed on %s", event.kind)

    def _terminate(self) -> None:
        self.state = "terminated"
        if self.dialog is not None:
            self.ua._dialogs.pop(self.dialog.id, None)
        if self.server_tx is not None:
            self.ua._pending_invites.pop(self.server_tx.key, None)
        for handle in (self._ok_timer, self._cancel_handle):
            if handle is not None:
                handle.cancel()

    # ---- UAC ----------------------------------------------------------------------------
    def _send_invite(self, dest: Addr) -> None:
        self._dest = dest
        self.invite_tx = self.ua.send_request(self.invite, dest, self._on_invite_response)

    @property
    def heard_back(self) -> bool:
        """Whether anything at all (even 100 Trying) answered our INVITE."""
        return self.invite_tx is not None and self.invite_tx.state is not State.CALLING

    def _on_invite_response(self, resp: Response | None) -> None:
        if resp is None:  # Timer B (§17.1.1.2): not even a 100 Trying came back
            if self.state in ("calling", "early"):
                self._fail(408, "Request Timeout (no response)", by="local", network=True)
            return
        if isinstance(resp, LocalFailure):
            self._fail(resp.status, resp.reason, resp, by="local", network=True)
            return
        code = resp.status
        if code < 200:
            if code > 100:
                self._provisional = True
                if self.state == "calling":
                    self.state = "early"
                self._emit(SessionEvent("progress", code, resp.reason, resp))
            elif self._cancel_requested:
                self._provisional = True
            if self._cancel_requested:
                self._send_cancel()
            return
        if code < 300:
            self._on_2xx(resp)
            return
        if code in (401, 407) and self._auth_tries < 2 and not self._cancel_requested:
            retry = self.ua._authorized_retry(self.invite, resp)
            if retry is not None:
                self._auth_tries += 1
                self.invite = retry
                self._send_invite(self._dest)
                return
        self._fail(code, resp.reason, resp)

    def _fail(self, code: int, reason: str, resp: Response | None = None, *,
              by: str | None = None, network: bool = False) -> None:
        if self.state == "terminated":
            return
        self.final_status, self.final_reason = code, reason
        self._terminate()
        self._emit(SessionEvent("failed", code, reason, resp, by=by, network_fault=network))

    def _on_2xx(self, resp: Response) -> None:
        if self.dialog is not None and self.dialog.matches(resp):
            if self._ack is not None:  # a retransmitted 2xx: ACK again (§13.2.2.4)
                self.ua._send(self._ack, self._hop())
            return
        try:
            dialog = Dialog.as_uac(self.invite, resp)
        except ValueError as exc:
            log.info("unusable 2xx: %s", exc)
            return
        if self.dialog is not None:
            # A second fork answered (§13.2.2.4): ACK it, then end that extra dialog.
            hop = dialog.next_hop()
            dest = (_resolve(hop[0]), hop[1])
            self.ua._send(dialog.ack(self.invite.cseq.number, self.ua.via()), dest)
            bye = dialog.new_request("BYE", self.ua.via())
            self.ua.send_request(bye, dest, lambda resp: None)
            return
        self.dialog = dialog
        self.ua._dialogs[dialog.id] = self
        self.ua._trust(dialog, self._dest)
        body = b""
        if resp.content_type == SDP:
            self.remote_sdp = resp.body
        if not self.invite.body and self.remote_sdp is not None:
            body = self.answerer(self.remote_sdp) or b""  # late offer: answer in ACK
        self._ack = dialog.ack(self.invite.cseq.number, self.ua.via(), body,
                               SDP if body else None)
        self.ua._send(self._ack, self._hop())
        if self._cancel_requested or self.state == "terminated":
            # 200 crossed our CANCEL (§9.1): the call was answered anyway; end it.
            self.state = "confirmed"
            self.bye(reason="cancelled")
            return
        self.state = "confirmed"
        self.final_status, self.final_reason = resp.status, resp.reason
        self._emit(SessionEvent("answered", resp.status, resp.reason, resp))

    def cancel(self) -> None:
        """CANCEL a ringing call (§9.1); waits for a provisional response if none came yet."""
        if self.role != "uac" or self.state not in ("calling", "early"):
            return
        if self._cancel_requested:
            return
        self._cancel_requested = True
        if self._provisional:
            self._send_cancel()
        # §9.1: if no final response within 64*T1 after CANCEL, give up on the transaction.
        self._cancel_handle = self.ua.loop.call_later(
            64 * self.ua.config.timers.t1,
            lambda: self._fail(487, "Request Terminated (local)", by="local"))

    def _send_cancel(self) -> None:
        if self._cancel_sent:
            return
        self._cancel_sent = True
        cancel = make_cancel(self.invite)
        self.ua.send_request(cancel, self._dest, lambda resp: None)

    # ---- UAS ----------------------------------------------------------------------------
    def ring(self, status: int = 180) -> None:
        if self.role == "uas" and self.state == "calling" and self.server_tx is not None:
            self.state = "early"
            h = Headers([("Contact", self.ua.contact())])
            self.ua.respond(self.server_tx, response_to(self.invite, status,
                                                        to_tag=self.local_tag, headers=h))

    def answer(self, sdp: bytes | None) -> None:
        """Send 200 OK (with our SDP) and retransmit it until the ACK (§13.3.1.4)."""
        if self.role != "uas" or self.state not in ("calling", "early") or self.server_tx is None:
            return
        h = Headers([("Contact", self.ua.contact()), ("Allow", ALLOW)])
        ok = response_to(self.invite, 200, to_tag=self.local_tag, headers=h,
                         body=sdp or b"", content_type=SDP if sdp else None)
        self.dialog = Dialog.as_uas(self.invite, self.local_tag)
        self.ua._dialogs[self.dialog.id] = self
        self.ua._trust(self.dialog, self.source)
        self.ua._pending_invites.pop(self.server_tx.key, None)
        self.state = "confirmed"
        self.final_status, self.final_reason = 200, "OK"
        self.ua.respond(self.server_tx, ok)
        self._retransmit_until_ack(ok, self.server_tx)

    def _retransmit_until_ack(self, ok: Response, tx: ServerTransaction) -> None:
        """The UAS core re-sends a 2xx to INVITE until its ACK (§13.3.1.4): T1, 2T1… T2."""
        if self._ok_timer is not None:
            self._ok_timer.cancel()
        self._ok = ok
        self._ok_tx = tx
        self._ok_interval = self.ua.config.timers.t1
        self._ok_started = self.ua.loop.time()
        self._ok_timer = self.ua.loop.call_later(self._ok_interval, self._retransmit_ok)

    def _retransmit_ok(self) -> None:
        if self._ok is None or self._ok_tx is None or self.state != "confirmed":
            return
        t = self.ua.config.timers
        if self.ua.loop.time() - self._ok_started >= 64 * t.t1:
            self._ok = None
            self.bye(reason="no ACK")  # §13.3.1.4: no ACK → end the session
            return
        entry = self.ua._server.get(self._ok_tx.key)
        dest = entry[1] if entry else self._hop()
        self.ua._send(self._ok, dest)
        self._ok_interval = min(2 * self._ok_interval, t.t2)
        self._ok_timer = self.ua.loop.call_later(self._ok_interval, self._retransmit_ok)

    def _ack_received(self, ack: Request) -> None:
        has_sdp = bool(ack.body) and ack.content_type == SDP
        if self._ok is not None or has_sdp:
            self._ok = None
            if self._ok_timer is not None:
                self._ok_timer.cancel()
            if has_sdp:  # the answer to the offer we put in a 2xx (late offer, §13.2.1)
                self.remote_sdp = ack.body
            self._emit(SessionEvent("ack", message=ack))

    def reject(self, status: int = 486, reason: str | None = None) -> None:
        if self.role != "uas" or self.state not in ("calling", "early") or self.server_tx is None:
            return
        self.ua.respond(self.server_tx, response_to(self.invite, status, reason,
                                                    to_tag=self.local_tag))
        self.final_status, self.final_reason = status, reason
        self._terminate()

    def _cancelled(self) -> None:
        if self.state in ("calling", "early") and self.server_tx is not None:
            self.ua.respond(self.server_tx, response_to(self.invite, 487, to_tag=self.local_tag))
            self.final_status, self.final_reason = 487, "Request Terminated"
            self._terminate()
            self._emit(SessionEvent("failed", 487, "cancelled by caller", by="remote"))

    # ---- in dialog ------------------------------------------------------------------------
    def _in_dialog(self, tx: ServerTransaction, ev: DialogEvent) -> None:
        req = ev.request
        kind = ev.kind
        if kind == "bye":
            self.ua.respond(tx, response_to(req, 200))
            was = self.state
            self._terminate()
            if was != "terminated":
                self._emit(SessionEvent("ended", by="remote", message=req))
            return
        if kind in ("reinvite", "update"):
            if req.body and req.content_type == SDP:
                try:
                    parse_sdp(req.body)
                except ValueError as exc:  # malformed, not merely unacceptable: 400
                    self.ua.respond(tx, bad_request(req, f"bad SDP: {exc}"))
                    return
                answer = self.answerer(req.body)
                if answer is None:
                    self.ua.respond(tx, response_to(req, 488))
                    return
                self.remote_sdp = req.body
                h = Headers([("Contact", self.ua.contact())])
                ok = response_to(req, 200, headers=h, body=answer, content_type=SDP)
                self.ua.respond(tx, ok)
                if kind == "reinvite":
                    self._retransmit_until_ack(ok, tx)
            elif kind == "reinvite":
                # Offerless re-INVITE: we offer in the 200, the answer comes in the ACK.
                h = Headers([("Contact", self.ua.contact())])
                ok = response_to(req, 200, headers=h, body=self.offerer(), content_type=SDP)
                self.ua.respond(tx, ok)
                self._retransmit_until_ack(ok, tx)
            else:
                self.ua.respond(tx, response_to(req, 200, headers=Headers(
                    [("Contact", self.ua.contact())])))
            self._emit(SessionEvent("dialog", dialog_event=ev))
            return
        if kind == "refer":
            self._refer_received(tx, req)
            return
        if kind == "options":
            h = Headers([("Allow", ALLOW), ("Accept", SDP)])
            self.ua.respond(tx, response_to(req, 200, headers=h))
            return
        self.ua.respond(tx, response_to(req, 200))
        self._emit(SessionEvent("dialog", dialog_event=ev))

    def _refer_received(self, tx: ServerTransaction, req: Request) -> None:
        """Answer a REFER: 400/603 with a reason, or 202 and a first NOTIFY (RFC 3515 §2.4)."""
        try:
            target = parse_refer(req)
            if target.uri.scheme == "tel" and not self.ua.config.proxy:
                raise ReferRefused(603, "No route for a tel: target")
            if self.refer is not None and not self.refer.terminated:
                raise ReferRefused(603, "A transfer is already in progress")
            if self.state != "confirmed":
                raise ReferRefused(603, "Call not established")
        except ReferRefused as exc:
            log.info("REFER refused: %s", exc)
            self.ua.respond(tx, response_to(req, exc.status, exc.reason))
            return
        sub = ReferSubscription(self, req, target)
        accepted = False
        if self.on_refer is not None:
            try:
                accepted = bool(self.on_refer(sub))
            except Exception:  # a policy bug refuses; it must not leave the REFER unanswered
                log.exception("REFER policy failed")
        if not accepted:
            log.info("REFER to %s not accepted by policy", target.uri)
            self.ua.respond(tx, response_to(req, 603, "Transfer not accepted"))
            return
        self.refer = sub
        h = Headers([("Contact", self.ua.contact())])
        self.ua.respond(tx, response_to(req, 202, headers=h))
        sub.notify(100, "Trying")

    async def request(self, method: str, *, body: bytes = b"", content_type: str | None = None,
                      extra: list[tuple[str, str]] | None = None) -> Response:
        """Send an in-dialog request (INFO, REFER, re-INVITE, UPDATE, OPTIONS) and wait."""
        if self.dialog is None or self.state != "confirmed":
            raise RuntimeError(f"no confirmed dialog for {method}")
        contact = self.ua.contact() if method in ("INVITE", "UPDATE", "REFER") else None
        req = self.dialog.new_request(method, self.ua.via(), contact=contact, body=body,
                                      content_type=content_type, extra=extra)
        dest = self._hop()
        if method != "INVITE":
            return await self.ua.request(req, dest)
        fut: asyncio.Future[Response] = self.ua.loop.create_future()

        def on_result(resp: Response | None) -> None:
            if resp is None and not fut.done():
                fut.set_result(Response(408))
            elif resp is not None and resp.status >= 200:
                if resp.status < 300 and self.dialog is not None:
                    self.dialog.refresh_target(resp)
                    ack = self.dialog.ack(req.cseq.number, self.ua.via())
                    self.ua._send(ack, dest)
                if not fut.done():
                    fut.set_result(resp)

        self.ua.send_request(req, dest, on_result)
        return await fut

    def bye(self, reason: str | None = None) -> None:
        """Hang up a confirmed call (BYE, §15.1.1); fire-and-forget, the transaction retries."""
        if self.state != "confirmed" or self.dialog is None:
            return
        extra = [("Reason", f'SIP;cause=200;text="{reason}"')] if reason else None
        req = self.dialog.new_request("BYE", self.ua.via(), extra=extra)
        self.ua.send_request(req, self._hop(), lambda resp: None)
        self._terminate()
        self._emit(SessionEvent("ended", by="local"))

