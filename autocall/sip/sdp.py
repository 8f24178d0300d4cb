"""SDP offer/answer for one audio stream (RFC 4566 syntax, RFC 3264 negotiation).

We speak G.711 (PCMU 0, PCMA 8), G.722 (9, wideband) and telephone-event (RFC 4733).
Which codecs, and in which order we offer them, is the caller's list (``AUTOCALL_CODECS``,
default PCMU then PCMA: G.722 only when asked for). G.722's rtpmap says 8000 although
its audio is 16 kHz: RFC 3551 §4.5.2 fixes its RTP clock at 8000 Hz (an early error
kept for compatibility), so we write and accept ``G722/8000``. When answering we take
the first format of the offer that is in our list (RFC 3264 §6.1: the offerer's
preference), so a peer that offers G.722 first gets it if we allow it. We offer
telephone-event on 101 but accept it at whatever dynamic payload type the peer uses,
since peers differ (SIPp's play_dtmf uses 96). ptime is 20 ms. The m-line's profile
(RTP/AVP or RTP/SAVP) and its ``a=crypto`` lines are parsed here and judged by the SRTP
policy of `autocall.sip.sdes` when ``negotiate`` is given one.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from autocall.sip.sdes import Crypto, SrtpPolicy

__all__ = ["Sdp", "Media", "Negotiated", "KNOWN", "SUPPORTED", "build_sdp", "parse_codecs",
           "parse_sdp", "negotiate", "answer_direction"]

STATIC = {0: ("PCMU", 8000), 8: ("PCMA", 8000), 9: ("G722", 8000)}  # RFC 3551 Table 4
KNOWN = {"PCMU": 0, "PCMA": 8, "G722": 9}
"""Every codec we can speak, with its static payload type (RFC 3551 Table 4)."""
SUPPORTED = ("PCMU", "PCMA")
"""The default list: G.711 only (ITU-T G.711), μ-law first."""
OFFER_DTMF_PT = 101
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


@dataclass
class Media:
    port: int
    formats: list[int]
    rtpmap: dict[int, tuple[str, int]] = field(default_factory=dict)
    fmtp: dict[int, str] = field(default_factory=dict)
    address: str | None = None
    direction: str | None = None
    ptime: int | None = None
    profile: str = "RTP/AVP"
    crypto: list[Crypto] = field(default_factory=list)
    """Usable ``a=crypto`` lines (RFC 4568), in the sender's order."""
    crypto_ignored: list[str] = field(default_factory=list)
    """Why other ``a=crypto`` lines cannot be used (unknown suite, MKI...)."""

    def codec_name(self, pt: int) -> tuple[str, int] | None:
        if pt in self.rtpmap:
            return self.rtpmap[pt]
        return STATIC.get(pt)


@dataclass
class Sdp:
    address: str
    session_id: int
    version: int
    audio: Media | None
    direction: str = "sendrecv"

    @property
    def connection(self) -> tuple[str, int]:
        """Where to send RTP; a 0.0.0.0 address or port 0 means hold/rejected (RFC 3264 §8.4)."""
        assert self.audio is not None
        return (self.audio.address or self.address, self.audio.port)

    @property
    def media_direction(self) -> str:
        if self.audio is not None and self.audio.direction:
            return self.audio.direction
        if self.audio is not None and (self.audio.address or self.address) == "0.0.0.0":
            return "sendonly"
        return self.direction


@dataclass(frozen=True)
class Negotiated:
    """What both sides agreed: codec, DTMF payload type, remote RTP address, direction."""

    pt: int
    codec: str
    dtmf_pt: int | None
    remote: tuple[str, int]
    direction: str
    ptime: int = 20
    profile: str = "RTP/AVP"
    crypto: Crypto | None = None
    """The far end's SRTP key line (it encrypts with it); None: plain RTP."""


def parse_codecs(text: str, where: str = "AUTOCALL_CODECS") -> tuple[str, ...]:
    """``pcmu,pcma,g722`` → ("PCMU", "PCMA", "G722"): the codecs we allow, in offer order.
    ValueError names ``where``, the unknown name and the choices."""
    names: list[str] = []
    for raw in text.split(","):
        name = raw.strip().upper().replace(".", "")
        if not name:
            continue
        if name not in KNOWN:
            raise ValueError(f"{where}={text!r}: unknown codec {raw.strip()!r}; use a "
                             "comma-separated list of pcmu, pcma, g722 (e.g. g722,pcmu,pcma)")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(f"{where}={text!r}: name at least one codec (pcmu, pcma, g722)")
    return tuple(names)


def build_sdp(address: str, port: int, *, session_id: int, version: int,
              codecs: list[tuple[int, str]] | None = None, dtmf_pt: int | None = OFFER_DTMF_PT,
              direction: str = "sendrecv", ptime: int = 20, profile: str = "RTP/AVP",
              crypto: list[Crypto] | None = None) -> bytes:
    """An SDP body with one audio m-line; ``codecs`` is [(pt, name)] in preference order,
    ``crypto`` the SDES lines carrying our SRTP keys (RFC 4568)."""
    if codecs is None:
        codecs = [(0, "PCMU"), (8, "PCMA")]
    fmts = [pt for pt, _ in codecs] + ([dtmf_pt] if dtmf_pt is not None else [])
    lines = [
        "v=0",
        f"o=autocall {session_id} {version} IN IP4 {address}",
        "s=autocall",
        f"c=IN IP4 {address}",
        "t=0 0",
        f"m=audio {port} {profile} {' '.join(map(str, fmts))}",
    ]
    for pt, name in codecs:
        lines.append(f"a=rtpmap:{pt} {name}/8000")
    if dtmf_pt is not None:
        lines.append(f"a=rtpmap:{dtmf_pt} telephone-event/8000")
        lines.append(f"a=fmtp:{dtmf_pt} 0-16")
    lines.append(f"a=ptime:{ptime}")
    lines.append(f"a={direction}")
    lines.extend(f"a=crypto:{c}" for c in crypto or ())
    return ("\r\n".join(lines) + "\r\n").encode()


def parse_sdp(body: bytes) -> Sdp:
    """Parse the session and its first audio stream; ValueError names the bad line."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("SDP is not UTF-8") from None
    address = ""
    session_id = version = 0
    direction = "sendrecv"
    audio: Media | None = None
    in_audio = seen_media = False
    for lineno, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
        line = line.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise ValueError(f"SDP line {lineno}: expected 'x=value', got {line[:40]!r}")
        kind, value = line[0], line[2:]
        try:
            if kind == "o":
                parts = value.split()
                session_id, version = int(parts[1]), int(parts[2])
            elif kind == "c":
                parts = value.split()
                if len(parts) < 3 or parts[0] != "IN":
                    raise ValueError("bad c= line")
                addr = parts[2].split("/")[0]
                try:  # RFC 4566 §5.7 allows a host name; we send media to addresses only
                    ipaddress.ip_address(addr)
                except ValueError:
                    raise ValueError(f"connection address {addr[:40]!r} is not an IP address") \
                        from None
                if in_audio and audio is not None:
                    audio.address = addr
                elif not seen_media:
                    address = addr
            elif kind == "m":
                seen_media = True
                parts = value.split()
                if parts[0] == "audio" and audio is None:
                    port = int(parts[1].split("/")[0])
                    if not 0 <= port < 65536:
                        raise ValueError("port out of range")
                    audio = Media(port, [int(p) for p in parts[3:] if p.isdigit()],
                                  profile=parts[2])
                    in_audio = True
                else:
                    in_audio = False
            elif kind == "a":
                name, _, arg = value.partition(":")
                if name in DIRECTIONS:
                    if in_audio and audio is not None:
                        audio.direction = name
                    elif not seen_media:
                        direction = name
                elif in_audio and audio is not None:
                    if name == "rtpmap":
                        pt_text, _, enc = arg.partition(" ")
                        enc_name, _, rate = enc.strip().partition("/")
                        audio.rtpmap[int(pt_text)] = (enc_name, int(rate.split("/")[0] or 8000))
                    elif name == "fmtp":
                        pt_text, _, params = arg.partition(" ")
                        audio.fmtp[int(pt_text)] = params.strip()
                    elif name == "ptime":
                        audio.ptime = int(float(arg))
                    elif name == "crypto":
                        crypto = Crypto.parse(arg)
                        if isinstance(crypto, Crypto):
                            audio.crypto.append(crypto)
                        else:
                            audio.crypto_ignored.append(crypto)
        except (IndexError, ValueError) as exc:
            raise ValueError(f"SDP line {lineno} ({line[:40]!r}): {exc}") from None
    return Sdp(address, session_id, version, audio, direction)


def answer_direction(offered: str) -> str:
    """RFC 3264 §6.1: mirror sendonly/recvonly."""
    return {"sendonly": "recvonly", "recvonly": "sendonly"}.get(offered, offered)


def negotiate(offer: Sdp, supported: tuple[str, ...] = SUPPORTED, *,
              srtp: SrtpPolicy | None = None, ours: list[Crypto] | None = None) -> Negotiated:
    """Pick the first offered codec we support and the peer's telephone-event PT.

    Used both for an answer we build (offer from the peer) and for a peer's answer to
    our offer. ValueError (→ 488) if nothing is common. With ``srtp`` the SRTP policy
    decides too: ``ours`` None means ``offer`` is the far end's offer, else it is the
    answer to our offer, whose crypto lines were ``ours``.
    """
    if offer.audio is None:
        raise ValueError("no audio stream in SDP")
    media = offer.audio
    codec: tuple[int, str] | None = None
    dtmf_pt: int | None = None
    for pt in media.formats:
        desc = media.codec_name(pt)
        if desc is None:
            continue
        name, rate = desc
        if name.lower() == "telephone-event" and rate == 8000 and dtmf_pt is None:
            dtmf_pt = pt
        elif codec is None and rate == 8000 and name.upper() in supported \
                and pt == KNOWN[name.upper()]:
            # Our encoders are bound to the static numbers (RFC 3551 Table 4); a codec
            # rtpmapped to another number (or G722/16000, which §4.5.2 rules out) is skipped.
            codec = (pt, name.upper())
    if codec is None:
        raise ValueError("no common codec (we support " + ", ".join(supported) + ")")
    direction = offer.media_direction
    if media.port == 0:
        direction = "inactive"
    crypto = None
    if srtp is not None:
        if ours is None:
            crypto = srtp.answer(media.profile, media.crypto, media.crypto_ignored)
        else:
            crypto = srtp.accept(ours, media.profile, media.crypto, media.crypto_ignored)
    return Negotiated(codec[0], codec[1], dtmf_pt, offer.connection, direction,
                      media.ptime or 20, media.profile, crypto)
