"""A throw-away certificate authority for TLS tests, made with ``cryptography``.

    ca = TestCa(tmp_path)
    server = ca.issue("sip.test", ips=("127.0.0.1",))          # PEM files on disk
    old = ca.issue("sip.test", not_after=days_ago(1))          # expired
    client = ca.issue("alice")                                 # for mutual TLS

Keys are EC P-256 (fast to make); every certificate (good for server and client
authentication) is signed by the CA, which a test gives to the side that verifies
(``ca.cert_file``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TestCa", "Issued", "days_ago"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def days_ago(days: float) -> dt.datetime:
    return _now() - dt.timedelta(days=days)


@dataclass(frozen=True)
class Issued:
    cert_file: Path
    key_file: Path


class TestCa:
    __test__ = False  # not a pytest class

    def __init__(self, directory: Path, name: str = "autocall test CA") -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(days_ago(1)).not_valid_after(_now() + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_file = self.dir / "ca.pem"
        self.cert_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self._count = 0

    def issue(self, name: str, *, ips: Sequence[str] = (),
              not_before: dt.datetime | None = None,
              not_after: dt.datetime | None = None) -> Issued:
        """A certificate for DNS name ``name`` (and ``ips``) signed by this CA, written
        as ``<name>-<n>.pem`` and ``<name>-<n>.key``."""
        key = ec.generate_private_key(ec.SECP256R1())
        alt: list[x509.GeneralName] = [x509.DNSName(name)]
        alt += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or days_ago(1))
            .not_valid_after(not_after or _now() + dt.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self._count += 1
        cert_file = self.dir / f"{name}-{self._count}.pem"
        key_file = self.dir / f"{name}-{self._count}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_file.chmod(0o600)
        return Issued(cert_file, key_file)
