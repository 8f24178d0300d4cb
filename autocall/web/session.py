"""Console sessions: login and logout, the CSRF token, and login rate limiting.

The session is Starlette's ``SessionMiddleware``: a cookie signed with itsdangerous,
HttpOnly, SameSite=Lax (Secure when served over TLS), holding the user's name and a
per-session CSRF token. Every unsafe request that rides on the cookie (not on a bearer
token) must echo that token, as the ``csrf_token`` form field or the ``X-CSRF-Token``
header; SameSite already keeps the cookie off cross-site POSTs, the token covers
browsers and subdomains where it does not.

Failed logins are counted per user name and per source address in this process (a
console has few web nodes; each limits on its own); past the limit the answer is 429
with ``Retry-After``, whatever the password.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from starlette.middleware.sessions import SessionMiddleware

from autocall.web import accounts, limits
from autocall.web.auth import store_of
from autocall.web.problems import Problem

COOKIE = "autocall_session"
MAX_AGE = 12 * 3600  # a working day; log in again tomorrow
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def install(app: FastAPI, secret_key: str, *, https: bool = False) -> None:
    """Signed-cookie sessions on ``app``; every web node of one console needs the same key."""
    app.add_middleware(SessionMiddleware, secret_key=secret_key, session_cookie=COOKIE,
                       max_age=MAX_AGE, same_site="lax", https_only=https)


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use, e.g. when the login form is shown)."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def same_token(sent: str | None, expected: object) -> bool:
    """Constant-time comparison; any text may be sent (compare_digest refuses non-ASCII
    str, so bytes are compared)."""
    return (isinstance(expected, str) and bool(sent)
            and secrets.compare_digest(str(sent).encode(), expected.encode()))


async def csrf_protect(request: Request, *, form_field: bool = True) -> None:
    """Refuse (403) an unsafe request made with the session cookie but without its token.

    Requests that carry ``Authorization: Bearer`` are API clients, authenticated by that
    token (never by the cookie, see :func:`autocall.web.auth.principal`): no CSRF.
    ``form_field``: the token may come in the form (the console's pages); else only the
    header counts and no body is read.
    """
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if request.method in SAFE_METHODS or (scheme.lower() == "bearer" and token.strip()):
        return
    sent = request.headers.get(CSRF_HEADER)
    content_type = request.headers.get("content-type", "")
    if form_field and sent is None and content_type.startswith((
            "application/x-www-form-urlencoded", "multipart/form-data")):
        # Bounded: the route's body limit counts every byte read here, and the part
        # counts refuse a form of thousands of tiny parts (400) before it is all parsed.
        form = await request.form(max_files=limits.MAX_FORM_FILES,
                                  max_fields=limits.MAX_FORM_FIELDS,
                                  max_part_size=limits.MAX_FORM_PART)
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not same_token(sent, request.session.get("csrf")):
        raise Problem(403, "Forbidden", "the form is stale or did not come from this console "
                      "(CSRF token missing or wrong): reload the page and try again")


async def api_csrf_protect(request: Request) -> None:
    """:func:`csrf_protect` for the API: a request with no login at all is the route's to
    refuse (401 with ``WWW-Authenticate``), not this check's. The console's scripts send
    the token as ``X-CSRF-Token`` and no page form posts to ``/v1``: the header is the
    only place looked at, so this check reads no body (an upload route reads its own
    stream after it, issue 15)."""
    if request.session.get("user"):
        await csrf_protect(request, form_field=False)


@dataclass
class LoginLimiter:
    """Failed logins per key in a sliding window; ``retry_after`` > 0 means refuse."""

    per_user: int = 5
    per_address: int = 20
    window: float = 300.0
    clock: Callable[[], float] = time.monotonic
    max_keys: int = 10_000  # an attacker's invented names must not grow memory forever
    _fails: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)  # sync routes: threads

    def _recent(self, key: str) -> deque[float]:
        now = self.clock()
        times = self._fails.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def retry_after(self, user: str, address: str) -> float:
        """Seconds until a login for ``user`` from ``address`` may be tried again (0: now)."""
        waits = [0.0]
        with self._lock:
            for key, limit in ((f"u:{user}", self.per_user),
                               (f"a:{address}", self.per_address)):
                times = self._recent(key)
                if len(times) >= limit:
                    waits.append(times[len(times) - limit] + self.window - self.clock())
        return max(waits)

    def failed(self, user: str, address: str) -> None:
        now = self.clock()
        with self._lock:
            for key in (f"u:{user}", f"a:{address}"):
                times = self._fails.pop(key, None) or deque()
                times.append(now)
                self._fails[key] = times  # most recent last
            while len(self._fails) > self.max_keys:
                self._fails.popitem(last=False)

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._fails.pop(f"u:{user}", None)


def limiter_of(request: Request) -> LoginLimiter:
    limiter: LoginLimiter = request.app.state.login_limiter
    return limiter


def safe_next(target: str | None) -> str:
    """Where to go after login: a path on this site only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


@dataclass(frozen=True)
class Refused:
    """A login that did not happen: why, the HTTP status, and for 429 the wait."""

    status: int
    reason: str
    retry_after: int | None = None


def log_in(request: Request, username: str, password: str, csrf_sent: str
           ) -> accounts.Principal | Refused:
    """Check the CSRF token, the rate limit, then the password; on success the session
    starts afresh (new CSRF token) for that user and the login is audited.

    Blocking (argon2): call it from a thread, as a sync route does.
    """
    if not same_token(csrf_sent, request.session.get("csrf")):
        return Refused(403, "the login form had expired; please try again")
    limiter = limiter_of(request)
    user = username.strip().lower()
    address = request.client.host if request.client else "unknown"
    wait = limiter.retry_after(user, address)
    if wait <= 0:
        engine = store_of(request).engine
        who = accounts.check_password(engine, username.strip(), password)
        if who is not None:
            limiter.succeeded(user)
            request.session.clear()
            request.session["user"] = who.name
            csrf_token(request)
            with engine.begin() as conn:
                accounts.audit(conn, who, "login", who.name, address=address)
            return who
        limiter.failed(user, address)
        wait = limiter.retry_after(user, address)
        if wait <= 0:
            return Refused(401, "wrong user name or password")
    seconds = max(1, int(wait + 0.999))
    return Refused(429, f"too many failed logins: try again in {seconds} s", seconds)


def log_out(request: Request) -> None:
    request.session.clear()
