"""SDES: SRTP keys in SDP ``a=crypto`` lines (RFC 4568), and our SRTP policy (sans-I/O).

One ``a=crypto:<tag> <suite> inline:<key||salt>[|lifetime][|MKI:len] [session-params]``
line offers one way to protect the stream; the key in an SDP is the key its *sender*
encrypts with (RFC 4568 §6.1), so each side sends with its own key and receives with
the other's. The answer repeats the tag of the one offered line it accepts (§7.1.2).

We use the two suites every SDES carrier speaks, AES_CM_128_HMAC_SHA1_80 (preferred)
and AES_CM_128_HMAC_SHA1_32, with a single key per line (no MKI: libsrtp's Python
binding does not take one) and no session parameters but the WSH hint. Other lines
are skipped, not fatal, so an offer listing GCM or F8 suites first still finds ours.

Policy (``AUTOCALL_SRTP``), chosen to match what carriers and softphones do:

- ``off``: plain ``RTP/AVP``, no keys; an ``RTP/SAVP`` offer is refused (488).
- ``optional``: we offer ``RTP/AVP`` *with* ``a=crypto`` lines ("best effort SRTP", as
  baresip's ``mediaenc srtp``, FreeSWITCH and most SBCs do): a peer that knows SDES
  answers with a key and the media is encrypted, one that does not ignores the lines
  and the call goes on in plain RTP. Offering ``RTP/SAVP`` instead would make every
  plain-RTP carrier refuse the call (RFC 3264: an unknown profile gets port 0), and
  the standard way to offer both (RFC 5939 capability negotiation) is rarely
  implemented. We answer an ``RTP/SAVP`` offer with SRTP, and an ``RTP/AVP`` offer
  with keys with SRTP too.
- ``required``: we offer ``RTP/SAVP`` (``srtp-mand``); an answer or offer without a
  usable key is refused: 488, or a BYE when the 200 already came.

Keys travel in the SDP as clear text unless the signalling is encrypted, so SDES is
refused over UDP/TCP unless ``AUTOCALL_SRTP_CLEAR_KEYS=1`` says so knowingly.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass
from typing import Literal

__all__ = ["Crypto", "SrtpPolicy", "SrtpRefused", "SrtpMode", "SUITES", "PLAIN_PROFILES",
           "SECURE_PROFILES", "new_key", "parse_policy"]

SrtpMode = Literal["off", "optional", "required"]
MODES: tuple[SrtpMode, ...] = ("off", "optional", "required")
# Suite -> master key + salt length in bytes (RFC 4568 §6.2.1: 128-bit key, 112-bit salt).
SUITES = {"AES_CM_128_HMAC_SHA1_80": 30, "AES_CM_128_HMAC_SHA1_32": 30}
PLAIN_PROFILES = ("RTP/AVP", "RTP/AVPF")
SECURE_PROFILES = ("RTP/SAVP", "RTP/SAVPF")
_LIFETIME = re.compile(r"^(?:2\^(\d{1,2})|(\d{1,20}))$")
_MAX_LIFETIME = 1 << 48  # RFC 3711 §9.2: SRTP keys may protect at most 2^48 packets


class SrtpRefused(ValueError):
    """The SRTP policy refuses an offer or answer (488); the message says why."""


def new_key(suite: str) -> bytes:
    """A fresh master key + salt for ``suite`` from the system's CSPRNG."""
    return secrets.token_bytes(SUITES[suite])


@dataclass(frozen=True, slots=True)
class Crypto:
    """One usable ``a=crypto`` line: its tag, suite and the sender's master key + salt."""

    tag: int
    suite: str
    key: bytes

    @classmethod
    def parse(cls, value: str) -> Crypto | str:
        """Parse the value after ``a=crypto:``.

        Returns a Crypto, or a string saying why we cannot use the line (an unknown
        suite, an MKI, a session parameter we do not implement). ValueError for a line
        that breaks the grammar of RFC 4568 §9.1 (it names what is wrong).
        """
        parts = value.split()
        if len(parts) < 3:
            raise ValueError("a=crypto needs a tag, a suite and key parameters")
        tag_text, suite, key_params = parts[0], parts[1], parts[2]
        if not tag_text.isdigit() or len(tag_text) > 9:
            raise ValueError(f"crypto tag {tag_text[:20]!r} is not 1-9 digits")
        tag = int(tag_text)
        if suite not in SUITES:
            return f"tag {tag}: suite {suite[:40]} is not supported"
        if ";" in key_params:
            return f"tag {tag}: several keys (needs an MKI, which we do not use)"
        method, colon, info = key_params.partition(":")
        if method != "inline" or not colon:
            raise ValueError(f"crypto tag {tag}: key method must be inline:, "
                             f"got {key_params[:20]!r}")
        fields = info.split("|")
        try:
            key = base64.b64decode(fields[0], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"crypto tag {tag}: key is not base64") from None
        if len(key) != SUITES[suite]:
            raise ValueError(f"crypto tag {tag}: {suite} needs a {SUITES[suite]}-byte key "
                             f"and salt, got {len(key)} bytes")
        for extra in fields[1:]:
            if ":" in extra:
                return f"tag {tag}: an MKI is given, which we do not use"
            m = _LIFETIME.match(extra)
            if m is None:
                raise ValueError(f"crypto tag {tag}: lifetime {extra[:20]!r} is not a "
                                 "number or 2^n")
            lifetime = 1 << int(m.group(1)) if m.group(1) else int(m.group(2))
            if lifetime > _MAX_LIFETIME or lifetime < 1:
                raise ValueError(f"crypto tag {tag}: lifetime {extra[:20]} is out of range")
        for param in parts[3:]:
            if not param.startswith("WSH="):  # the window size is only a hint (§6.3.7)
                return f"tag {tag}: session parameter {param[:30]} is not supported"
        return cls(tag, suite, key)

    def __str__(self) -> str:
        """The value after ``a=crypto:``."""
        return f"{self.tag} {self.suite} inline:{base64.b64encode(self.key).decode()}"


@dataclass(frozen=True)
class SrtpPolicy:
    """When to use SRTP (see the module docstring) and which suites, best first."""

    mode: SrtpMode = "off"
    suites: tuple[str, ...] = tuple(SUITES)
    clear_keys: bool = False
    """Allow SDES keys over signalling that is not TLS (anyone on the path reads them)."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"AUTOCALL_SRTP={self.mode!r}: use off, optional or required")
        if not self.suites:
            raise ValueError("AUTOCALL_SRTP_SUITES is empty: name at least one of "
                             + ", ".join(SUITES))
        for suite in self.suites:
            if suite not in SUITES:
                raise ValueError(f"AUTOCALL_SRTP_SUITES: {suite!r} is not one of "
                                 + ", ".join(SUITES))

    @property
    def on(self) -> bool:
        return self.mode != "off"

    @property
    def offer_profile(self) -> str:
        return "RTP/SAVP" if self.mode == "required" else "RTP/AVP"

    def check_transport(self, transport: str) -> None:
        """ValueError when keys would cross the network in clear text."""
        if self.on and transport.lower() != "tls" and not self.clear_keys:
            raise ValueError(
                f"AUTOCALL_SRTP={self.mode} puts the SRTP keys in the SDP (RFC 4568), and "
                f"over {transport.lower()} anyone on the path reads them: use "
                "AUTOCALL_SIP_TRANSPORT=tls, or set AUTOCALL_SRTP_CLEAR_KEYS=1 to accept that")

    def offer(self, keys: dict[str, bytes]) -> list[Crypto]:
        """Our offer's lines: tag n for the n-th suite, each with our key for it."""
        if not self.on:
            return []
        return [Crypto(i, suite, keys[suite]) for i, suite in enumerate(self.suites, 1)]

    def answer(self, profile: str, offered: list[Crypto], ignored: list[str]) -> Crypto | None:
        """The offered line we accept (its key is the offerer's), or None for plain RTP.

        ValueError (→ 488) says why the offer cannot be answered under this policy.
        """
        secure = _profile(profile)
        if not self.on:
            if secure:
                raise SrtpRefused(f"{profile} (SRTP) offered but AUTOCALL_SRTP=off")
            return None
        for suite in self.suites:  # our preference among what was offered
            for c in offered:
                if c.suite == suite:
                    return c
        if secure or self.mode == "required":
            why = "; ".join(ignored) if ignored else "no a=crypto line"
            raise SrtpRefused(f"no usable SRTP key in the {profile} offer ({why}); we take "
                             + ", ".join(self.suites))
        return None

    def accept(self, ours: list[Crypto], profile: str, answered: list[Crypto],
               ignored: list[str]) -> Crypto | None:
        """The answer's line to our offer ``ours`` (its key is the answerer's), or None
        for plain RTP. ValueError (→ BYE, 488) when the answer breaks the policy."""
        if not ours:
            if _profile(profile):
                raise SrtpRefused(f"the answer is {profile} but we offered plain RTP")
            return None
        for c in answered:
            for mine in ours:
                if (c.tag, c.suite) == (mine.tag, mine.suite):
                    return c
        if answered or ignored:
            raise SrtpRefused("the answer's a=crypto matches no line of our offer "
                              "(tag and suite)")
        if self.mode == "required":
            raise SrtpRefused("the answer has no a=crypto key and AUTOCALL_SRTP=required")
        return None


def _profile(profile: str) -> bool:
    """True for an SRTP profile; ValueError for one we cannot speak."""
    if profile in SECURE_PROFILES:
        return True
    if profile in PLAIN_PROFILES:
        return False
    raise SrtpRefused(f"media profile {profile[:40]!r} is not supported (we speak RTP/AVP and "
                      "RTP/SAVP with SDES keys; DTLS-SRTP is not implemented)")


def parse_policy(mode: str, suites: str | None, clear_keys: bool) -> SrtpPolicy:
    """From the settings' text: ``AUTOCALL_SRTP``, ``AUTOCALL_SRTP_SUITES`` (comma list)."""
    names = tuple(s.strip().upper() for s in suites.split(",") if s.strip()) if suites \
        else tuple(SUITES)
    modes: dict[str, SrtpMode] = {m: m for m in MODES}
    m = modes.get(mode.strip().lower())
    if m is None:
        raise ValueError(f"AUTOCALL_SRTP={mode!r}: use off, optional or required")
    return SrtpPolicy(m, names, clear_keys)
