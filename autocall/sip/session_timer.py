"""Session timers (RFC 4028): a call is refreshed every so often, or it ends.

Carriers drop a call that nobody refreshes after the negotiated interval (often 15–30
minutes), and a robot must end a call whose far end vanished without a BYE. The
``refresher`` of an interval is named by transaction role (``uac``: whoever sent the
request that set it), so each side works out from its role whether it refreshes (at half
the interval, §10) or waits for refreshes and sends BYE shortly before the interval ends
(the lesser of 32 s and a third of it, §10). Pure functions over headers and numbers;
``invite.InviteUsage`` keeps the deadlines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from autocall.sip.message import Headers, Request, Response, split_list

__all__ = ["Interval", "TimerPolicy", "TooSmall", "Role", "MIN_SE", "answer_headers",
           "interval_of", "min_se_of", "next_deadlines", "refresh_headers", "request_headers",
           "supports_timer", "granted"]

Role = Literal["uac", "uas"]
MIN_SE = 90
"""§4: no session interval may be shorter (seconds); tests may configure less."""
_SE = re.compile(r"^\s*(\d{1,9})\s*(?:;(.*))?$")
_MIN_SE = re.compile(r"^\s*(\d{1,9})\s*(?:;.*)?$")


@dataclass(frozen=True)
class TimerPolicy:
    """What we ask for (``interval``: 1800 s, as §4 recommends) and the least interval we
    accept (``min_se``: 90 s, §5). Values below 90 s break the RFC: for tests only."""

    interval: int = 1800
    min_se: int = MIN_SE

    def __post_init__(self) -> None:
        if self.min_se < 1 or self.interval < self.min_se:
            raise ValueError(f"session timer: need 1 <= Min-SE ({self.min_se}) <= "
                             f"Session-Expires ({self.interval}) seconds")


@dataclass(frozen=True)
class Interval:
    """A negotiated session interval and who refreshes it, by transaction role."""

    seconds: int
    refresher: Role | None


class TooSmall(ValueError):
    """The request's Session-Expires is below our Min-SE: answer 422 with ``min_se``."""

    def __init__(self, min_se: int) -> None:
        super().__init__(f"Session-Expires below Min-SE {min_se}")
        self.min_se = min_se


def interval_of(msg: Request | Response) -> Interval | None:
    """The Session-Expires header (compact ``x`` too), or None; ValueError if malformed."""
    raw = msg.headers.get("Session-Expires")
    if raw is None:
        return None
    match = _SE.match(raw)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"bad Session-Expires {raw[:80]!r}: expected seconds > 0")
    refresher: Role | None = None
    for param in (match.group(2) or "").split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "refresher":
            value = value.strip().lower()
            if value not in ("uac", "uas"):
                raise ValueError(f"bad refresher in Session-Expires {raw[:80]!r}")
            refresher = "uac" if value == "uac" else "uas"
    return Interval(int(match.group(1)), refresher)


def min_se_of(msg: Request | Response) -> int | None:
    """The Min-SE header in seconds, or None if absent; ValueError if malformed."""
    raw = msg.headers.get("Min-SE")
    if raw is None:
        return None
    match = _MIN_SE.match(raw)
    if match is None:
        raise ValueError(f"bad Min-SE {raw[:80]!r}: expected seconds")
    return int(match.group(1))


def supports_timer(msg: Request | Response) -> bool:
    """Whether ``Supported`` (compact ``k``) lists ``timer``."""
    return any(v.strip().lower() == "timer" for raw in msg.headers.get_all("Supported")
               for v in split_list(raw))


def request_headers(policy: TimerPolicy, floor: int = 0) -> list[tuple[str, str]]:
    """For an INVITE we send (§7.1): the interval we want, raised to what a 422 asked for
    (``floor``, §7.4), and the least we accept, which is also what the 422 asked for."""
    min_se = max(policy.min_se, floor)
    return [("Supported", "timer"), ("Session-Expires", str(max(policy.interval, min_se))),
            ("Min-SE", str(min_se))]


def refresh_headers(interval: int, min_se: int,
                    refresher: Role = "uac") -> list[tuple[str, str]]:
    """For a re-INVITE or UPDATE we send (§7.4): the running interval, refreshed by us
    (``uac``: we are this request's UAC) or, for a request the application sends while
    the far end is the refresher, still by the far end (``uas``)."""
    return [("Supported", "timer"), ("Session-Expires", f"{interval};refresher={refresher}"),
            ("Min-SE", str(min_se))]


def answer_headers(request: Request, policy: TimerPolicy,
                   current: int | None = None) -> tuple[Headers, Interval]:
    """For our 2xx to an INVITE, re-INVITE or UPDATE (§9): the interval the request asked
    for with the refresher it named; else the UAC refreshes if it supports timers, we do
    if not. A request without Session-Expires gets ours (``current`` when a session is
    running, else the policy's), never below its Min-SE. Raises ``TooSmall`` for an
    interval under our Min-SE from a UAC that can retry (one without timer support gets
    our Min-SE instead, as a proxy would raise it, §8.1), ValueError for a malformed
    header."""
    asked = interval_of(request)
    supported = supports_timer(request)
    if asked is None:
        floor = min_se_of(request) or 0
        seconds = max(current or policy.interval, floor, policy.min_se)
        refresher: Role = "uac" if supported else "uas"
    else:
        seconds = asked.seconds
        if seconds < policy.min_se:
            if supported:
                raise TooSmall(policy.min_se)
            seconds = policy.min_se
        # A UAC naming itself the refresher knows timers even without Supported: timer.
        refresher = asked.refresher or ("uac" if supported else "uas")
    headers = Headers([("Supported", "timer"),
                       ("Session-Expires", f"{seconds};refresher={refresher}")])
    if refresher == "uac":
        headers.add("Require", "timer")  # §9: the UAC must know it is the refresher
    return headers, Interval(seconds, refresher)


def granted(response: Response, policy: TimerPolicy) -> Interval | None:
    """The interval a 2xx to our INVITE or refresh grants (§7.2): None turns the timer
    off (the far end or its proxies do not do timers). A missing refresher leaves it to us
    (the UAC: a refresh too many harms nobody), and an interval under our Min-SE is raised
    to it, so a hostile ``Session-Expires: 1`` cannot make us refresh twice a second.
    ValueError for a malformed header."""
    interval = interval_of(response)
    if interval is None:
        return None
    return Interval(max(interval.seconds, policy.min_se), interval.refresher or "uac")


def next_deadlines(interval: Interval, role: Role, since: float) -> tuple[float | None, float]:
    """After an interval was set at ``since`` by a transaction in which we had ``role``:
    when we refresh (half the interval, §10; None if the other side refreshes), and when
    we send BYE if no refresh succeeded by then (the interval less the lesser of 32 s and
    a third of it, §10)."""
    seconds = interval.seconds
    refresh = since + seconds / 2 if interval.refresher == role else None
    return refresh, since + seconds - min(32.0, seconds / 3)
