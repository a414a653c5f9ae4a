"""One module of mantik touches MLflow's private API; an MLflow upgrade starts there.

Outside ``mantik._mlflow_internals`` no module may import ``mlflow.server`` (by an import
statement or ``importlib.import_module``), name a private module or name of MLflow in an
import, or read a private attribute of an MLflow module it imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mantik

SRC = Path(mantik.__file__).parent
DOOR = SRC / "_mlflow_internals.py"


def _is_mlflow(module: str) -> bool:
    return module == "mlflow" or module.startswith("mlflow.")


def _private(dotted: str) -> bool:
    return any(part.startswith("_") for part in dotted.split("."))


def trespasses(source: str) -> list[str]:
    """What in ``source`` reaches past MLflow's public API, as ``line: what``."""
    found: list[str] = []
    mlflow_names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_mlflow(alias.name):
                    mlflow_names.add((alias.asname or alias.name).split(".")[0])
                    if alias.name.startswith("mlflow.server") or _private(alias.name):
                        found.append(f"{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and _is_mlflow(node.module):
            for alias in node.names:
                mlflow_names.add(alias.asname or alias.name)
                dotted = f"{node.module}.{alias.name}"
                if node.module.startswith("mlflow.server") or _private(dotted):
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Call) and node.args:
            first = node.args[0]
            if (
                isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and first.value.startswith("mlflow.server")
            ):
                found.append(f"{node.lineno}: {ast.unparse(node)}")
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name)
            and node.value.id in mlflow_names
        ):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_only_the_door_reaches_mlflow_internals() -> None:
    assert DOOR.is_file()
    offenders = {
        str(path.relative_to(SRC)): hits
        for path in sorted(SRC.rglob("*.py"))
        if path != DOOR and (hits := trespasses(path.read_text()))
    }
    assert offenders == {}


def test_the_check_sees_each_way_in() -> None:
    source = "\n".join(
        [
            "import importlib",
            "from mlflow.server import auth",
            "from mlflow.server.handlers import _get_tracking_store",
            "from mlflow.tracking import fluent",
            "from mlflow.projects import _project_spec",
            "x = fluent._active_experiment_id",
            "m = importlib.import_module('mlflow.server.auth')",
            "from mlflow.entities import Param",
            "p = Param.__name__",
        ]
    )
    assert [hit.split(":")[0] for hit in trespasses(source)] == ["2", "3", "5", "7", "6"]


def test_the_doors_resource_types_are_mlflows() -> None:
    from mlflow.server import auth

    from mantik import _mlflow_internals as door

    assert (door.EXPERIMENT, door.RUN, door.PROMPT, door.REGISTERED_MODEL) == (
        auth.RESOURCE_TYPE_EXPERIMENT,
        auth.RESOURCE_TYPE_RUN,
        auth.RESOURCE_TYPE_PROMPT,
        auth.RESOURCE_TYPE_REGISTERED_MODEL,
    )
