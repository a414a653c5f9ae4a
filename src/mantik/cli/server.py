"""``mantik server start``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mantik.cli import _server_options as opts
from mantik.cli._output import fail

app = typer.Typer(help="Run the mantik platform.", no_args_is_help=True)


@app.command()
def start(
    data_dir: opts.DataDir = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on [127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port [5000].")] = None,
    workers: Annotated[int | None, typer.Option(help="uvicorn worker processes [1].")] = None,
    database_uri: opts.DatabaseUri = None,
    backend_store_uri: opts.BackendStoreUri = None,
    auth_database_uri: opts.AuthDatabaseUri = None,
    artifacts_destination: Annotated[
        str | None,
        typer.Option(help="Where artifacts are stored: a folder or s3://bucket/prefix."),
    ] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    ssl_certfile: Annotated[Path | None, typer.Option(help="TLS certificate (PEM).")] = None,
    public_url: Annotated[
        str | None, typer.Option(help="Public base URL when behind a proxy.")
    ] = None,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="Proxies whose X-Forwarded-For/-Proto are believed: addresses or networks, "
            "comma-separated [MANTIK_FORWARDED_ALLOW_IPS; none]."
        ),
    ] = None,
    signing_key_file: Annotated[
        Path | None,
        typer.Option(
            help="JWT signing key (PEM, mode 0600), e.g. outside the data dir "
            "[MANTIK_SIGNING_KEY_FILE]."
        ),
    ] = None,
    jobs_dir: Annotated[
        Path | None,
        typer.Option(help="Where job folders live [MANTIK_JOBS_DIR; <data-dir>-jobs]."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Start the platform: MLflow UI and REST, identity and compute API on one origin."""
    settings = opts.settings(
        data_dir=data_dir,
        host=host,
        port=port,
        workers=workers,
        database_uri=database_uri,
        backend_store_uri=backend_store_uri,
        auth_database_uri=auth_database_uri,
        artifacts_destination=artifacts_destination,
        ssl_keyfile=ssl_keyfile,
        ssl_certfile=ssl_certfile,
        public_url=public_url,
        forwarded_allow_ips=forwarded_allow_ips,
        signing_key_file=signing_key_file,
        jobs_dir=jobs_dir,
    )
    from mantik.server.listening import cannot_listen

    refusal = cannot_listen(settings.host, settings.port)  # before the slow imports (MLflow)
    if refusal is not None:
        fail(refusal)
    if settings.signing_key_file is not None:  # a clear refusal, before any worker starts
        from mantik.server.identity.keys import UnsafeKeyFile, load_key_file

        try:
            load_key_file(settings.signing_key_file)
        except (UnsafeKeyFile, OSError, ValueError) as exc:
            fail(f"--signing-key-file: {exc}")
    from mantik.server.launcher import serve

    typer.echo(f"mantik platform at {settings.base_url} (data in {settings.data_dir})", err=True)
    serve(settings, log_level=log_level)
