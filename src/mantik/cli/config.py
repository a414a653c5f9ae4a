"""``mantik config schema|check``: the backend configuration file, checked before a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mantik.cli._output import fail

if TYPE_CHECKING:
    from mantik.compute.config.model import BackendConfig

app = typer.Typer(
    help="Check backend configuration files (compute-backend-config.json).",
    no_args_is_help=True,
)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the backend configuration (for editors and CI)."""
    from mantik.compute.config.model import BackendConfig

    typer.echo(json.dumps(BackendConfig.model_json_schema(by_alias=True), indent=2))


@app.command()
def check(
    file: Annotated[Path, typer.Argument(help="The backend config file (JSON or YAML).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the normalised config as JSON.")
    ] = False,
) -> None:
    """Validate a backend configuration file and summarise what the run would ask for."""
    from mantik._exceptions import ConfigurationError
    from mantik.compute.config.loading import load_backend_config

    try:
        config = load_backend_config(file)
    except ConfigurationError as exc:
        fail(str(exc))  # fail() escapes markup: the message quotes the user's values
    if as_json:
        typer.echo(json.dumps({"file": str(file), "valid": True, "config": config.to_wire()}))
        return
    typer.echo(f"{file} is valid")
    typer.echo(_summary(config))


def _summary(config: BackendConfig) -> str:
    from mantik.compute.config.units import unicore_memory, unicore_runtime

    site = config.compute_site or config.unicore_api_url or "platform default"
    if config.remote_image:
        image = f"{config.remote_image} (on the site)"
    elif config.singularity_image:
        image = config.singularity_image
    elif config.venv:
        image = f"none, venv {config.venv}"
    else:
        image = "from the MLproject or the site"
    r = config.resources
    runtime = unicore_runtime(r.runtime) if r.runtime else "site default"
    memory = unicore_memory(r.memory) if r.memory else "site default"
    return f"site: {site}; image: {image}; runtime: {runtime}; memory: {memory}"
