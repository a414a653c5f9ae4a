"""``mantik project init NAME``: scaffold a project that runs as generated."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from mantik.cli._output import fail, out
from mantik.cli._scaffold import FILES

app = typer.Typer(help="Create MLflow projects for mantik.", no_args_is_help=True)


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="Project name; also the new folder's name.")],
    directory: Annotated[
        Path | None, typer.Option("--directory", "-d", help="Where to create it [./NAME].")
    ] = None,
) -> None:
    """Create an MLflow project with a training script, backend configs and image recipes."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        fail(f"{name!r} is not a project name: use letters, digits, '.', '_' and '-'.")
    target = directory or Path(name)
    if target.exists() and any(target.iterdir()):
        fail(f"{target} exists and is not empty; choose another name or --directory.")
    target.mkdir(parents=True, exist_ok=True)
    for file_name, template in FILES.items():
        (target / file_name).write_text(template.format(name=name))
    out.print(f"Created {target}/ with {', '.join(FILES)}.")
    out.print(
        f"Try: mantik runs submit {target} --backend-config compute-backend-config.json "
        f"--experiment-name {name} --wait"
    )
