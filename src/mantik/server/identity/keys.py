"""An RSA JWT signing key (published as JWK), the admin's own key file, and secret files.

Where the platform keeps its keys: :mod:`.keyring`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from jwt.utils import base64url_encode

ALGORITHM = "RS256"
_KEY_FILE = "jwt-signing-key.pem"


class SigningKey:
    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        self.private_key = private_key
        self.public_key = private_key.public_key()
        self.kid = _thumbprint(self.public_key)

    def jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.public_key))
        jwk.update(kid=self.kid, use="sig", alg=ALGORITHM)
        return jwk


def _thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638 JWK thumbprint: a stable key id derived from the key itself."""
    from cryptography.hazmat.primitives import hashes

    jwk = json.loads(RSAAlgorithm.to_jwk(public_key))
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
    digest = hashes.Hash(hashes.SHA256())
    digest.update(canonical.encode())
    return base64url_encode(digest.finalize()).decode()


def write_secret_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the first byte on (no window with wider rights)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


class UnsafeKeyFile(Exception):
    """The signing key file is readable by others than its owner."""


def load_key_file(key_file: Path) -> SigningKey:
    """The admin's key (e.g. outside the data dir): readable by its owner only."""
    mode = key_file.stat().st_mode
    if mode & 0o077:
        raise UnsafeKeyFile(
            f"the signing key file {key_file} has mode {mode & 0o777:04o}; "
            f"only its owner may read it: chmod 600 {key_file}"
        )
    return from_pem(key_file.read_bytes())


def from_pem(pem: bytes) -> SigningKey:
    loaded = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return SigningKey(loaded)
