"""Certificates and keys for the local control plane, made with the openssl CLI.

A throwaway CA signs the API server's serving certificate (SANs 127.0.0.1, localhost and the
in-cluster service names); an RSA key signs and verifies service-account tokens.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    sa_key: Path
    sa_pub: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def generate(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        sa_key=directory / "sa.key",
        sa_pub=directory / "sa.pub",
    )
    days = "3650"
    _openssl("genrsa", "-out", pki.ca_key.name, "2048", cwd=directory)
    _openssl(
        "req", "-x509", "-new", "-key", pki.ca_key.name, "-days", days,
        "-subj", "/CN=vectorload-devcluster-ca", "-out", pki.ca_cert.name, cwd=directory,
    )  # fmt: skip
    _openssl("genrsa", "-out", pki.serving_key.name, "2048", cwd=directory)
    sans = ",".join(
        [
            "IP:127.0.0.1",
            "IP:10.0.0.1",
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ]
    )
    ext = directory / "apiserver.ext"
    ext.write_text(
        f"subjectAltName={sans}\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    csr = directory / "apiserver.csr"
    _openssl(
        "req",
        "-new",
        "-key",
        pki.serving_key.name,
        "-subj",
        "/CN=kube-apiserver",
        "-out",
        csr.name,
        cwd=directory,
    )
    _openssl(
        "x509", "-req", "-in", csr.name, "-CA", pki.ca_cert.name, "-CAkey", pki.ca_key.name,
        "-CAcreateserial", "-days", days, "-extfile", ext.name, "-out", pki.serving_cert.name, cwd=directory,
    )  # fmt: skip
    _openssl("genrsa", "-out", pki.sa_key.name, "2048", cwd=directory)
    _openssl("rsa", "-in", pki.sa_key.name, "-pubout", "-out", pki.sa_pub.name, cwd=directory)
    for path in directory.iterdir():
        if path.suffix == ".key":
            path.chmod(0o600)
    return pki
