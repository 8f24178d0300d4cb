"""Settings: trunk, credentials, paths and defaults.

Values come from the environment (``AUTOCALL_*``) so secrets never sit on a command
line; a password can also come from a file (``AUTOCALL_SIP_PASSWORD_FILE``), the
usual way container secrets are mounted.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from autocall.sip.callerid import CallerIdStyle, parse_style
from autocall.sip.sdes import SrtpPolicy, parse_policy
from autocall.sip.sdp import SUPPORTED, parse_codecs
from autocall.sip.tls import TlsSettings

if TYPE_CHECKING:
    from autocall.trunks import Trunk


def parse_nameserver(text: str) -> tuple[str, int]:
    """``127.0.0.1`` or ``127.0.0.1:5353``."""
    host, colon, port = text.strip().rpartition(":")
    if not colon:
        return text.strip(), 53
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad DNS server {text!r}: expected ADDRESS or ADDRESS:PORT")
    return host, int(port)


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _seconds(name: str, default: int) -> int:
    """A whole number of seconds from ``name``; ValueError saying which variable is bad."""
    raw = _env(name)
    if raw is None:
        return default
    if not raw.strip().isdigit():
        raise ValueError(f"{name}={raw!r}: expected a whole number of seconds")
    return int(raw)


def _days(name: str) -> int | None:
    """A whole number of days (1 or more) from ``name``, or None when unset."""
    raw = _env(name)
    if raw is None or not raw.strip():
        return None
    if not raw.strip().isdigit() or int(raw) < 1:
        raise ValueError(f"{name}={raw!r}: expected a whole number of days, 1 or more "
                         "(unset it to keep recordings for ever)")
    return int(raw)


def _flag(name: str, default: bool) -> bool:
    """A yes/no setting; anything but 1/0, true/false, yes/no, on/off is refused by name."""
    raw = _env(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={raw!r}: expected 1 or 0 (true/false, yes/no, on/off)")


def tls_from_env() -> TlsSettings:
    """SIP over TLS settings: ``AUTOCALL_SIP_TLS_CA_FILE`` (CAs to trust, PEM; default the
    system's), ``AUTOCALL_SIP_TLS_CERT_FILE`` and ``AUTOCALL_SIP_TLS_KEY_FILE`` (ours, for
    mutual TLS and for serving), ``AUTOCALL_SIP_TLS_SERVER_NAME`` (the name the trunk's
    certificate carries, sent as SNI) and ``AUTOCALL_SIP_TLS_VERIFY`` (default 1)."""
    def path(name: str) -> Path | None:
        value = _env(name)
        return Path(value) if value is not None else None

    return TlsSettings(
        verify=_flag("AUTOCALL_SIP_TLS_VERIFY", True),
        ca_file=path("AUTOCALL_SIP_TLS_CA_FILE"),
        cert_file=path("AUTOCALL_SIP_TLS_CERT_FILE"),
        key_file=path("AUTOCALL_SIP_TLS_KEY_FILE"),
        server_name=_env("AUTOCALL_SIP_TLS_SERVER_NAME"),
    )


def srtp_from_env() -> SrtpPolicy:
    """SRTP with SDES keys (see `autocall.sip.sdes`): ``AUTOCALL_SRTP`` off (default),
    optional or required; ``AUTOCALL_SRTP_SUITES`` the suites in order (default
    AES_CM_128_HMAC_SHA1_80,AES_CM_128_HMAC_SHA1_32); ``AUTOCALL_SRTP_CLEAR_KEYS=1``
    allows keys over signalling that is not TLS."""
    return parse_policy(_env("AUTOCALL_SRTP", "off") or "off", _env("AUTOCALL_SRTP_SUITES"),
                        _flag("AUTOCALL_SRTP_CLEAR_KEYS", False))


def secret(name: str) -> str | None:
    """Read ``NAME`` or the file named by ``NAME_FILE`` (trailing newline stripped)."""
    direct = _env(name)
    if direct is not None:
        return direct
    path = _env(f"{name}_FILE")
    if path is None:
        return None
    return Path(path).read_text(encoding="utf-8").rstrip("\r\n")


def _port(name: str) -> int | None:
    raw = _env(name)
    if raw is None or not raw.strip():
        return None
    if not raw.strip().isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"{name}={raw!r} is not a port (1-65535)")
    return int(raw)


def _keepalive(raw: str) -> float:
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"AUTOCALL_SIP_KEEPALIVE={raw!r} is not a number of seconds") from None
    if not 0 <= seconds <= 3600:  # NaN too
        raise ValueError(f"AUTOCALL_SIP_KEEPALIVE={raw!r} must be 0 (off) to 3600 seconds")
    return seconds


@dataclass(frozen=True)
class TrunkSettings:
    """Where calls go: a SIP trunk, a PBX, or a peer on loopback."""

    host: str = "127.0.0.1"
    port: int | None = None
    """None: found by DNS (RFC 3263 NAPTR/SRV) for a name, 5060 (5061 TLS) otherwise."""
    transport: str = "udp"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    register: bool = False
    tls: TlsSettings = field(default_factory=TlsSettings)
    """Used when ``transport`` is ``tls``."""
    srtp: SrtpPolicy = field(default_factory=SrtpPolicy)
    """SRTP policy and suites; keys other than off need ``tls`` (or clear_keys)."""
    codecs: tuple[str, ...] = SUPPORTED
    """``AUTOCALL_CODECS`` (else the trunk file's ``codecs:``): the audio codecs we allow,
    in the order we offer them (``pcmu``, ``pcma``, ``g722``); default ``pcmu,pcma``. With
    ``g722`` a call whose far end offers or accepts G.722 is wideband (16 kHz) end to end."""
    keepalive: float = 0.0
    """``AUTOCALL_SIP_KEEPALIVE``: seconds between keep-alives to the registrar while
    registered (CRLFCRLF over TCP/TLS, OPTIONS over UDP: NAT bindings stay open); 0: none."""
    caller_id_header: CallerIdStyle = CallerIdStyle.FROM
    """``AUTOCALL_SIP_CALLER_ID_HEADER`` (or the trunk file's ``caller_id_header``): where
    our calls carry their caller ID: the From user, P-Asserted-Identity or Remote-Party-ID."""
    name: str | None = None
    """The trunk file these settings came from (``AUTOCALL_SIP_TRUNK``), if any."""
    caller_id: str | None = None
    """The trunk file's caller ID for test calls (``autocall sip check``)."""
    echo: str | None = None
    """The trunk file's echo number (or sip: URI): ``autocall sip check`` calls it."""

    @property
    def hostport(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def uri(self) -> str:
        """The trunk as registrar and outbound proxy."""
        return f"sip:{self.hostport}"

    @classmethod
    def from_env(cls, trunk: str | None = None) -> TrunkSettings:
        """Settings from ``AUTOCALL_SIP_*``. With a trunk (``trunk``, else
        ``AUTOCALL_SIP_TRUNK``: a name from ``autocall sip trunks`` or a YAML path) its file
        gives host, port, transport, registration, user, caller-ID header and password
        variable, and a variable that is set still wins over the file. ValueError (a
        ``TrunkError`` naming file:line:col) when the trunk cannot be used."""
        name = trunk or _env("AUTOCALL_SIP_TRUNK")
        if name is None:
            return cls.from_trunk(None)
        from autocall.trunks import load_trunk

        return cls.from_trunk(load_trunk(name.strip()))

    @classmethod
    def from_trunk(cls, base: Trunk | None) -> TrunkSettings:
        """``base`` (a loaded trunk file) with every ``AUTOCALL_SIP_*`` that is set on top."""
        register_raw = _env("AUTOCALL_SIP_REGISTER")
        header_raw = _env("AUTOCALL_SIP_CALLER_ID_HEADER")
        codecs_raw = _env("AUTOCALL_CODECS")
        try:
            header = parse_style(header_raw) if header_raw is not None else None
        except ValueError as exc:
            raise ValueError(f"AUTOCALL_SIP_CALLER_ID_HEADER: {exc}") from None
        password_env = base.password_env if base is not None and base.password_env \
            else "AUTOCALL_SIP_PASSWORD"
        host = _env("AUTOCALL_SIP_HOST") or (base.host if base is not None else None)
        return cls(
            host=host or "127.0.0.1",
            port=_port("AUTOCALL_SIP_PORT") or (base.port if base is not None else None),
            transport=(_env("AUTOCALL_SIP_TRANSPORT")
                       or (base.transport if base is not None else "udp")).lower(),
            user=_env("AUTOCALL_SIP_USER") or (base.user if base is not None else None),
            password=secret(password_env),
            register=register_raw.lower() in ("1", "true", "yes") if register_raw is not None
            else (base.register if base is not None else False),
            tls=tls_from_env(),
            srtp=srtp_from_env(),
            codecs=parse_codecs(codecs_raw) if codecs_raw is not None
            else (base.codecs if base is not None else SUPPORTED),
            keepalive=_keepalive(_env("AUTOCALL_SIP_KEEPALIVE", "0") or "0"),
            caller_id_header=header or (base.caller_id_header if base is not None
                                        else CallerIdStyle.FROM),
            name=base.name if base is not None else None,
            caller_id=base.caller_id if base is not None else None,
            echo=base.echo if base is not None else None,
        )


TTS_ORDER_DEFAULT = ("gtts", "piper", "espeak")


def tts_order() -> tuple[str, ...]:
    """TTS engines in preference order from ``AUTOCALL_TTS`` (``gtts,piper,espeak``)."""
    raw = _env("AUTOCALL_TTS")
    if raw is None:
        return TTS_ORDER_DEFAULT
    names = tuple(n.strip().lower() for n in raw.split(",") if n.strip())
    return names or TTS_ORDER_DEFAULT


@dataclass(frozen=True)
class Settings:
    """Process-wide defaults; every field can be overridden by a CLI flag."""

    trunk: TrunkSettings = field(default_factory=TrunkSettings)
    bind_host: str = "127.0.0.1"
    bind_port: int = 0
    advertised_host: str | None = None
    """``AUTOCALL_ADVERTISED_HOST``: our public address behind NAT, named in Via, Contact
    and SDP while we bind ``bind_host``."""
    advertised_port: int | None = None
    """``AUTOCALL_ADVERTISED_PORT``: the public SIP port when the NAT maps it to another."""
    database_url: str = "sqlite:///autocall.db"
    tts_cache_dir: Path = Path(".autocall/tts-cache")
    recordings_dir: Path = Path("recordings")  # call recordings (campaign ``recording: true``)
    recording_retention_days: int | None = None
    """``AUTOCALL_RECORDING_RETENTION_DAYS``: recordings older than this many days may be
    deleted from the console's recordings page in one go; unset keeps them all."""
    prompts_dir: Path = Path("prompts")  # the trees the API may name (``POST /v1/calls``)
    vosk_model: Path | None = None
    media_priority: str = "normal"
    dns_servers: tuple[tuple[str, int], ...] = ()
    """``AUTOCALL_DNS_SERVERS`` (``ADDRESS[:PORT],…``); empty: the system's resolver."""
    session_expires: int = 1800
    """``AUTOCALL_SESSION_EXPIRES``: the session interval we ask for (RFC 4028), seconds;
    0 turns session timers off."""
    min_se: int = 90
    """``AUTOCALL_MIN_SE``: the shortest session interval we accept (RFC 4028 §5)."""

    def __post_init__(self) -> None:
        if self.session_expires and not 1 <= self.min_se <= self.session_expires:
            raise ValueError(f"AUTOCALL_MIN_SE={self.min_se} must be between 1 and "
                             f"AUTOCALL_SESSION_EXPIRES={self.session_expires} (RFC 4028 "
                             "wants at least 90; 0 for AUTOCALL_SESSION_EXPIRES turns timers off)")

    @classmethod
    def from_env(cls) -> Settings:
        model = _env("AUTOCALL_VOSK_MODEL")
        return cls(
            trunk=TrunkSettings.from_env(),
            bind_host=_env("AUTOCALL_BIND_HOST", "127.0.0.1") or "127.0.0.1",
            bind_port=int(_env("AUTOCALL_BIND_PORT", "0") or 0),
            advertised_host=_env("AUTOCALL_ADVERTISED_HOST"),
            advertised_port=_port("AUTOCALL_ADVERTISED_PORT"),
            database_url=_env("AUTOCALL_DATABASE_URL", "sqlite:///autocall.db")
            or "sqlite:///autocall.db",
            tts_cache_dir=Path(_env("AUTOCALL_TTS_CACHE", ".autocall/tts-cache") or ""),
            recordings_dir=Path(_env("AUTOCALL_RECORDINGS", "recordings") or "recordings"),
            recording_retention_days=_days("AUTOCALL_RECORDING_RETENTION_DAYS"),
            prompts_dir=Path(_env("AUTOCALL_PROMPTS", "prompts") or "prompts"),
            vosk_model=Path(model) if model else None,
            media_priority=_env("AUTOCALL_MEDIA_PRIORITY", "normal") or "normal",
            dns_servers=tuple(parse_nameserver(s) for s in
                              (_env("AUTOCALL_DNS_SERVERS", "") or "").split(",") if s.strip()),
            session_expires=_seconds("AUTOCALL_SESSION_EXPIRES", 1800),
            min_se=_seconds("AUTOCALL_MIN_SE", 90),
        )


def shown_url(url: str) -> str:
    """``url`` fit to print: the password replaced by ``***`` (SQLAlchemy's own masking).

    Every message that names the store goes through this; a URL SQLAlchemy cannot
    parse is masked by hand between ``user:`` and ``@``.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _PASSWORD_IN_URL.sub(r"\1***@", url)


def hide_password(text: str, url: str) -> str:
    """``text`` (an error message that may quote ``url``) with the URL's password masked."""
    text = text.replace(url, shown_url(url))
    from urllib.parse import unquote

    match = _PASSWORD_IN_URL.search(url)
    if match is not None:
        raw = match.group(0)[len(match.group(1)):-1]
        for secret_text in {raw, unquote(raw)}:
            if len(secret_text) >= 4:  # a shorter one would mask ordinary words
                text = text.replace(secret_text, "***")
    return text


_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
