"""Digest authentication for SIP (RFC 7616 with RFC 2617 compatibility, RFC 3261 §22).

The client side answers 401 (WWW-Authenticate → Authorization) and 407
(Proxy-Authenticate → Proxy-Authorization) with MD5 or SHA-256 and qop=auth,
counting nonces. ``Credentials`` never shows the password in ``repr`` so it cannot
leak into logs.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

from autocall.sip.message import _split_outside_quotes, quote, unquote

__all__ = ["Credentials", "Challenge", "parse_challenge", "DigestClient"]

_ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    realm: str | None = None  # None: answer any realm

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***)"


@dataclass(frozen=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False


def parse_challenge(value: str) -> Challenge:
    """Parse a ``Digest realm=…, nonce=…`` challenge; ValueError if not Digest."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise ValueError(f"unsupported auth scheme {scheme!r}")
    params: dict[str, str] = {}
    for part in _split_outside_quotes(rest, ","):
        name, eq, val = part.strip().partition("=")
        if eq:
            params[name.strip().lower()] = unquote(val)
    if "nonce" not in params or "realm" not in params:
        raise ValueError("digest challenge without realm or nonce")
    algorithm = params.get("algorithm", "MD5").upper()
    qop = tuple(q.strip() for q in params.get("qop", "").split(",") if q.strip())
    return Challenge(params["realm"], params["nonce"], algorithm, qop, params.get("opaque"),
                     params.get("stale", "").lower() == "true")


def _h(algorithm: str, text: str) -> str:
    return _ALGORITHMS[algorithm](text.encode()).hexdigest()


def digest_response(challenge: Challenge, creds: Credentials, method: str, uri: str,
                    nc: int, cnonce: str) -> str:
    """The ``response`` value of RFC 7616 §3.4.1 (qop=auth) or RFC 2617 §3.2.2.1 (no qop)."""
    alg = challenge.algorithm
    ha1 = _h(alg, f"{creds.username}:{challenge.realm}:{creds.password}")
    ha2 = _h(alg, f"{method}:{uri}")
    if "auth" in challenge.qop:
        return _h(alg, f"{ha1}:{challenge.nonce}:{nc:08x}:{cnonce}:auth:{ha2}")
    return _h(alg, f"{ha1}:{challenge.nonce}:{ha2}")


class DigestClient:
    """Remembers challenges per realm and builds authorization headers (nonce count)."""

    def __init__(self, creds: Credentials) -> None:
        self.creds = creds
        self._nc: dict[str, int] = {}

    def authorize(self, status: int, challenge_header: str, method: str,
                  uri: str) -> tuple[str, str] | None:
        """Header (name, value) answering a 401/407, or None if we cannot answer it."""
        try:
            ch = parse_challenge(challenge_header)
        except ValueError:
            return None
        if ch.algorithm not in _ALGORITHMS:
            return None
        if ch.qop and "auth" not in ch.qop:
            return None
        if self.creds.realm is not None and self.creds.realm != ch.realm:
            return None
        nc = self._nc.get(ch.nonce, 0) + 1
        self._nc[ch.nonce] = nc
        cnonce = secrets.token_hex(8)
        resp = digest_response(ch, self.creds, method, uri, nc, cnonce)
        parts = [
            f"username={quote(self.creds.username)}",
            f"realm={quote(ch.realm)}",
            f"nonce={quote(ch.nonce)}",
            f"uri={quote(uri)}",
            f"response={quote(resp)}",
            f"algorithm={ch.algorithm}",
        ]
        if "auth" in ch.qop:
            parts += ["qop=auth", f"nc={nc:08x}", f"cnonce={quote(cnonce)}"]
        if ch.opaque is not None:
            parts.append(f"opaque={quote(ch.opaque)}")
        name = "Proxy-Authorization" if status == 407 else "Authorization"
        return name, "Digest " + ", ".join(parts)

    @staticmethod
    def challenge_headers(response_status: int) -> str:
        return "Proxy-Authenticate" if response_status == 407 else "WWW-Authenticate"
