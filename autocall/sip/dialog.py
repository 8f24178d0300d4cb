"""SIP dialogs (RFC 3261 §12) and what in-dialog requests mean to a call, sans-I/O.

A ``Dialog`` holds the state two user agents share: Call-ID, tags, CSeq numbers, the
remote target and the route set. It builds in-dialog requests (§12.2.1), vets incoming
ones (§12.2.2: right tags, CSeq not going backwards, a source address that belongs to
the dialog, so a spoofed BYE or re-INVITE cannot end or steal a call) and turns them
into ``DialogEvent``s (BYE, re-INVITE, INFO digits, REFER, NOTIFY, UPDATE, OPTIONS).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from dataclasses import dataclass, field
from enum import StrEnum

from autocall.sip.message import URI, Address, Headers, Request, Response

__all__ = ["Dialog", "DialogEvent", "parse_info_dtmf", "ALLOW", "response_to"]

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY, UPDATE"


def response_to(request: Request, status: int, reason: str | None = None, *,
                to_tag: str | None = None, headers: Headers | None = None,
                body: bytes = b"", content_type: str | None = None) -> Response:
    """A response copying Via, From, To, Call-ID, CSeq from the request (§8.2.6.2)."""
    h = Headers()
    for via in request.headers.get_all("Via"):
        h.add("Via", via)
    for rr in (request.headers.get_all("Record-Route") if 100 < status < 300 else []):
        h.add("Record-Route", rr)
    h.add("From", request.headers.get("From") or "")
    to = request.headers.get("To") or ""
    if to_tag and status > 100 and ";tag=" not in to.replace(" ", "").lower():
        to = f"{to};tag={to_tag}"
    h.add("To", to)
    h.add("Call-ID", request.headers.get("Call-ID") or "")
    h.add("CSeq", request.headers.get("CSeq") or "")
    if headers is not None:
        for name, value in headers:
            h.add(name, value)
    if body and content_type:
        h.set("Content-Type", content_type)
    return Response(status, reason, h, body)


class InDialogKind(StrEnum):
    """What an accepted in-dialog request is: its method, INFO split by what it carries."""

    BYE = "bye"
    REINVITE = "reinvite"
    UPDATE = "update"
    INFO_DTMF = "info_dtmf"  # a key, as application/dtmf-relay or application/dtmf
    INFO = "info"
    REFER = "refer"
    NOTIFY = "notify"
    OPTIONS = "options"
    PRACK = "prack"
    ACK = "ack"
    OTHER = "other"  # any other method: answered 200 by the usage, passed on


_BY_METHOD = {k.value.upper(): k for k in (InDialogKind.BYE, InDialogKind.INFO, InDialogKind.REFER,
                                           InDialogKind.NOTIFY, InDialogKind.OPTIONS,
                                           InDialogKind.PRACK, InDialogKind.ACK)}


@dataclass(frozen=True)
class DialogEvent:
    """What an accepted in-dialog request asks of the call."""

    kind: InDialogKind
    request: Request
    digit: str | None = None
    duration_ms: int | None = None


_DTMF_RELAY = re.compile(r"(?im)^\s*signal\s*=\s*([0-9A-Da-d*#]|1[0-6])\s*$")
_DTMF_DURATION = re.compile(r"(?im)^\s*duration\s*=\s*([0-9]+)\s*$")
_EVENT_DIGITS = "0123456789*#ABCD"


def parse_info_dtmf(content_type: str, body: bytes) -> tuple[str, int | None] | None:
    """Digit and duration from application/dtmf-relay or application/dtmf INFO bodies."""
    try:
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    digit: str | None = None
    duration: int | None = None
    if content_type == "application/dtmf-relay":
        m = _DTMF_RELAY.search(text)
        if m:
            digit = m.group(1).upper()
        d = _DTMF_DURATION.search(text)
        duration = int(d.group(1)) if d else None
    elif content_type == "application/dtmf":
        digit = text.upper() if text else None
    if digit is None:
        return None
    if digit.isdigit() and len(digit) == 2:  # numeric event codes 10-16 (RFC 4733 §3.2)
        code = int(digit)
        digit = _EVENT_DIGITS[code] if code < 16 else "!"
    if len(digit) != 1 or digit not in _EVENT_DIGITS + "!":
        return None
    return digit, duration


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: Address
    remote_uri: Address
    remote_target: URI
    route_set: list[str] = field(default_factory=list)
    local_seq: int = 0
    remote_seq: int | None = None
    secure: bool = False
    peers: set[tuple[str, int]] = field(default_factory=set)
    """(IP, port) pairs allowed to send in-dialog requests: the next hop, the remote target,
    where the INVITE came from and the configured proxy. The port counts: another process
    on the caller's host must not be able to re-INVITE the call away (issue 12 item 2)."""

    @classmethod
    def as_uac(cls, invite: Request, response: Response) -> Dialog:
        """§12.1.2: the dialog a 2xx (or 1xx with a tag) to our INVITE creates."""
        remote_tag = response.to.tag
        if not remote_tag:
            raise ValueError("response without To tag cannot create a dialog")
        contact = response.contact
        target = contact.uri if contact else invite.uri
        routes = list(reversed(response.headers.get_all("Record-Route")))
        d = cls(invite.call_id, invite.from_.tag or "", remote_tag, invite.from_, response.to,
                target, routes, invite.cseq.number, None, invite.uri.scheme == "sips")
        d._learn_hosts()
        return d

    @classmethod
    def as_uas(cls, invite: Request, local_tag: str) -> Dialog:
        """§12.1.1: the dialog our 2xx to an INVITE creates."""
        contact = invite.contact
        if contact is None:
            raise ValueError("INVITE without Contact")
        local = invite.to
        local.params["tag"] = local_tag
        d = cls(invite.call_id, local_tag, invite.from_.tag or "", local, invite.from_,
                contact.uri, invite.headers.get_all("Record-Route"), 0, invite.cseq.number,
                invite.uri.scheme == "sips")
        d._learn_hosts()
        return d

    def _learn_hosts(self) -> None:
        addrs = [self.remote_target.hostport]
        if self.route_set:
            with contextlib.suppress(ValueError):
                addrs.append(Address.parse(self.route_set[0]).uri.hostport)
        self.peers.update(a for a in addrs if _ip(a[0]) is not None)

    @property
    def id(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    def next_hop(self) -> tuple[str, int]:
        """Where in-dialog requests go: the first route (loose routing, §16.12) or the target."""
        if self.route_set:
            return Address.parse(self.route_set[0]).uri.hostport
        return self.remote_target.hostport

    def new_request(self, method: str, via: str, *, contact: str | None = None,
                    body: bytes = b"", content_type: str | None = None,
                    extra: list[tuple[str, str]] | None = None,
                    cseq: int | None = None) -> Request:
        """§12.2.1.1: Request-URI = remote target, Route = route set, CSeq + 1."""
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        uri = self.remote_target
        routes = list(self.route_set)
        if routes and "lr" not in Address.parse(routes[0]).uri.params:
            # Strict router (§12.2.1.1): it goes in the Request-URI, the target at the end.
            uri = Address.parse(routes[0]).uri.copy(params={})
            routes = routes[1:] + [f"<{self.remote_target}>"]
        h = Headers()
        h.add("Via", via)
        for r in routes:
            h.add("Route", r)
        h.add("Max-Forwards", "70")
        h.add("From", str(self.local_uri))
        h.add("To", str(self.remote_uri))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{cseq} {method if method != 'ACK' else 'ACK'}")
        if contact is not None:
            h.add("Contact", contact)
        for name, value in extra or []:
            h.add(name, value)
        if body and content_type:
            h.add("Content-Type", content_type)
        return Request(method, uri.copy(), h, body)

    def ack(self, invite_cseq: int, via: str, body: bytes = b"",
            content_type: str | None = None) -> Request:
        """ACK for a 2xx: its own transaction, CSeq number of the INVITE (§13.2.2.4)."""
        return self.new_request("ACK", via, cseq=invite_cseq, body=body,
                                content_type=content_type)

    def matches(self, msg: Request | Response) -> bool:
        try:
            if msg.call_id != self.call_id:
                return False
            if isinstance(msg, Request):
                return msg.to.tag == self.local_tag and msg.from_.tag == self.remote_tag
            return msg.from_.tag == self.local_tag and msg.to.tag == self.remote_tag
        except ValueError:
            return False

    def vet(self, request: Request, source: tuple[str, int] | None = None, *,
            check_port: bool = True) -> tuple[int, str] | None:
        """Why an in-dialog request must be refused (status, reason), or None to accept.

        ``source`` (IP, port) must be one of ``peers``: the right IP from another port is
        refused too, since accepting it would let a target refresh move the dialog there.
        ``check_port=False`` compares IPs only (TCP, where source ports are ephemeral).
        """
        if not self.matches(request):
            return 481, "Call/Transaction Does Not Exist"
        if source is not None and self.peers and _ip(source[0]) is not None:
            known = source in self.peers if check_port \
                else source[0] in {host for host, _ in self.peers}
            if not known:
                return 403, "Source address does not belong to this dialog"
        if request.method in ("ACK", "CANCEL"):
            return None
        seq = request.cseq.number
        if self.remote_seq is not None and seq <= self.remote_seq:
            return 500, "CSeq out of order"  # §12.2.2
        return None

    def accept(self, request: Request) -> DialogEvent:
        """Record an accepted in-dialog request and say what it means (call after vet)."""
        if request.method not in ("ACK", "CANCEL"):
            self.remote_seq = request.cseq.number
        method = request.method
        if method in ("INVITE", "UPDATE"):
            contact = request.contact
            if contact is not None:  # target refresh (§12.2.2)
                self.remote_target = contact.uri
                self._learn_hosts()
            return DialogEvent(InDialogKind.REINVITE if method == "INVITE"
                               else InDialogKind.UPDATE, request)
        if method == "INFO":
            parsed = parse_info_dtmf(request.content_type, request.body)
            if parsed is not None:
                return DialogEvent(InDialogKind.INFO_DTMF, request, digit=parsed[0],
                                   duration_ms=parsed[1])
        return DialogEvent(_BY_METHOD.get(method, InDialogKind.OTHER), request)

    def refresh_target(self, response: Response) -> None:
        """A 2xx to our re-INVITE/UPDATE may move the remote target (§12.2.1.2)."""
        contact = response.contact
        if contact is not None:
            self.remote_target = contact.uri
            self._learn_hosts()
