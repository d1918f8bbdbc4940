"""The control plane's PKI: a CA, the API server's serving certificate, the admin client
certificate and the service-account signing key pair, generated with `cryptography`.

ECDSA P-256 everywhere: generating it takes microseconds (RSA 2048 takes tens of
milliseconds per key) and every component accepts it, including ES256 for
service-account tokens.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=365)
# The in-cluster names of the API server, so a pod-style client (kubernetes.default.svc)
# would also verify; 10.96.0.1 is the first address of --service-cluster-ip-range.
_APISERVER_DNS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
_APISERVER_IPS = ("127.0.0.1", "::1", "10.96.0.1")


@attrs.frozen
class ClusterPKI:
    """Paths of the generated PEM files."""

    ca_cert: Path
    ca_key: Path
    apiserver_cert: Path
    apiserver_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path

    @classmethod
    def generate(cls, directory: Path) -> ClusterPKI:
        """Write a fresh PKI into `directory` (created if needed)."""
        directory.mkdir(parents=True, exist_ok=True)
        ca_key = _new_key()
        ca_name = _name("edge-sched-e2e-ca")
        now = datetime.datetime.now(datetime.UTC)
        ca_cert = (
            _builder(ca_name, ca_name, ca_key, now)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )

        def leaf(
            cn: str, orgs: tuple[str, ...], usage: x509.ObjectIdentifier, san: x509.SubjectAlternativeName | None
        ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
            key = _new_key()
            builder = (
                _builder(_name(cn, orgs), ca_name, key, now)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
                )
            )
            if san is not None:
                builder = builder.add_extension(san, critical=False)
            return builder.sign(ca_key, hashes.SHA256()), key

        serving_san = x509.SubjectAlternativeName(
            [x509.DNSName(n) for n in _APISERVER_DNS]
            + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in _APISERVER_IPS]
        )
        apiserver_cert, apiserver_key = leaf("kube-apiserver", (), ExtendedKeyUsageOID.SERVER_AUTH, serving_san)
        # O=system:masters: the group the API server's bootstrap RBAC binds to cluster-admin.
        admin_cert, admin_key = leaf("edge-sched-e2e-admin", ("system:masters",), ExtendedKeyUsageOID.CLIENT_AUTH, None)
        sa_key = _new_key()

        pki = cls(
            ca_cert=directory / "ca.crt",
            ca_key=directory / "ca.key",
            apiserver_cert=directory / "apiserver.crt",
            apiserver_key=directory / "apiserver.key",
            admin_cert=directory / "admin.crt",
            admin_key=directory / "admin.key",
            sa_key=directory / "sa.key",
            sa_pub=directory / "sa.pub",
        )
        _write_cert(pki.ca_cert, ca_cert)
        _write_key(pki.ca_key, ca_key)
        _write_cert(pki.apiserver_cert, apiserver_cert)
        _write_key(pki.apiserver_key, apiserver_key)
        _write_cert(pki.admin_cert, admin_cert)
        _write_key(pki.admin_key, admin_key)
        _write_key(pki.sa_key, sa_key)
        pki.sa_pub.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return pki


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
        + [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, now: datetime.datetime
) -> x509.CertificateBuilder:
    # Backdated by an hour so a clock that is slightly behind still accepts it.
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + _VALIDITY)
    )


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.touch(mode=0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
