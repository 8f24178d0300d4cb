"""TLS settings and failure sentences for SIP over TLS (RFC 3261 §26.2, RFC 5922).

No I/O here and nothing heavier than ``ssl``: ``config`` builds ``TlsSettings`` without
loading the SIP stack. ``TlsSettings`` makes the ``ssl`` contexts (a file that cannot be
used is a ValueError naming it); ``tls_failure`` turns what a failed connection raised into
the one sentence users see. The connections themselves are ``transport.TlsTransport``.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TlsSettings", "tls_failure"]

_EXPIRED, _NOT_YET_VALID, _REVOKED = 10, 9, 23
_WRONG_NAME = {62, 64}  # X509_V_ERR_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH
_UNTRUSTED = {2, 18, 19, 20, 21}  # no issuer, self-signed leaf or chain, cannot verify leaf
_CLIENT_CERT_REFUSED = {"TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE",
                        "SSLV3_ALERT_CERTIFICATE_EXPIRED", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
                        "TLSV1_ALERT_ACCESS_DENIED", "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE"}
_NOT_TLS = {"WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "PACKET_LENGTH_TOO_LONG",
            "HTTP_REQUEST", "RECORD_LAYER_FAILURE"}
_NO_VERSION = {"TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS_AVAILABLE"}


def _strerror(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else (str(exc) or type(exc).__name__)


def tls_failure(exc: BaseException, server: str, name: str) -> str:
    """One sentence for a TLS connection to ``server`` (``host:port``) that failed with
    ``exc``; ``name`` is the name its certificate had to carry. Says what went wrong and,
    where a setting fixes it, which one."""
    head = f"TLS connection to {server} failed"
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        if code == _EXPIRED:
            why = "its certificate has expired"
        elif code == _NOT_YET_VALID:
            why = "its certificate is not valid yet (is one of the clocks wrong?)"
        elif code == _REVOKED:
            why = "its certificate has been revoked"
        elif code in _WRONG_NAME:
            why = (f"its certificate is not for {name!r} (set AUTOCALL_SIP_TLS_SERVER_NAME "
                   "to the name it carries)")
        elif code in _UNTRUSTED:
            why = ("its certificate is not signed by a CA we trust (give that CA in "
                   "AUTOCALL_SIP_TLS_CA_FILE)")
        else:
            why = "its certificate was refused"
        return f"{head}: {why} ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        if "CERTIFICATE_REQUIRED" in reason:
            why = ("the server wants a client certificate (set AUTOCALL_SIP_TLS_CERT_FILE "
                   "and AUTOCALL_SIP_TLS_KEY_FILE)")
        elif reason in _CLIENT_CERT_REFUSED:
            why = "the server refused our client certificate"
        elif reason in _NOT_TLS:
            why = "the server does not speak TLS on that port"
        elif reason in _NO_VERSION:
            why = "no TLS version in common (we need TLS 1.2 or later)"
        elif isinstance(exc, ssl.SSLEOFError) or "EOF" in reason:
            why = "the server closed the connection during the handshake"
        else:
            why = reason.replace("_", " ").lower() or str(exc)
        return f"{head}: {why} ({reason or exc})"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, EOFError)):
        return f"{head}: the server closed the connection during the handshake"
    if isinstance(exc, OSError):
        return f"{head}: {_strerror(exc)}"
    return f"{head}: {type(exc).__name__}: {exc}"


def _load_problem(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        if reason == "KEY_VALUES_MISMATCH":
            return "the key does not belong to the certificate"
        if reason in ("PEM_LIB", "NO_CERTIFICATE_OR_CRL_FOUND", "NO_START_LINE") \
                or "PEM lib" in str(exc):
            return "no PEM certificate or key found in it"
        return reason
    if isinstance(exc, OSError):
        return _strerror(exc)
    return str(exc)


@dataclass(frozen=True)
class TlsSettings:
    """How we speak TLS (RFC 3261 §26.2.1; RFC 5922 for the name a certificate carries).

    ``verify``: check the server's certificate chain, dates and name (on by default; off
    takes any certificate and the agent logs that it does). ``ca_file``: the CAs to trust
    (PEM); None: the system's. ``server_name``: the name the server's certificate must
    carry, also sent as SNI; None: the host name the server was found by, else its
    address. ``cert_file``/``key_file``: our certificate, shown to a server that asks
    (mutual TLS) and to clients when we accept connections (``serve``); the key may sit
    in the certificate file. ``connect_timeout`` bounds the TCP connect and
    ``handshake_timeout`` the TLS handshake after it, so the two failures read apart.
    """

    verify: bool = True
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None
    connect_timeout: float = 5.0
    handshake_timeout: float = 5.0

    def client_context(self) -> ssl.SSLContext:
        """The context for connections we open. ValueError names a file that cannot be
        used and why."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=str(self.ca_file))
            except (OSError, ValueError) as exc:
                raise ValueError(f"TLS CA file {self.ca_file}: {_load_problem(exc)}") from None
        else:
            ctx.load_default_certs()
        self._load_own(ctx)
        return ctx

    def server_context(self) -> ssl.SSLContext | None:
        """The context for connections we accept; None without a certificate of ours."""
        if self.cert_file is None:
            self._load_own(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))  # a key without its cert
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._load_own(ctx)
        return ctx

    def _load_own(self, ctx: ssl.SSLContext) -> None:
        if self.cert_file is None:
            if self.key_file is not None:
                raise ValueError(f"TLS key file {self.key_file} needs its certificate file "
                                 "(AUTOCALL_SIP_TLS_CERT_FILE)")
            return
        try:
            ctx.load_cert_chain(str(self.cert_file),
                                str(self.key_file) if self.key_file else None)
        except (OSError, ValueError) as exc:
            files = f"certificate {self.cert_file}" + (f" with key {self.key_file}"
                                                       if self.key_file else "")
            raise ValueError(f"TLS {files}: {_load_problem(exc)}") from None
