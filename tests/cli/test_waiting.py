"""Feedback during long phases (issue 17, item 3): while waiting, the run's state as it
changes; while submitting, the image's hashing and the upload — on a terminal and off one."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from tests.cli.test_runs import Run, env, mantik  # noqa: F401  (fixtures)
from tests.support import apptainer
from tests.support.platform import PlatformProcess
from tests.support.terminal import run_on_a_terminal

MiB = 1024 * 1024


def _project(root: Path, command: str, config: dict[str, object]) -> Path:
    root.mkdir()
    (root / "MLproject").write_text(
        f"name: waiting\nentry_points:\n  main:\n    command: {json.dumps(command)}\n"
    )
    (root / "backend.json").write_text(json.dumps(config))
    return root


def test_wait_prints_each_state_change_once_off_a_terminal(
    mantik: Run,  # noqa: F811
    tmp_path: Path,
) -> None:
    project = _project(tmp_path / "p", "sleep 2; echo done", {"ComputeSite": "local"})
    submitted = mantik(
        "runs", "submit", str(project), "--backend-config", "backend.json",
        "--experiment-name", "waiting-plain", "--json",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    run_id = json.loads(submitted.stdout)["run_id"]
    waited = mantik("runs", "wait", run_id, "--interval", "0.2")
    assert waited.returncode == 0, waited.stderr
    lines = [line for line in waited.stderr.splitlines() if f"run {run_id} " in line]
    states = [re.search(rf"run {run_id} (\w+)", line)[1] for line in lines]  # type: ignore[index]
    # ~10 polls while it runs, one line for it; the last line is how it ended.
    assert states.count("RUNNING") <= 1 and states[-1] == "COMPLETED", waited.stderr
    assert len(states) == len(set(states)), waited.stderr
    assert re.match(r"\d\d:\d\d:\d\d run \w+ \w+ on local, \d+:\d\d since submission", lines[0])
    assert "\x1b[" not in waited.stderr  # plain text: no spinner, no colours in a log


def test_submit_wait_on_a_terminal_shows_hashing_upload_and_states(
    env: dict[str, str],  # noqa: F811
    sqlite_platform: PlatformProcess,
    tmp_path: Path,
) -> None:
    bin_dir = tmp_path / "bin"
    config = {
        "ComputeSite": "local",
        "SingularityImage": "image.sif",
        "PreRunCommands": [f"export PATH={bin_dir}:$PATH"],
    }
    project = _project(tmp_path / "p", "sleep 5; echo in container", config)
    with (project / "image.sif").open("wb") as image:
        for n in range(24):
            image.write(bytes([n]) * MiB)
    apptainer.runner(bin_dir, cache_dir=sqlite_platform.image_cache("local"))
    argv = [
        sys.executable, "-m", "mantik.cli", "runs", "submit", str(project),
        "--backend-config", "backend.json", "--experiment-name", "waiting-tty",
        "--wait", "--interval", "0.3",
    ]  # fmt: skip
    code, text = run_on_a_terminal(argv, env, tmp_path)
    assert code == 0, text
    assert "Hashing image" in text and "Uploading" in text, text
    assert re.search(r"run \w+ RUNNING on local", text), text
    assert re.search(r"run \w+ COMPLETED on local", text), text
