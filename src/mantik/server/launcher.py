"""``mantik server start``: prepare the stores once, then run uvicorn workers.

TCP_NODELAY is set on the listening socket, which accepted connections inherit: uvicorn's
multi-worker mode leaves it off and every keep-alive request then waits for the peer's
delayed ACK (≈ 40 ms per MLflow call; uvicorn issue #3149).
"""

from __future__ import annotations

import multiprocessing
import os
import socket

import uvicorn
from uvicorn.supervisors import Multiprocess

from mantik.server.platform import prepare
from mantik.server.settings import ServerSettings
from mantik.server.supervision import supervise_workers
from mantik.server.tracking import mlflow_app


def export_settings(settings: ServerSettings) -> None:
    """Workers rebuild the same settings from ``MANTIK_*`` variables."""
    for name, value in settings.model_dump().items():
        key = f"MANTIK_{name.upper()}"
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = str(value)


def _prepare_all(settings: ServerSettings) -> None:
    prepare(settings)
    mlflow_app.prepare_stores(settings)
    # Files an older version left with the umask's rights (SQLite databases, stamps).
    for path in settings.data_dir.iterdir():
        if path.is_file() and not path.is_symlink():
            path.chmod(0o600)


def serve(settings: ServerSettings, *, log_level: str = "info") -> None:
    # What the platform writes is its own (databases, keys, artifacts, stamps): jobs run
    # under other accounts, and what they must read is opened up where it is written.
    os.umask(0o077)
    if settings.workers > 1:
        # Keep MLflow's server modules (≈ 250 MB) out of the supervisor process: it only
        # forks workers, each of which imports them anyway.
        child = multiprocessing.get_context("spawn").Process(target=_prepare_all, args=(settings,))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"preparing the stores failed (exit code {child.exitcode})")
    else:
        _prepare_all(settings)
    export_settings(settings)
    config = uvicorn.Config(
        "mantik.server.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        log_level=log_level,
        timeout_keep_alive=30,
        server_header=False,
        # Forwarded headers only from the proxies the admin lists (MANTIK_FORWARDED_ALLOW_IPS).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
    )
    sock = config.bind_socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if settings.workers > 1:
        supervise_workers()
        Multiprocess(config, sockets=[sock]).run()
    else:
        uvicorn.Server(config).run(sockets=[sock])
