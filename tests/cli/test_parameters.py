"""A mistyped parameter is refused before anything is uploaded, by the CLI and by the
platform; ``--allow-undeclared-params`` keeps MLflow's pass-through (issue 17, item 2)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from tests.cli.test_runs import CONFIG, Run, as_json, demo, env, mantik  # noqa: F401  (fixtures)
from tests.support.platform import PlatformProcess
from tests.support.projects import zipped


def test_a_mistyped_parameter_is_refused_naming_the_declared_one(mantik: Run, demo: Path) -> None:  # noqa: F811
    refused = mantik(
        "runs", "submit", str(demo), "--backend-config", CONFIG,
        "--experiment-name", "cli-typo", "-P", "alpah=0.2",
    )  # fmt: skip
    assert refused.returncode == 1, refused.stderr
    assert "Traceback" not in refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert "'alpah' is not declared" in lines[0]
    assert "did you mean 'alpha'?" in lines[0]
    assert "--allow-undeclared-params" in lines[0]
    assert as_json(mantik("runs", "list", "--json")) == []  # nothing reached the platform


def test_allow_undeclared_params_passes_it_on(mantik: Run, demo: Path) -> None:  # noqa: F811
    passed = mantik(
        "runs", "submit", str(demo), "--backend-config", CONFIG, "--experiment-name",
        "cli-extra", "-P", "alpah=0.2", "--allow-undeclared-params", "--wait",
        "--interval", "0.5", "--json",
    )  # fmt: skip
    assert passed.returncode == 2, passed.stderr  # train.py itself refuses the option
    run_id = as_json(passed)["run_id"]
    logs = mantik("runs", "logs", run_id)
    assert re.search(r"unrecognized arguments: --alpah 0\.2", logs.stdout), logs.stdout


def test_the_platform_refuses_an_undeclared_parameter(
    sqlite_platform: PlatformProcess,
    env: dict[str, str],  # noqa: F811
    demo: Path,  # noqa: F811
) -> None:
    user = (env["MANTIK_USERNAME"], env["MANTIK_PASSWORD"])
    headers = {"Authorization": f"Bearer {sqlite_platform.access_token(user)}"}
    created = httpx.post(
        f"{sqlite_platform.url}/api/2.0/mlflow/experiments/create",
        json={"name": "api-typo"},
        headers=headers,
    )
    experiment = created.json()["experiment_id"]
    fields = {
        "entry_point": "main",
        "mlflow_parameters": json.dumps({"alpah": 0.2}),
        "unicore_backend_config_path": CONFIG,
    }

    def post(**extra: str) -> httpx.Response:
        return httpx.post(
            f"{sqlite_platform.url}/compute-backend/submit/{experiment}",
            data={**fields, **extra},
            files={"mlproject_zip": ("p.zip", zipped(demo), "application/zip")},
            headers=headers,
            timeout=60,
        )

    refused = post()
    assert refused.status_code == 400, refused.text
    assert "did you mean 'alpha'?" in refused.json()["detail"]
    listed = httpx.get(f"{sqlite_platform.url}/compute-backend/runs", headers=headers)
    assert listed.json() == []
    accepted = post(allow_undeclared_params="true")
    assert accepted.status_code == 201, accepted.text
