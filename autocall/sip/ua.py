"""The SIP user agent: asyncio driver over the sans-I/O message/transaction/dialog cores.

``SipUA`` owns one transport, runs every transaction's timers on the event loop
(``loop.call_at``: no per-call tasks or sleeps), answers what needs no decision
(100 Trying, OPTIONS, CANCEL, 481, 400 for malformed requests), keeps an optional
registration fresh, and runs INVITE usages (``invite.InviteUsage``): it executes their
actions and fires their timers, and wraps each in an ``InviteSession`` that the telephony
layer turns into a call. Call-IDs, tags and branches come from ``secrets`` (§8.1.1.4,
§19.3: they must be unguessable so nobody can inject into a dialog).

Being transferred (RFC 3515): ``refer.check_refer`` vets the REFER and the session asks its
``on_refer`` policy; without one, or when it says no, the REFER gets 603. An accepted REFER
gets 202 and a ``ReferSubscription`` that sends the NOTIFYs (§2.4.4); the telephony layer
places the INVITE and reports its outcome through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from autocall.sip.auth import Credentials, DigestClient
from autocall.sip.dialog import ALLOW, Dialog, InDialogKind, response_to
from autocall.sip.dns import DnsLookup
from autocall.sip.invite import (
    RINGING,
    DialogUp,
    InviteAction,
    InviteState,
    InviteUsage,
    LocalFailure,
    Respond,
    SessionEvent,
    StartRequest,
    Transmit,
    bad_request,
    new_tag,
)
from autocall.sip.keepalive import KeepAlive
from autocall.sip.locate import NAMES, locate, up_first
from autocall.sip.lograte import LogRate
from autocall.sip.message import (
    URI,
    Address,
    Headers,
    Request,
    Response,
    Via,
    printable,
    salvage_400,
    split_list,
)
from autocall.sip.refer import ReferRefused, ReferTarget, check_refer, notify_request
from autocall.sip.sdp import parse_sdp
from autocall.sip.session_timer import TimerPolicy
from autocall.sip.transaction import (
    Action,
    ClientTransaction,
    Deliver,
    Send,
    ServerTransaction,
    TimedOut,
    Timers,
    TransportFailed,
    server_key,
)
from autocall.sip.transport import (
    Received,
    Resolver,
    TcpLimits,
    TcpTransport,
    TlsSettings,
    TlsTransport,
    Transport,
    UdpTransport,
)

__all__ = ["UAConfig", "SipUA", "InviteSession", "SessionEvent", "LocalFailure", "new_tag",
           "new_branch", "ReferSubscription"]

log = logging.getLogger(__name__)
Addr = tuple[str, int]
T = TypeVar("T")
SDP = "application/sdp"
Delivered = Deliver | TimedOut | TransportFailed  # what a transaction hands its user


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
    """Slow-loris limits of the TCP and TLS transports (timeouts, message size, connections;
    an inbound TLS connection counts from its first byte, before its handshake)."""
    dns_servers: tuple[tuple[str, int], ...] = ()
    """Name servers for NAPTR/SRV/A (RFC 3263); empty: the system's."""
    tls: TlsSettings = field(default_factory=TlsSettings)
    """Certificates, names and timeouts of ``transport="tls"`` (RFC 3261 §26.2)."""
    session_timer: TimerPolicy | None = field(default_factory=TimerPolicy)
    """Session timers (RFC 4028) offered and accepted; None: none (``Require: timer`` → 420)."""
    keepalive: float = 0.0
    """Seconds between keep-alives while registered (``keepalive.KeepAlive``: CRLFCRLF
    over TCP/TLS, OPTIONS over UDP); 0: none."""


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


def stamp_via(request: Request, source: Addr) -> None:
    """Note on the top Via where a request really came from, so that its responses go
    back there and the sender learns its public address: ``received`` when the sent-by
    host is not the source IP (RFC 3261 §18.2.1), and with an empty ``rport`` the source
    port too, ``received`` then always (RFC 3581 §4). Responses are sent to the source
    address anyway (§18.2.2 with rport: a client behind NAT is reached only there)."""
    vias = request.headers.get_all("Via")
    if not vias:
        return
    top = Via.parse(vias[0])
    if "rport" in top.params and not top.params["rport"]:
        top.params["rport"] = str(source[1])
        top.params["received"] = source[0]
    elif top.host != source[0]:
        top.params["received"] = source[0]
    else:
        return
    request.headers.remove("Via")
    for value in [str(top), *vias[1:]]:
        request.headers.add("Via", value)


class SipUA:
    """One SIP endpoint. Create with ``await SipUA.start(config, on_invite=…)``."""

    def __init__(self, config: UAConfig) -> None:
        self.config = config
        self.transport: Transport | None = None
        self.resolver = Resolver()
        self.lookup = DnsLookup(config.dns_servers)
        self._routes: dict[str, list[Addr]] = {}
        self._down_until: dict[Addr, float] = {}
        self.on_invite: Callable[[InviteSession], None] | None = None
        self._client: dict[tuple[str, str],
                           tuple[ClientTransaction, Callable[[Delivered], None]]] = {}
        self._client_dest: dict[tuple[str, str], Addr] = {}
        self._server: dict[tuple[str, str, str], tuple[ServerTransaction, Addr]] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._dialogs: dict[tuple[str, str, str], InviteSession] = {}
        self._pending_invites: dict[tuple[str, str, str], InviteSession] = {}
        self._auth = DigestClient(config.credentials) if config.credentials else None
        self._reg_task: asyncio.Task[None] | None = None
        self._reg_dest: Addr | None = None
        self._reregister = asyncio.Event()
        self.registered = asyncio.Event()
        self.register_error: str | None = None
        self.bindings: list[str] = []
        """The Contacts the registrar's last 200 to our REGISTER says it holds for our
        AOR: what it will send our calls to (behind NAT: our public address)."""
        self._reg_call_id: str | None = None  # one Call-ID for all REGISTERs (§10.2.4)
        self._reg_cseq = 0
        self._reg_tag: str | None = None
        self.closed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.lograte = LogRate(log)
        """Lines about what strangers send are rate-limited (one line each, no traceback)."""
        self.keepalive: KeepAlive | None = None
        """Keep-alive pings to the registrar (``UAConfig.keepalive``), once registered."""
        self.trace: Callable[[float, str, Addr, bytes], None] | None = None
        """Called with (now, ``sent``/``received``, peer, bytes) for every SIP message
        (``autocall.sip.trace.SipTrace.record``); None keeps nothing."""

    # ---- lifecycle -------------------------------------------------------------------
    @classmethod
    async def start(cls, config: UAConfig,
                    on_invite: Callable[[InviteSession], None] | None = None) -> SipUA:
        self = cls(config)
        self.on_invite = on_invite
        bind = (config.bind_host, config.bind_port)
        advertise = (config.advertise_host, config.advertise_port)
        kind = config.transport.lower()
        if kind == "tls":
            self.transport = await TlsTransport.create(self._received, bind, advertise,
                                                       config.tcp_limits, config.tls)
        elif kind == "tcp":
            self.transport = await TcpTransport.create(self._received, bind, advertise,
                                                       config.tcp_limits)
        elif kind == "udp":
            self.transport = await UdpTransport.create(self._received, bind, advertise)
        else:
            raise ValueError(f"SIP transport {config.transport!r} is not one of udp, tcp, tls")
        if config.register:
            self._reg_task = asyncio.get_running_loop().create_task(self._register_loop())
            if config.keepalive > 0:
                self.keepalive = KeepAlive(config.keepalive, self.transport.reliable)
                self.spawn(self._keepalive_loop(self.keepalive))
        self.transport.on_unreachable = self._unreachable
        self.transport.on_closed = self._connection_closed
        return self

    def _connection_closed(self, peer: Addr) -> None:
        """A connection we opened is gone. If our registration went over it, register
        again now: over TCP or TLS the registrar reaches us down that very connection
        (Via alias), so until a new REGISTER opens another, calls for us are lost
        (RFC 5626 §4.4.1 does the same when a flow fails)."""
        if peer == self._reg_dest and self._reg_task is not None and not self.closed:
            self._reregister.set()

    def _unreachable(self, dest: Addr, why: str) -> None:
        """End every client transaction bound for ``dest`` at once (§17.1.4)."""
        for key, (tx, deliver) in list(self._client.items()):
            if self._client_dest.get(key) == dest:
                self._run(tx, tx.transport_error(why), dest, deliver)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for session in list(self._dialogs.values()):
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
        extra = self.transport.via_params if self.transport else ""
        return f"SIP/2.0/{name} {host}:{port};branch={new_branch()};rport{extra}"

    def contact(self, user: str | None = None, secure: bool = False) -> str:
        """Our Contact; ``secure`` for a sips: request or dialog over TLS: a sips: URI,
        which says TLS by itself (RFC 5630 §3.1.3)."""
        host, port = self.advertised
        if secure and isinstance(self.transport, TlsTransport):
            return f"<sips:{user or self.config.user}@{host}:{port}>"
        tp = f";transport={self.transport.name.lower()}" \
            if self.transport is not None and self.transport.reliable else ""
        return f"<sip:{user or self.config.user}@{host}:{port}{tp}>"

    def local_address(self, user: str | None = None, display: str | None = None) -> Address:
        uri = URI("sip", user or self.config.user, self.domain)
        return Address(uri, display if display is not None else self.config.display_name,
                       {"tag": new_tag()})

    def _target(self, uri: URI) -> URI:
        """Where an out-of-dialog request goes: the proxy/trunk if configured, else ``uri``."""
        if self.config.proxy:
            return URI.parse(self.config.proxy)
        if uri.scheme == "tel":
            raise ValueError("a tel: URI needs a proxy/trunk to route it")
        return uri

    @staticmethod
    def _route_key(target: URI) -> str:
        return f"{target.scheme}:{target.host}:{target.port}:{target.params.get('transport')}"

    async def prepare(self, uri: URI) -> None:
        """Find the servers a request to ``uri`` may go to, in order (RFC 3263: NAPTR, SRV,
        A; each answer cached for its TTL), before the request is built: DNS is I/O."""
        if uri.scheme == "tel" and not self.config.proxy:
            return  # ``destination`` says why it cannot be routed
        target = self._target(uri)
        transport = self.config.transport.lower()
        hops = await locate(target, self.lookup, (NAMES.get(transport, "udp"),))
        if not hops:
            raise OSError(f"cannot resolve {target.host}: no NAPTR, SRV or A record for it")
        self._routes[self._route_key(target)] = [(hop.address, hop.port) for hop in hops]
        if self.transport is not None:
            for hop in hops:  # TLS checks the certificate for the URI's domain, not the
                # SRV target's: only the name we were given is trusted (RFC 5922 §4)
                self.transport.name_peer((hop.address, hop.port), target.host)

    def destinations(self, uri: URI) -> list[Addr]:
        """The servers for an out-of-dialog request to ``uri``, first choice first
        (found by ``prepare``: this never looks a name up)."""
        target = self._target(uri)
        found = self._routes.get(self._route_key(target))
        if found:
            return up_first(found, self._down_until, self._now())
        host, port = target.hostport
        addr = self.resolver.cached(host)
        if addr is None:
            raise OSError(f"{host} is not resolved yet: await SipUA.prepare first")
        return [(addr, port)]

    def destination(self, uri: URI) -> Addr:
        return self.destinations(uri)[0]

    def base_request(self, method: str, uri: URI, from_: Address, to: Address,
                     call_id: str, cseq: int) -> Request:
        return Request(method, uri, Headers([
            ("Via", self.via()), ("Max-Forwards", "70"), ("From", str(from_)), ("To", str(to)),
            ("Call-ID", call_id), ("CSeq", f"{cseq} {method}"),
            ("User-Agent", self.config.user_agent)]))

    # ---- transaction plumbing ------------------------------------------------------------
    def _now(self) -> float:
        return self.loop.time()

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """A task the agent owns: kept referenced, cancelled by ``close``."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def transmit(self, msg: Request | Response, dest: Addr) -> None:
        """Send without a transaction (ACKs to 2xx, 2xx retransmissions, stateless 400s)."""
        if self.transport is not None:
            if self.trace is not None:
                self.trace(self._now(), "sent", dest, bytes(msg))
            self.transport.send(msg, dest)

    def _run(self, tx: ClientTransaction | ServerTransaction, actions: list[Action], dest: Addr,
             deliver: Callable[[Delivered], None] | None) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.transmit(action.message, dest)
            elif deliver is not None and isinstance(action, (Deliver, TimedOut, TransportFailed)):
                try:
                    deliver(action)
                except Exception:  # a TU bug must not take the whole agent down
                    log.exception("transaction user failed on %s", action)
        self._schedule(tx, dest, deliver)

    def _schedule(self, tx: ClientTransaction | ServerTransaction, dest: Addr,
                  deliver: Callable[[Delivered], None] | None) -> None:
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
        if deadline is not None and not self.closed:
            def fire() -> None:
                self._timers.pop(id(tx), None)
                self._run(tx, tx.on_timer(self._now()), dest, deliver)
            self._timers[id(tx)] = self.loop.call_at(deadline, fire)

    def send_request(self, request: Request, dest: Addr,
                     on_result: Callable[[Response | None], None]) -> ClientTransaction:
        """Start a client transaction; ``on_result`` gets each response, or None on timeout."""
        reliable = bool(self.transport and self.transport.reliable)
        tx = ClientTransaction(request, reliable=reliable, timers=self.config.timers)

        def deliver(action: Delivered) -> None:
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

            def on_result(resp: Response | None, fut: asyncio.Future[Response] = fut,
                          sent: Request = request) -> None:
                if fut.done():
                    return
                if resp is None:  # Timer F: a local 408, never on the wire (§8.1.3.1)
                    fut.set_result(LocalFailure(408, "Request Timeout (no response)",
                                                response_to(sent, 408).headers))
                elif resp.status >= 200:
                    fut.set_result(resp)

            self.send_request(request, dest, on_result)
            resp = await fut
            retry = self.authorized_retry(request, resp)
            if retry is None:
                return resp
            request = retry
        return resp

    def authorized_retry(self, request: Request, resp: Response) -> Request | None:
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
        if self.trace is not None:
            self.trace(self._now(), "received", rx.source, rx.raw)
        try:
            self._dispatch(rx)
        except Exception as exc:  # one bad message must never stop the agent (nor flood the log)
            self.lograte.log(logging.WARNING, "sip-failure",
                             "failed to handle a message from %s:%s: %s: %s", rx.source[0],
                             rx.source[1], type(exc).__name__, printable(str(exc)))

    def _dispatch(self, rx: Received) -> None:
        msg = rx.message
        if msg is None:
            self.lograte.log(logging.WARNING, "sip-malformed", "malformed message from %s:%s: %s",
                             rx.source[0], rx.source[1], printable(rx.error or "?"))
            reply = salvage_400(rx.raw, rx.error or "Bad Request")
            if reply is not None:
                rx.transport.send(_Raw(reply), rx.source)  # type: ignore[arg-type]
            return
        try:
            msg.validate()
        except ValueError as exc:
            self.lograte.log(logging.WARNING, "sip-malformed", "invalid %r from %s:%s: %s", msg,
                             rx.source[0], rx.source[1], printable(str(exc)))
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
        stamp_via(req, source)  # before any response copies the Via (RFC 3581)
        key = server_key(req)
        existing = self._server.get(key)
        if existing is not None:
            tx, dest = existing
            self._run(tx, tx.receive(req, self._now()), dest, None)
            return
        if req.method == "ACK":
            session = self._dialogs.get((req.call_id, req.to.tag or "", req.from_.tag or ""))
            if session is not None and session.usage.dialog is not None \
                    and session.usage.dialog.vet(req, source, check_port=self._check_port) is None:
                self.execute(session, session.usage.receive(req, self._now()))
            return
        if req.method == "INVITE" and not req.to.tag and self.on_invite is not None \
                and not self.closed:
            problem = invite_problem(req)
            if problem is not None:
                # Answered statelessly (RFC 3261 §8.2.7: no 100, no retransmission, a
                # retransmitted INVITE just gets another 400): a flood of broken INVITEs
                # that never ACK must not keep a transaction each for 64*T1.
                self.lograte.log(logging.WARNING, "sip-malformed", "invalid %r from %s:%s: %s",
                                 req, source[0], source[1], printable(problem))
                response = bad_request(req, problem)
                response.headers.add("Server", self.config.user_agent)
                self.transmit(response, source)
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
                             source[0], source[1], printable(str(exc)))
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
            self.respond(tx, response_to(req, 200, to_tag=session.usage.local_tag))
            self.execute(session, session.usage.receive(req, self._now()))
            return
        supported = {"timer"} if self.config.session_timer is not None else set()
        if method == "INVITE":
            supported.add("100rel")  # reliable 1xx only answer INVITEs (RFC 3262 §3)
        required = [o.strip() for raw in req.headers.get_all("Require")
                    for o in split_list(raw) if o.strip().lower() not in supported]
        if required:  # §8.2.2.3: an extension we do not implement
            h = Headers([("Unsupported", ", ".join(required))])
            self.respond(tx, response_to(req, 420, "Bad Extension", to_tag=new_tag(), headers=h))
            return
        to_tag = req.to.tag
        if to_tag:
            session = self._dialogs.get((req.call_id, to_tag, req.from_.tag or ""))
            dialog = session.usage.dialog_for(req) if session is not None else None
            if session is None or dialog is None:  # early dialogs too (PRACK, UPDATE)
                self.respond(tx, response_to(req, 481))
                return
            refusal = dialog.vet(req, source, check_port=self._check_port)
            if refusal is not None:
                self.respond(tx, response_to(req, refusal[0], refusal[1]))
                return
            ev = dialog.accept(req)
            if ev.kind == InDialogKind.REFER:
                session.refer_received(tx, req)
            else:
                self.execute(session, session.usage.on_request(ev, source, self._now()), tx)
            return
        if method == "INVITE":
            if self.on_invite is None or self.closed:
                self.respond(tx, response_to(req, 480, to_tag=new_tag()))
                return
            usage = InviteUsage(self, "uas", req, peer=source, timers=self.config.timers,
                                session_timer=self.config.session_timer)
            session = InviteSession(self, usage, tx)
            refused = usage.screen()  # a Session-Expires too short (422) or malformed (400)
            if refused:
                self.execute(session, refused)
                return
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

    # ---- INVITE usages ----------------------------------------------------------------------
    def execute(self, session: InviteSession, actions: list[InviteAction],
                tx: ServerTransaction | None = None) -> None:
        """Carry out what an INVITE usage asked for (``Respond`` answers ``tx``, by default
        the INVITE), then keep the routing tables and the usage's timer in step with it."""
        usage = session.usage
        unresolved: list[InviteAction] = []
        for action in actions:
            if isinstance(action, (StartRequest, Transmit)):
                dest = None if unresolved else self._cached(action.to)
                if dest is None:  # a next hop by name: look it up off the loop, keep order
                    unresolved.append(action)
                elif isinstance(action, Transmit):
                    self.transmit(action.message, dest)
                else:
                    req = action.request
                    if action.refresh:
                        on_result = self._refresh_result(session, req)
                    elif req.method == "INVITE":
                        on_result = self._invite_result(session, req)
                    else:
                        on_result = _ignore
                    self.send_request(req, dest, on_result)
            elif isinstance(action, Respond):
                target = tx or session.server_tx
                if target is not None:
                    self.respond(target, action.response)
            elif isinstance(action, DialogUp):
                self._dialogs[action.dialog.id] = session
                if usage.peer is not None:  # in-dialog requests may come from where the
                    action.dialog.peers.add(usage.peer)  # INVITE went or came from
                if self.config.proxy:  # or from our proxy
                    self.spawn(self._trust_proxy(action.dialog))
            else:
                session.emit(action.event)
        if unresolved:
            self.spawn(self._send_resolved(session, unresolved))
        if session.server_tx is not None and usage.state not in RINGING:
            self._pending_invites.pop(session.server_tx.key, None)
        if usage.state is InviteState.TERMINATED:
            for dialog in usage.dialogs:  # the confirmed one and any early ones
                self._dialogs.pop(dialog.id, None)
        old = self._timers.pop(id(usage), None)
        if old is not None:
            old.cancel()
        deadline = usage.deadline
        if deadline is not None and not self.closed:
            def fire() -> None:
                self._timers.pop(id(usage), None)
                self.execute(session, usage.on_timer(self._now()))
            self._timers[id(usage)] = self.loop.call_at(deadline, fire)

    def _invite_result(self, session: InviteSession,
                       request: Request) -> Callable[[Response | None], None]:
        def on_result(resp: Response | None) -> None:
            if resp is None:  # Timer B (§17.1.1.2): not even a 100 Trying came back
                resp = LocalFailure(408, "Request Timeout (no response)",
                                    response_to(request, 408).headers)
            usage = session.usage
            if usage.peer is not None and usage.state is InviteState.CALLING and (
                    isinstance(resp, LocalFailure) or resp.status == 503):
                self._server_down(usage.peer, resp)
            self.execute(session, session.usage.receive(resp, self._now()))
        return on_result

    def _refresh_result(self, session: InviteSession,
                        request: Request) -> Callable[[Response | None], None]:
        def on_result(resp: Response | None) -> None:
            if resp is None:  # the refresh timed out: the far end is gone (RFC 4028 §10)
                resp = LocalFailure(408, "Request Timeout (no response)",
                                    response_to(request, 408).headers)
            self.execute(session, session.usage.refreshed(resp, self._now()))
        return on_result

    def _server_down(self, server: Addr, resp: Response) -> None:
        """Remember a server that failed before ringing, for its Retry-After (§20.33) or
        a minute, so the next calls try the others first."""
        wait = re.match(r"\s*(\d{1,9})", resp.headers.get("Retry-After") or "")
        seconds = min(int(wait.group(1)), 3600) if wait and int(wait.group(1)) else 60
        self._down_until[server] = self._now() + seconds

    def _cached(self, to: Addr | Dialog) -> Addr | None:
        if not isinstance(to, Dialog):
            return to
        host, port = to.next_hop()
        addr = self.resolver.cached(host)
        return None if addr is None else (addr, port)

    async def address(self, to: Addr | Dialog) -> Addr:
        """An address as is; a dialog's next hop resolved (DNS is I/O: not in dialog.py)."""
        if not isinstance(to, Dialog):
            return to
        host, port = to.next_hop()
        addr = await self.resolver.resolve(host)
        if self.transport is not None and addr != host:  # TLS: the name to verify
            self.transport.name_peer((addr, port), host)
        return addr, port

    async def _send_resolved(self, session: InviteSession,
                             actions: list[InviteAction]) -> None:
        ready: list[InviteAction] = []
        for action in actions:
            assert isinstance(action, (StartRequest, Transmit))
            try:
                await self.address(action.to)
                ready.append(action)
            except OSError as exc:
                log.info("not sent, no address: %s", exc)
        self.execute(session, ready)

    async def _trust_proxy(self, dialog: Dialog) -> None:
        with contextlib.suppress(OSError, ValueError):
            proxy = URI.parse(self.config.proxy or "")
            dialog.peers.update(self._routes.get(self._route_key(proxy), []))
            host, port = proxy.hostport
            dialog.peers.add((await self.resolver.resolve(host), port))

    # ---- outgoing requests ----------------------------------------------------------------
    def invite(self, target: URI, *, from_user: str | None = None, display: str | None = None,
               headers: list[tuple[str, str]] | None = None, sdp: bytes | None = None,
               listener: Callable[[SessionEvent], None] | None = None,
               send: bool = True) -> InviteSession:
        """Start an outgoing INVITE session (``sdp=None`` means a late offer).

        ``send=False`` builds the session without sending, so the caller can put its media
        port into the SDP first (``session.set_offer``) and then ``session.send(dest)``.
        """
        from_ = self.local_address(from_user, display)
        to = Address(target.copy())
        req = self.base_request("INVITE", target, from_, to, new_call_id(), 1)
        req.headers.add("Contact", self.contact(from_user, secure=target.scheme == "sips"))
        req.headers.add("Allow", ALLOW)
        req.headers.add("Supported", "100rel")  # reliable 1xx, PRACKed (RFC 3262 §4)
        for name, value in headers or []:
            req.headers.add(name, value)
        session = InviteSession(self, InviteUsage(self, "uac", req, timers=self.config.timers,
                                                  session_timer=self.config.session_timer))
        session.set_offer(sdp)
        if listener is not None:
            session.listener = listener
        if send:
            session.send(*self.destinations(target))
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

    async def register_once(self, expires: int) -> Response:
        """Send one REGISTER (answering digest challenges) and return its final response,
        whatever it is: a timeout is a local 408. For checks (``autocall sip check``); the
        registration loop of ``UAConfig.register`` uses the same exchange. OSError when the
        registrar's name does not resolve."""
        uri = self._registrar_uri()
        self._reg_call_id = self._reg_call_id or new_call_id()
        self._reg_tag = self._reg_tag or new_tag()
        self._reg_cseq += 1
        aor = Address(URI("sip", self.config.user, self.config.domain or uri.host))
        from_ = Address(aor.uri.copy(), None, {"tag": self._reg_tag})
        req = self.base_request("REGISTER", uri, from_, aor, self._reg_call_id, self._reg_cseq)
        req.headers.add("Contact",
                        f"{self.contact(secure=uri.scheme == 'sips')};expires={expires}")
        req.headers.add("Expires", str(expires))
        host, port = uri.hostport
        if uri.port is None and self.config.transport.lower() == "tls":
            port = 5061  # §19.1.2: the default port of SIP over TLS
        dest = (await self.resolver.resolve(host), port)
        if self.transport is not None:
            self.transport.name_peer(dest, host)
        self._reg_dest = dest
        resp = await self.request(req, dest)
        self._reg_cseq = resp.cseq.number if resp.status < 300 else self._reg_cseq + 1
        return resp

    async def _register_once(self, expires: int) -> int:
        """Send one REGISTER; return the granted expiry (0 when unregistering)."""
        resp = await self.register_once(expires)
        if resp.status >= 300:
            raise ValueError(f"REGISTER failed: {resp.status} {resp.reason}")
        granted = expires
        self.bindings = [v.strip() for raw in resp.headers.get_all("Contact")
                         for v in split_list(raw)]
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
        lost = 0.5  # wait after a lost connection, doubled while they keep being lost
        while True:
            try:
                self._reregister.clear()
                granted = await self._register_once(self.config.register_expires)
                self.register_error = None
                self.registered.set()
                delay = 1.0
                # Refresh well before expiry (RFC 3261 §10.2.4 leaves the margin to us),
                # or soon after the connection that carried the registration is lost.
                try:
                    await asyncio.wait_for(self._reregister.wait(), max(1.0, granted * 0.5))
                except TimeoutError:
                    lost = 0.5
                    continue
                log.info("registration: the path to the registrar was lost; "
                         "registering again in %g s", lost)
                await asyncio.sleep(lost)
                lost = min(lost * 2, 30.0)
            except (ValueError, OSError) as exc:
                self.register_error = str(exc)
                self.registered.clear()
                log.warning("registration: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    async def _keepalive_loop(self, ka: KeepAlive) -> None:
        """Drive ``ka`` while registered: sleep to its deadline, send its pings down the
        path of our registration, and register again when an OPTIONS gets no answer."""
        await self.registered.wait()
        ka.start(self._now())
        while not self.closed and ka.deadline is not None:
            await asyncio.sleep(max(0.0, ka.deadline - self._now()))
            for ping in ka.on_timer(self._now()):
                dest = self._reg_dest
                if dest is None or self.transport is None:
                    continue
                if ping.kind == "crlf":
                    if not self.transport.keepalive(dest):
                        log.info("keep-alive: no connection to the registrar %s:%s", *dest)
                    continue
                self.spawn(self._ping_options(ka, dest))

    async def _ping_options(self, ka: KeepAlive, dest: Addr) -> None:
        uri = self._registrar_uri()
        aor = Address(URI("sip", self.config.user, self.config.domain or uri.host))
        req = self.base_request("OPTIONS", uri, Address(aor.uri.copy(), None, {"tag": new_tag()}),
                                Address(uri.copy()), new_call_id(), 1)
        fut: asyncio.Future[int | None] = self.loop.create_future()

        def on_result(resp: Response | None) -> None:
            if fut.done():
                return
            if resp is None or isinstance(resp, LocalFailure):
                fut.set_result(None)
            elif resp.status >= 200:
                fut.set_result(resp.status)

        self.send_request(req, dest, on_result)
        for lost in ka.answered(await fut):
            log.warning("keep-alive: %s; registering again", lost.reason)
            self._reregister.set()


class _Raw:
    """Pre-serialised bytes that a transport can send like a message."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __bytes__(self) -> bytes:
        return self.data


def _ignore(resp: Response | None) -> None:
    """Responses to a CANCEL or BYE change nothing: the usage has already moved on."""


class ReferSubscription:
    """The implicit subscription an accepted REFER creates (RFC 3515 §2.4.4).

    ``notify`` sends one NOTIFY (``refer.notify_request``) after the previous one was
    answered, so the referrer sees them in order; the first final status (≥ 200) ends the
    subscription and later calls send nothing. NOTIFYs still go out after the INVITE usage
    ended with a BYE: the subscription is its own dialog usage (RFC 5057 §5).
    """

    def __init__(self, session: InviteSession, request: Request, target: ReferTarget) -> None:
        self.session = session
        self.request = request
        self.target = target
        self.event_id = request.cseq.number
        self.terminated = False
        self.final_status: int | None = None
        self._last: asyncio.Task[int] | None = None

    def notify(self, status: int, reason: str | None = None) -> asyncio.Task[int]:
        """Report ``status`` to the referrer; the task gives the NOTIFY's response code
        (0 when nothing was sent: the subscription had already ended or the agent closed)."""
        previous = self._last
        skip = self.terminated
        if status >= 200 and not skip:
            self.terminated = True
            self.final_status = status
        task = self.session.ua.spawn(self._send_after(previous, status, reason, skip))
        self._last = task
        return task

    async def _send_after(self, previous: asyncio.Task[int] | None, status: int,
                          reason: str | None, skip: bool) -> int:
        if previous is not None:
            with contextlib.suppress(Exception):
                await previous
        session, ua = self.session, self.session.ua
        if skip or session.usage.dialog is None or ua.closed:
            return 0
        try:
            dest = await session.hop()  # before the CSeq is taken: NOTIFYs leave in order
            req = notify_request(session.usage.dialog, ua.via(),
                                 ua.contact(secure=session.usage.secure), self.event_id,
                                 status, reason)
            resp = await ua.request(req, dest)
        except (OSError, ValueError) as exc:
            log.info("NOTIFY for REFER %s not sent: %s", self.event_id, exc)
            return 0
        if resp.status == 481:  # the referrer forgot the subscription: nothing more to say
            self.terminated = True
        return resp.status


class InviteSession:
    """One INVITE usage as the application sees it: ``SipUA`` runs the sans-I/O
    ``InviteUsage`` (``usage``: state, dialog, SDP, ``answerer``/``offerer`` hooks), events
    go to ``listener``, in-dialog requests leave through ``request``."""

    def __init__(self, ua: SipUA, usage: InviteUsage,
                 server_tx: ServerTransaction | None = None) -> None:
        self.ua = ua
        self.usage = usage
        self.server_tx = server_tx
        self.listener: Callable[[SessionEvent], None] = lambda ev: None
        self.on_refer: Callable[[ReferSubscription], bool] | None = None
        """Policy for a REFER in this dialog: True to follow it (then place the INVITE and
        report through the subscription). None refuses every REFER with 603."""
        self.refer: ReferSubscription | None = None

    async def hop(self) -> Addr:
        """The dialog's next hop, resolved."""
        assert self.usage.dialog is not None
        return await self.ua.address(self.usage.dialog)

    def emit(self, event: SessionEvent) -> None:
        try:
            self.listener(event)
        except Exception:
            log.exception("session listener failed on %s", type(event).__name__)

    # ---- what the application does ---------------------------------------------------------
    def set_offer(self, sdp: bytes | None) -> None:
        """The SDP offer of our INVITE (None: a late offer); before ``send``."""
        self.usage.set_offer(sdp)

    def send(self, dest: Addr, *alternates: Addr) -> None:
        """Send our INVITE to ``dest``, then ``alternates`` if it fails before ringing
        (``SipUA.destinations`` of the target)."""
        self.ua.execute(self, self.usage.start(dest, self.ua.loop.time(), alternates))

    def cancel(self) -> None:
        self.ua.execute(self, self.usage.cancel(self.ua.loop.time()))

    def ring(self, status: int = 180) -> None:
        self.ua.execute(self, self.usage.ring(status, self.ua.loop.time()))

    def answer(self, sdp: bytes | None) -> None:
        self.ua.execute(self, self.usage.answer(sdp, self.ua.loop.time()))

    def reject(self, status: int = 486, reason: str | None = None) -> None:
        self.ua.execute(self, self.usage.reject(status, reason))

    def bye(self, reason: str | None = None) -> None:
        self.ua.execute(self, self.usage.bye(reason))

    def refer_received(self, tx: ServerTransaction, req: Request) -> None:
        """Answer a REFER: 400/603 with a reason, or 202 and a first NOTIFY (RFC 3515 §2.4)."""
        try:
            target = check_refer(req, tel_routable=bool(self.ua.config.proxy),
                                 busy=self.refer is not None and not self.refer.terminated,
                                 confirmed=self.usage.state is InviteState.CONFIRMED)
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
        h = Headers([("Contact", self.ua.contact(secure=self.usage.secure))])
        self.ua.respond(tx, response_to(req, 202, headers=h))
        sub.notify(100, "Trying")

    async def request(self, method: str, *, body: bytes = b"", content_type: str | None = None,
                      extra: list[tuple[str, str]] | None = None) -> Response:
        """Send an in-dialog request (INFO, REFER, re-INVITE, UPDATE, OPTIONS) and wait."""
        if self.usage.dialog is None or self.usage.state is not InviteState.CONFIRMED:
            raise RuntimeError(f"no confirmed dialog for {method}")
        dialog = self.usage.dialog
        dest = await self.hop()  # before the CSeq is taken, so requests leave in CSeq order
        contact = self.ua.contact(secure=self.usage.secure) \
            if method in ("INVITE", "UPDATE", "REFER") else None
        refresh = method in ("INVITE", "UPDATE")  # it refreshes the session too (RFC 4028)
        if refresh:
            extra = [*(extra or []), *self.usage.refresh_extra()]
        req = dialog.new_request(method, self.ua.via(), contact=contact, body=body,
                                 content_type=content_type, extra=extra)
        if method != "INVITE":
            resp = await self.ua.request(req, dest)
            if refresh:
                if body and 200 <= resp.status < 300:
                    self.usage.local_sdp = body
                self.ua.execute(self, self.usage.app_refreshed(resp, self.ua.loop.time()))
            return resp
        fut: asyncio.Future[Response] = self.ua.loop.create_future()

        def on_result(resp: Response | None) -> None:
            if resp is None and not fut.done():
                fut.set_result(Response(408))
            elif resp is not None and resp.status >= 200:
                first = not fut.done()  # not a retransmitted 2xx
                if resp.status < 300 and self.usage.dialog is not None:
                    self.usage.dialog.refresh_target(resp)  # §12.2.1.2, then ACK it (§13.2.2.4)
                    self.ua.transmit(self.usage.dialog.ack(req.cseq.number, self.ua.via()), dest)
                    if body and first:  # a session refresh repeats what was last accepted
                        self.usage.local_sdp = body
                if first:
                    self.ua.execute(self, self.usage.app_refreshed(resp, self.ua.loop.time()))
                    fut.set_result(resp)

        self.ua.send_request(req, dest, on_result)
        return await fut
