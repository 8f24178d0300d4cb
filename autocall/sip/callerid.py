"""Where a trunk reads the caller ID of a call we place: sans-I/O, no sockets, no clock.

Carriers and PBXs differ in the header they take the calling number from:

- ``from``: the user part of the From URI (RFC 3261 §20.20), with the caller ID as the
  display name. The default, and what a PBX with no trust settings uses.
- ``pai``: a ``P-Asserted-Identity`` header (RFC 3325 §9.1) inside a trust domain; the
  From keeps the account's own user, which the trunk authenticates.
- ``rpid``: a ``Remote-Party-ID`` header (draft-ietf-sip-privacy-04 §6, never an RFC but
  still read by older gear) with ``party=calling``; the From keeps the account's user.

:func:`caller_id_plan` turns a style, a caller ID and the account into what the INVITE
carries: the From user and display name and the extra headers. A caller ID that is not a
valid URI user part (RFC 3261 §25.1) or a display name with control characters is a
``ValueError`` saying which, never a header that could split the message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from autocall.sip.message import URI, Address


class CallerIdStyle(StrEnum):
    """The header a trunk takes the calling number from."""

    FROM = "from"
    PAI = "pai"
    RPID = "rpid"


IDENTITY_HEADERS = ("P-Asserted-Identity", "Remote-Party-ID")
"""The headers a caller-ID style may add; a transferred call's new leg carries them on."""

STYLE_HELP = (
    "from (the From user), pai (P-Asserted-Identity, RFC 3325) or rpid "
    "(Remote-Party-ID, draft-ietf-sip-privacy-04)"
)


def parse_style(text: str) -> CallerIdStyle:
    """``from``/``pai``/``rpid`` (also the header names, any case); ValueError otherwise."""
    value = text.strip().lower()
    aliases = {"p-asserted-identity": "pai", "remote-party-id": "rpid", "from-user": "from"}
    value = aliases.get(value, value)
    try:
        return CallerIdStyle(value)
    except ValueError:
        raise ValueError(f"caller-ID header {text!r}: use {STYLE_HELP}") from None


# RFC 3261 §25.1: user = 1*( unreserved / escaped / user-unreserved ); escapes (%xx) are
# left out: a caller ID has no use for them and they would hide what is sent.
_USER = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/]{1,64}")
_DISPLAY_MAX = 64


def check_caller_id(caller_id: str) -> str:
    """``caller_id`` if it can be a SIP URI user part, else ValueError saying why."""
    if not _USER.fullmatch(caller_id):
        raise ValueError(
            f"caller ID {caller_id!r} cannot be a SIP URI user: use 1 to 64 "
            "digits, letters or + - _ . ! ~ * ' ( ) & = $ , ; ? / "
            "(RFC 3261 §25.1), e.g. +15550100"
        )
    return caller_id


def check_display(display: str) -> str:
    """``display`` if it can be a quoted display name, else ValueError saying why."""
    if len(display) > _DISPLAY_MAX or any(ord(c) < 0x20 or ord(c) == 0x7F for c in display):
        raise ValueError(
            f"caller name {display!r}: at most {_DISPLAY_MAX} characters and no "
            "control characters (a line break would split the SIP message)"
        )
    return display


@dataclass(frozen=True, slots=True)
class CallerIdPlan:
    """What an INVITE carries for one caller ID: the From user and display name (None:
    the agent's own) and the extra headers, in order."""

    from_user: str | None
    display: str | None
    headers: list[tuple[str, str]] = field(default_factory=list)


def caller_id_plan(
    style: CallerIdStyle,
    caller_id: str | None,
    display: str | None,
    *,
    account_user: str,
    domain: str,
) -> CallerIdPlan:
    """The From user, display name and headers that carry ``caller_id`` in ``style``.

    ``account_user`` is the user the trunk knows us by (From with ``pai``/``rpid``);
    ``domain`` the host of the identity URIs (the trunk's domain). No caller ID: the
    account's own From, no identity header, whatever the style.
    """
    if display is not None:
        check_display(display)
    if caller_id is None:
        return CallerIdPlan(None, display)
    check_caller_id(caller_id)
    shown = display if display is not None else caller_id
    if style is CallerIdStyle.FROM:
        return CallerIdPlan(caller_id, shown)
    identity = Address(URI("sip", caller_id, domain), shown)
    if style is CallerIdStyle.PAI:
        # RFC 3325 §9.1: PAssertedID-value = name-addr / addr-spec
        return CallerIdPlan(account_user, None, [("P-Asserted-Identity", str(identity))])
    # draft-ietf-sip-privacy-04 §6: rpid-token; party=calling for the caller, screen=no
    # (we assert it, no network screened it), privacy=off (show it).
    rpid = Address(identity.uri, shown, {"party": "calling", "screen": "no", "privacy": "off"})
    return CallerIdPlan(account_user, None, [("Remote-Party-ID", str(rpid))])
