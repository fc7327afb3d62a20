"""Two Synapse servers on loopback that federate with each other, for tests and the demo.

Liaison's partners run their own homeservers; a case crosses a federation hop
between them. On one machine with no DNS and no system files, federation works
when (facts checked on Synapse 1.163):

- each `server_name` is an IP literal with its federation port (`127.0.0.1:39123`),
  so Synapse connects straight to it (no SRV, no .well-known);
- that port is a TLS listener with the `federation` resource, its certificate
  for IP 127.0.0.1 (and ::1) signed by a private CA made here, which every server
  trusts through `federation_custom_ca_list` with verification left on;
- `federation_ip_range_blacklist: []` (for IP-literal names Synapse consults the
  blocklist without the allowlist, and the default blocks 127.0.0.0/8);
- `trusted_key_servers: []`: each server fetches the other's signing key itself.

Matrix ids then look like `@bekzod:127.0.0.1:39123`.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devkit.synapse import FederationTls, LocalSynapse

CA_FILE = "federation-ca.pem"
CERT_FILE = "federation.crt"
KEY_FILE = "federation.key"
VALID_DAYS = 30
LOOPBACK_IPS = ("127.0.0.1", "::1")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def federation_tls(directory: Path) -> FederationTls:
    """The CA and loopback certificate in `directory`, made on first use (kept for restarts)."""
    tls = FederationTls(directory / CA_FILE, directory / CERT_FILE, directory / KEY_FILE)
    if all(path.exists() for path in (tls.ca_path, tls.cert_path, tls.key_path)):
        return tls
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=VALID_DAYS)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Liaison devkit federation CA"))
        .issuer_name(_name("Liaison devkit federation CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(ip)) for ip in LOOPBACK_IPS]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                              x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    tls.ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    tls.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tls.key_path.write_bytes(_pem_key(key))
    tls.key_path.chmod(0o600)
    return tls


class SynapsePair:
    """Two federating Synapse servers, `home` and `partner`, with files under `workdir`.

    `home` is where a test usually runs the bot; `partner` is the other country's
    server. Each can be stopped and started alone (an outage of one side).
    """

    def __init__(self, workdir: Path, *, python: str | None = None) -> None:
        workdir = Path(workdir).resolve()
        tls = federation_tls(workdir / "tls")
        self.home = LocalSynapse(workdir / "home", python=python, federation=tls)
        self.partner = LocalSynapse(workdir / "partner", python=python, federation=tls)

    @property
    def servers(self) -> tuple[LocalSynapse, LocalSynapse]:
        return self.home, self.partner

    async def start(self) -> None:
        await asyncio.gather(*(server.start() for server in self.servers))

    async def stop(self) -> None:
        await asyncio.gather(*(server.stop() for server in self.servers))

    async def __aenter__(self) -> SynapsePair:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
