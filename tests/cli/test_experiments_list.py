"""``mantik experiments list``: a user's own experiments only (issue 17, item 5)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.cli.test_runs import Run, env, mantik  # noqa: F401  (fixtures)
from tests.support.platform import PlatformProcess


def test_experiments_list_shows_only_the_users_own(
    mantik: Run,  # noqa: F811
    env: dict[str, str],  # noqa: F811
    sqlite_platform: PlatformProcess,
    tmp_path: Path,
) -> None:
    def create(user: tuple[str, str], name: str) -> str:
        headers = {"Authorization": f"Bearer {sqlite_platform.access_token(user)}"}
        response = httpx.post(
            f"{sqlite_platform.url}/api/2.0/mlflow/experiments/create",
            json={"name": name},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        return str(response.json()["experiment_id"])

    mine = create((env["MANTIK_USERNAME"], env["MANTIK_PASSWORD"]), f"mine-{tmp_path.name}")
    theirs = create(sqlite_platform.new_user("other"), f"theirs-{tmp_path.name}")
    listed = mantik("experiments", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    ids = [e["experiment_id"] for e in json.loads(listed.stdout)]
    assert mine in ids
    assert theirs not in ids
    table = mantik("experiments", "list")
    assert f"mine-{tmp_path.name}" in table.stdout
    assert "theirs" not in table.stdout
