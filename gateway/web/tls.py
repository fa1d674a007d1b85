"""The web face's TLS: the configured certificate, or one kept beside the state file.

The certificate and its key beside the state file (``web-cert.pem``, ``web-key.pem``, the key
readable by the gateway's user only) are a self-signed pair made at the first start, or the pair
an administrator uploaded in their place (`install_certificate`, checked as the server would load
it), so browsers see the same one after every restart. The self-signed pair is made by a child
process (``python -m gateway.web.tls CERT KEY ADDRESS``): the cryptography library it loads would
otherwise stay in the gateway's memory for good, some 4 MB for a job done once.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import socket
import ssl
import sys
import tempfile
from ipaddress import IPv4Address
from pathlib import Path

from gateway.config import Config
from gateway.errors import GatewayError
from gateway.files import write_atomically

CERT_NAME, KEY_NAME = "web-cert.pem", "web-key.pem"
VALID_DAYS = 3650


async def server_context(config: Config) -> ssl.SSLContext:
    """A TLS 1.2+ server context with the configured or the self-signed certificate."""
    web = config.web
    if web.tls_cert is not None and web.tls_key is not None:
        cert, key = web.tls_cert, web.tls_key
    else:
        folder = config.gateway.state_file.parent
        cert, key = folder / CERT_NAME, folder / KEY_NAME
        if not (cert.exists() and key.exists()):
            await _self_signed_by_a_child(cert, key, web.address)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        raise GatewayError(f"web: cannot use the certificate {cert} with the key {key}: {error}") from None
    return context


def certificate_in_use(config: Config) -> str:
    """Which certificate the web face serves, in words."""
    web = config.web
    if web.tls_cert is not None:
        return (
            f"The site's file names the certificate: web.tls_cert = {web.tls_cert} (with web.tls_key); an upload "
            "here would not be used while it does."
        )
    cert = config.gateway.state_file.parent / CERT_NAME
    if not cert.exists():
        return f"A self-signed certificate is made at the next start ({cert})."
    changed = datetime.datetime.fromtimestamp(cert.stat().st_mtime, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{cert}, written {changed} (self-signed at the first start, or uploaded here since)."


def install_certificate(config: Config, certificate: bytes, key: bytes) -> None:
    """Put an uploaded certificate (chain) and key in the place of the self-signed pair, once
    the TLS server takes them together as they are (a key with a password is refused: nobody
    could type it at a start). GatewayError says why not, and nothing is replaced."""
    if config.web.tls_cert is not None:
        raise GatewayError(
            f"web.tls_cert = {config.web.tls_cert} in the site's file names the certificate in use: "
            "an uploaded one would never be used (empty web.tls_cert and web.tls_key there first)"
        )
    folder = config.gateway.state_file.parent
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".upload-") as scratch:
        cert_file, key_file = Path(scratch) / CERT_NAME, Path(scratch) / KEY_NAME
        write_atomically(cert_file, certificate, 0o600)
        write_atomically(key_file, key, 0o600)
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file, password=_no_password)
        except (ssl.SSLError, ValueError) as error:
            raise GatewayError(
                f"not used: the certificate and the key do not load together as PEM ({error.args[-1]}); "
                "the key must be the certificate's, not encrypted"
            ) from None
    write_atomically(folder / KEY_NAME, key, 0o600)
    write_atomically(folder / CERT_NAME, certificate, 0o644)


def _no_password() -> bytes:
    raise ValueError("the key is encrypted")


async def _self_signed_by_a_child(cert: Path, key: Path, address: str) -> None:
    # At the lowest priority: it starts while discovery probes with timeouts of a few ms.
    child = await asyncio.create_subprocess_exec(
        "nice",
        "-n",
        "19",
        sys.executable,
        "-m",
        __name__,
        str(cert),
        str(key),
        address,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, error = await child.communicate()
    if child.returncode != 0:
        raise GatewayError(
            error.decode(errors="replace").strip()
            or f"web: no self-signed certificate made in {cert.parent} (exit status {child.returncode})"
        )


def write_self_signed(cert_path: Path, key_path: Path, address: IPv4Address) -> None:
    """A new P-256 key and a certificate for this host's name, localhost and `address`."""
    # Imported here: only the first start without a configured certificate needs it.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, socket.gethostname() or "bcpm-gateway")])
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName(socket.gethostname() or "bcpm-gateway"),
        x509.IPAddress(IPv4Address("127.0.0.1")),
    ]
    if not address.is_unspecified and address != IPv4Address("127.0.0.1"):
        names.append(x509.IPAddress(address))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    try:
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    except OSError as error:
        raise GatewayError(f"web: cannot write the self-signed certificate to {cert_path.parent}: {error}") from None


def main(arguments: list[str]) -> int:
    cert, key, address = arguments
    try:
        write_self_signed(Path(cert), Path(key), IPv4Address(address))
    except GatewayError as error:
        print(error, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
