"""TLS material for the session port: a self-signed fallback certificate and the server context.

Operators normally supply their own certificate; when the configured files are missing we
generate what upstream's init script generates (upstream-protocol 1.4): a self-signed
certificate valid for 10 years. Unlike upstream (``CN=*``) ours carries a SAN list, which
browsers require. Key generation and file writes block: call :func:`ensure_self_signed` from
``makeService`` (before the reactor runs) or on a pool thread.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import tempfile
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import ssl
from twisted.logger import Logger

log = Logger()

_VALID_DAYS = 3650


def ensure_self_signed(cert_path: Path, key_path: Path, hostname: str) -> bool:
    """Writes a self-signed certificate and key unless both files already exist.

    Returns True if it generated them. The key is written with mode 0600; both files are
    written to a temporary name and renamed, so a crash never leaves half a PEM behind.
    SAN: ``hostname``, ``localhost`` and ``127.0.0.1``. Blocking (key generation, file I/O).
    """
    if cert_path.exists() and key_path.exists():
        return False
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed(key, hostname)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomically(key_path, key_pem, mode=0o600)
    _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return True


def _self_signed(key: ec.EllipticCurvePrivateKey, hostname: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname or "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt_names: list[x509.GeneralName] = [x509.DNSName("localhost"),
                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    if hostname and hostname != "localhost":
        alt_names.insert(0, _general_name(hostname))
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def _general_name(hostname: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return x509.DNSName(hostname)


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _spki(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo))


def server_context_factory(cert_path: Path, key_path: Path) -> ssl.CertificateOptions:
    """TLS 1.2+ server options from PEM files (a chain after the leaf certificate is sent too).

    ValueError naming the file for a key or certificate that cannot serve (unreadable,
    encrypted, or a key that is not the certificate's); OSError for a missing file.
    Blocking (reads files): call at startup.
    """
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise ValueError(f"{key_path} is not an unencrypted PEM private key ({e})") from None
    try:
        certs = x509.load_pem_x509_certificates(cert_path.read_bytes())
    except ValueError as e:
        raise ValueError(f"{cert_path} holds no PEM certificate ({e})") from None
    if _spki(certs[0].public_key()) != _spki(key.public_key()):
        raise ValueError(f"{key_path} is not the private key of the certificate in "
                         f"{cert_path} (the first certificate must be the server's own)")
    if certs[0].not_valid_after_utc < datetime.datetime.now(datetime.timezone.utc):
        log.warn("The certificate in {cert} expired on {date}: browsers will refuse it",
                 cert=str(cert_path), date=certs[0].not_valid_after_utc.isoformat())
    return ssl.CertificateOptions(
        privateKey=key,  # type: ignore[arg-type]  # pyOpenSSL takes cryptography objects (X509/PKey are deprecated); Twisted's stubs predate that
        certificate=certs[0],  # type: ignore[arg-type]  # pyOpenSSL takes cryptography objects (X509/PKey are deprecated); Twisted's stubs predate that
        extraCertChain=certs[1:],  # type: ignore[arg-type]  # pyOpenSSL takes cryptography objects (X509/PKey are deprecated); Twisted's stubs predate that
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
    )


def endpoint_description(port: int, cert_path: Path, key_path: Path,
                         interface: str = "") -> str:
    """The ``ssl:`` server endpoint string for the same files (for ``serverFromString``)."""

    def quote(value: str) -> str:
        return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")

    desc = f"ssl:{port}:privateKey={quote(str(key_path))}:certKey={quote(str(cert_path))}"
    if interface:
        desc += f":interface={quote(interface)}"
    return desc


__all__ = ["ensure_self_signed", "server_context_factory", "endpoint_description"]
