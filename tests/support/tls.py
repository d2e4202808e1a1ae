"""Throw-away certificates for the loopback test servers and the fake Entra app.

:func:`write_self_signed` makes the server certificate of Dovecot, aiosmtpd and
the HTTP fakes: self-signed for ``127.0.0.1``/``localhost``, valid for a day, its
own CA, so a client trusts it by pointing ``ca_file``/``REQUESTS_CA_BUNDLE``/
``SSL_CERT_FILE`` at the certificate itself (an EC key keeps generation fast).
:func:`app_certificate` makes the RSA certificate an Entra app signs its client
assertions with.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path
from typing import Any

# cryptography is imported inside the functions: only tests that make certificates pay for it.


def self_signed(key: Any, common_name: str, *extensions: tuple[Any, bool]) -> Any:
    """An ``x509.Certificate`` for ``key``, issued by itself, valid from 5 minutes ago for a day.

    ``extensions`` are (extension, critical) pairs.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate a little clock skew
        .not_valid_after(now + dt.timedelta(days=1))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(key, hashes.SHA256())


def self_signed_pem() -> tuple[bytes, bytes]:
    """A server certificate for 127.0.0.1/localhost that is its own CA, and its key (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    ca = x509.BasicConstraints(ca=True, path_length=None)
    cert = self_signed(key, "localhost", (san, False), (ca, True))
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), pem_key


def write_self_signed(folder: Path) -> tuple[Path, Path]:
    """Write ``cert.pem``/``key.pem`` (see :func:`self_signed_pem`) into ``folder``."""
    cert, key = self_signed_pem()
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert)
    key_path.write_bytes(key)
    return cert_path, key_path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side TLS context serving ``cert`` with ``key``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def app_certificate() -> tuple[bytes, Any]:
    """An app certificate as Entra ID takes it: one PEM of RSA key + self-signed cert, and the cert."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = self_signed(key, "mailtriage")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ) + cert.public_bytes(serialization.Encoding.PEM)
    return pem, cert
