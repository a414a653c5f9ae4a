"""Plain MLflow (no auth) under uvicorn with TCP_NODELAY: the reference for our overhead.

Same app as ``mlflow server`` (``mlflow.server.fastapi_app:app``) and the same serving set-up
as ``mantik server start`` (listening socket with TCP_NODELAY, keep-alive 30 s, job execution
off), so the difference to the platform is the platform's own work: auth, dispatch, identity.

``python -m bench.reference_server --port P --data-dir DIR [--workers 2]``
"""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

import uvicorn
from uvicorn.supervisors import Multiprocess


def environment(data_dir: Path) -> dict[str, str]:
    store = f"sqlite:///{(data_dir / 'mlflow.db').resolve()}"
    return {
        "_MLFLOW_SERVER_FILE_STORE": store,
        "_MLFLOW_SERVER_REGISTRY_STORE": store,
        "_MLFLOW_SERVER_ARTIFACT_ROOT": "mlflow-artifacts:/",
        "_MLFLOW_SERVER_ARTIFACT_DESTINATION": str((data_dir / "artifacts").resolve()),
        "_MLFLOW_SERVER_SERVE_ARTIFACTS": "true",
        "_MLFLOW_SGI_NAME": "uvicorn",
        "_MLFLOW_IN_JOB_EXECUTOR": "false",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }


def serve(port: int, data_dir: Path, workers: int) -> None:
    os.environ.update(environment(data_dir))
    from mlflow.server.handlers import initialize_backend_stores

    store = os.environ["_MLFLOW_SERVER_FILE_STORE"]
    initialize_backend_stores(store, store, "mlflow-artifacts:/")
    config = uvicorn.Config(
        "mlflow.server.fastapi_app:app",
        host="127.0.0.1",
        port=port,
        workers=workers,
        timeout_keep_alive=30,
        server_header=False,
    )
    sock = config.bind_socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if workers > 1:
        Multiprocess(config, sockets=[sock]).run()
    else:
        uvicorn.Server(config).run(sockets=[sock])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    serve(args.port, args.data_dir, args.workers)


if __name__ == "__main__":
    main()
