"""SRTP (RFC 3711) for one call's stream, through libsrtp (the ``pylibsrtp`` binding).

    keys = SrtpKeys("AES_CM_128_HMAC_SHA1_80", tx_key=ours, rx_key=theirs)   # 30 bytes each
    srtp = SrtpStream(keys)
    wire = srtp.protect(rtp_packet)          # encrypt + authentication tag
    rtp = srtp.unprotect(wire)               # SrtpError: forged, replayed or wrong key

The keys come from the SDP (`autocall.sip.sdes`): each side sends with the key of its
own ``a=crypto`` line and receives with the other's. One libsrtp session sends (our one
SSRC) and another receives (any SSRC the peer uses: a new SSRC after a transfer or a
source switch starts its own rollover counter, as RFC 3711 §3.3.1 wants).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pylibsrtp

__all__ = ["SrtpError", "SrtpKeys", "SrtpStream", "PROFILES", "PROTECT_ERRORS"]

PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}
_KEY_LEN = 30  # 128-bit master key + 112-bit master salt
PROTECT_ERRORS = (pylibsrtp.Error, ValueError)
"""What ``SrtpStream.protect`` may raise (a key past its packet limit): drop the packet."""


class SrtpError(ValueError):
    """A packet that does not authenticate (or cannot be protected): drop it."""


@dataclass(frozen=True, slots=True)
class SrtpKeys:
    """The suite both sides agreed and the master key + salt of each direction."""

    suite: str
    tx_key: bytes = field(repr=False)
    rx_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if self.suite not in PROFILES:
            raise ValueError(f"SRTP suite {self.suite!r} is not one of " + ", ".join(PROFILES))
        for name, key in (("tx_key", self.tx_key), ("rx_key", self.rx_key)):
            if len(key) != _KEY_LEN:
                raise ValueError(f"SRTP {name} must be {_KEY_LEN} bytes (key + salt), "
                                 f"got {len(key)}")


class SrtpStream:
    """Protect what we send and unprotect what we receive with one call's keys."""

    __slots__ = ("keys", "_tx", "_rx", "protect", "_unprotect")

    def __init__(self, keys: SrtpKeys, *, keep_tx: SrtpStream | None = None) -> None:
        self.keys = keys
        profile = PROFILES[keys.suite]
        self._tx: pylibsrtp.Session
        if keep_tx is not None:
            self._tx = keep_tx._tx
        else:
            self._tx = pylibsrtp.Session(pylibsrtp.Policy(
                key=keys.tx_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                srtp_profile=profile))
        self._rx = pylibsrtp.Session(pylibsrtp.Policy(
            key=keys.rx_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile))
        self.protect = self._tx.protect
        """RTP packet (bytes) → SRTP packet; bound straight to libsrtp (the hot path)."""
        self._unprotect = self._rx.unprotect

    def rekeyed(self, keys: SrtpKeys) -> SrtpStream:
        """The stream with new keys. When only the far end's key changed (a transfer, a
        re-offer) our sending session goes on: a new one would restart its rollover
        counter under the same key and SSRC, and after 2^16 packets repeat keystream."""
        same_tx = (keys.suite, keys.tx_key) == (self.keys.suite, self.keys.tx_key)
        return SrtpStream(keys, keep_tx=self if same_tx else None)

    def unprotect(self, packet: bytes) -> bytes:
        """SRTP packet → RTP packet; SrtpError when it fails authentication or replays."""
        try:
            return self._unprotect(packet)
        except pylibsrtp.Error as exc:
            raise SrtpError(f"SRTP packet of {len(packet)} bytes refused: {exc}") from None
        except ValueError as exc:  # longer than libsrtp's buffer
            raise SrtpError(str(exc)) from None
