"""The ``mantik`` command. Errors print one line (``--debug`` shows the traceback)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mantik.cli import admin, auth, config, experiments, models, project, prompts, runs, server

app = typer.Typer(
    name="mantik",
    help="mantik: tracked ML experiments and MLflow projects on HPC systems.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)
app.add_typer(server.app, name="server")
app.add_typer(admin.app, name="admin")
app.add_typer(experiments.app, name="experiments")
app.add_typer(models.app, name="models")
app.add_typer(prompts.app, name="prompts")
app.add_typer(config.app, name="config")
app.add_typer(project.app, name="project")
app.add_typer(runs.app, name="runs")
auth.register(app)


def _version(value: bool) -> None:
    if value:
        from mantik._version import __version__

        typer.echo(f"mantik {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """mantik: tracked ML experiments and MLflow projects on HPC systems."""


def main() -> None:
    debug = "--debug" in sys.argv
    if debug:
        sys.argv.remove("--debug")
    try:
        app()
    except Exception as exc:
        if debug:
            raise
        from mantik.cli._output import fail

        fail(exc)
