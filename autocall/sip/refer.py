"""Being transferred (RFC 3515, we are the REFER's recipient): the pure part, sans-I/O.

``check_refer`` decides whether we follow a REFER: exactly one Refer-To, a sip:/sips:/tel:
URI, no Replaces, INVITE only, and a call that can take it; else ``ReferRefused`` says
with which status we decline (§2.4.2: following any target would let whoever reaches the
dialog dial through our trunk). ``notify_request`` builds the NOTIFYs of the implicit
subscription (§2.4.4–§2.4.7) that ``ua.ReferSubscription`` sends in order.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from autocall.sip.dialog import Dialog
from autocall.sip.message import URI, Address, Request, Response, printable, split_list

__all__ = ["REFER_SCHEMES", "SIPFRAG", "REFER_EXPIRES", "ReferRefused", "ReferTarget",
           "parse_refer", "check_refer", "sipfrag", "notify_request"]

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


def check_refer(request: Request, *, tel_routable: bool, busy: bool,
                confirmed: bool) -> ReferTarget:
    """``parse_refer``, then what the call allows: a tel: target needs a trunk to route it,
    one transfer at a time, and only on an established call (603 otherwise, §2.4.2)."""
    target = parse_refer(request)
    if target.uri.scheme == "tel" and not tel_routable:
        raise ReferRefused(603, "No route for a tel: target")
    if busy:
        raise ReferRefused(603, "A transfer is already in progress")
    if not confirmed:
        raise ReferRefused(603, "Call not established")
    return target


def sipfrag(status: int, reason: str | None = None) -> bytes:
    """A message/sipfrag body of one status line (RFC 3420), as RFC 3515 §2.4.5 NOTIFYs carry."""
    text = printable(reason if reason is not None else Response(status).reason, 120)
    return f"SIP/2.0 {status} {text}\r\n".encode()


def notify_request(dialog: Dialog, via: str, contact: str, event_id: int, status: int,
                   reason: str | None) -> Request:
    """The NOTIFY reporting ``status`` (Event: refer;id=<REFER CSeq>, §2.4.6); a final
    status ends the subscription with ``terminated;reason=noresource`` (§2.4.7)."""
    state = "terminated;reason=noresource" if status >= 200 \
        else f"active;expires={REFER_EXPIRES}"
    return dialog.new_request(
        "NOTIFY", via, contact=contact, body=sipfrag(status, reason), content_type=SIPFRAG,
        extra=[("Event", f"refer;id={event_id}"), ("Subscription-State", state)])
