"""The signing key can live outside the data dir (``--signing-key-file``), readable by its
owner only: tokens are signed with it, and none is made in the data dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.platform import start_platform


def _key_file(folder: Path) -> tuple[Path, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    folder.mkdir()
    path = folder / "jwt.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path, key


def test_tokens_are_signed_with_the_admins_key_file(tmp_path: Path) -> None:
    path, key = _key_file(tmp_path / "outside")
    data_dir = tmp_path / "platform"
    data_dir.mkdir()
    with start_platform(data_dir, env={"MANTIK_SIGNING_KEY_FILE": str(path)}, workers=1) as p:
        user = p.new_user()
        token = p.access_token(user)
        claims = jwt.decode(
            token, key.public_key(), algorithms=["RS256"], options={"verify_aud": False}
        )
        assert claims["sub"] == user[0]
        assert httpx.get(f"{p.url}/api/mantik/health").status_code == 200
    assert not (data_dir / "keys" / "jwt-signing-key.pem").exists()


def test_a_key_file_others_may_read_is_refused_at_start(tmp_path: Path) -> None:
    path, _ = _key_file(tmp_path / "outside")
    path.chmod(0o644)
    started = subprocess.run(
        [
            sys.executable,
            "-m",
            "mantik.cli",
            "server",
            "start",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path / "platform"),
            "--signing-key-file",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )
    assert started.returncode != 0
    assert "only its owner may read it" in started.stderr
    assert "Traceback" not in started.stderr
