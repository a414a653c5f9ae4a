"""The job wrapper and the sbatch options: golden files, and the script really running."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mantik.compute.config.loading import validate_backend_config
from mantik.server.compute.drivers.base import Driver
from mantik.server.compute.drivers.site_config import SiteConfig
from mantik.server.compute.drivers.slurm.render import sbatch_arguments
from mantik.server.compute.drivers.wrapper import render_wrapper
from mantik.server.compute.spec import JobSpec
from tests.server.golden_files import without_node_scripts

GUIDE_CONFIG = {
    "SingularityImage": "image.sif",
    "UnicoreApiUrl": "https://zam2125.zam.kfa-juelich.de:9112/JUWELS/rest/core",
    "Environment": {"TEST_ENV_VAR": "variable value"},
    "Resources": {
        "Runtime": "12h",
        "Queue": "batch",
        "Nodes": 1,
        "CPUs": 1,
        "CPUsPerNode": 1,
        "Memory": "12GiB",
        "Reservation": "my-reservation",
        "NodeConstraints": "largemem",
        "QoS": "normal",
    },
}


def spec(config: dict[str, Any], workdir: Path = Path("/jobs/r1"), **kw: Any) -> JobSpec:
    defaults: dict[str, Any] = {
        "run_id": "0123456789abcdef0123456789abcdef",
        "experiment_id": "7",
        "name": "mantik-0123456789ab",
        "command": "python train.py --alpha 0.5",
        "workdir": workdir,
        "tracking_uri": "https://mantik.example.org",
        "artifact_url": "https://mantik.example.org/api/2.0/mlflow-artifacts/artifacts/7/r/artifacts",
        "config": validate_backend_config(config),
    }
    defaults.update(kw)
    return JobSpec(**defaults)


def test_wrapper_for_the_guide_config_in_apptainer(golden: Any) -> None:
    job = spec(GUIDE_CONFIG, image="/jobs/r1/project/image.sif")
    golden("wrapper-apptainer.sh", without_node_scripts(render_wrapper(job)))


def test_wrapper_with_venv_modules_and_commands(golden: Any) -> None:
    config = {
        "ComputeSite": "slurm",
        "Venv": "/p/project/venv",
        "Modules": ["Stages/2024", "CUDA"],
        "PreRunCommands": ["echo before"],
        "PostRunCommands": ["echo after"],
        "Environment": {"QUOTED": 'it\'s a "test" $HOME'},
    }
    golden("wrapper-venv.sh", without_node_scripts(render_wrapper(spec(config))))


def test_sbatch_options_for_the_guide_config(golden: Any) -> None:
    args = sbatch_arguments(
        spec(GUIDE_CONFIG, project="training2"), SiteConfig(name="s", driver="slurm")
    )
    golden("sbatch-guide.txt", "\n".join(args) + "\n")
    assert "--mem=12G" in args
    assert "--time=12:00:00" in args


def test_hostile_command_and_values_stay_data(tmp_path: Path, recorder: Any) -> None:
    hostile = "a'; touch /tmp/mantik-pwned; echo 'b\n$(id) `id` $HOME"
    job = spec(
        {"Environment": {"HOSTILE": hostile}},
        workdir=tmp_path,
        command=f"printf '%s' {shlex.quote(hostile)} > out.txt; printf '%s' \"$HOSTILE\" > env.txt",
        tracking_uri=f"http://127.0.0.1:{recorder.server_port}",
        artifact_url=None,
    )
    Driver.write_job(_NoDriver(), job, "job-token-value")
    (tmp_path / "project").mkdir()
    result = subprocess.run(
        ["bash", str(job.script_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "project" / "out.txt").read_text() == hostile
    assert (tmp_path / "project" / "env.txt").read_text() == hostile
    assert not Path("/tmp/mantik-pwned").exists()
    assert "job-token-value" not in job.script_path.read_text()


class _Recorder(BaseHTTPRequestHandler):
    calls: list[tuple[str, str, str, bytes]] = []

    def _record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.calls.append((self.command, self.path, self.headers.get("Authorization", ""), body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_POST = do_PUT = _record

    def do_GET(self) -> None:  # the wrapper's reachability probe (Tracking "auto")
        self.send_response(200 if self.path == "/api/mantik/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Any:
    _Recorder.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("code", "status"), [(0, "FINISHED"), (3, "FAILED")])
def test_wrapper_reports_status_exit_code_and_log(
    tmp_path: Path, recorder: Any, code: int, status: str
) -> None:
    url = f"http://127.0.0.1:{recorder.server_port}"
    job = spec(
        {},
        workdir=tmp_path,
        command=f"echo training; exit {code}",
        tracking_uri=url,
        artifact_url=f"{url}/artifacts",
    )
    Driver.write_job(_NoDriver(), job, "the-job-token")
    (tmp_path / "project").mkdir()
    env = {"PATH": os.environ["PATH"], "MANTIK_PASSWORD": "leak", "MLFLOW_TRACKING_USERNAME": "x"}
    result = subprocess.run(
        ["bash", str(job.script_path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == code
    assert "training" not in result.stdout  # only in the log: a copy would not be bounded
    assert (tmp_path / ".mantik" / "job.log").read_text() == "training\n"
    assert (tmp_path / ".mantik" / "exit-code").read_text().strip() == str(code)
    calls = _Recorder.calls
    assert all(auth == "Bearer the-job-token" for _, _, auth, _ in calls)
    updates = [json.loads(b) for m, p, _, b in calls if p.endswith("runs/update")]
    assert [u["status"] for u in updates] == ["RUNNING", status]
    assert "end_time" in updates[-1]
    assert ("PUT", "/artifacts/mantik/job.log") in [(m, p) for m, p, _, _ in calls]


def test_wrapper_records_killed_on_sigterm(tmp_path: Path, recorder: Any) -> None:
    url = f"http://127.0.0.1:{recorder.server_port}"
    job = spec(
        {}, workdir=tmp_path, command="echo started; sleep 60", tracking_uri=url, artifact_url=None
    )
    Driver.write_job(_NoDriver(), job, "t")
    (tmp_path / "project").mkdir()
    log = tmp_path / ".mantik" / "job.log"
    with subprocess.Popen(["bash", str(job.script_path)]) as process:
        _wait_for(lambda: log.exists() and "started" in log.read_text())
        process.terminate()
        assert process.wait(timeout=30) == 143
    updates = [json.loads(b) for _, p, _, b in _Recorder.calls if p.endswith("runs/update")]
    assert updates[-1]["status"] == "KILLED"
    assert "started\nmantik: received termination signal, stopping the job\n" in log.read_text()


def _wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


_MARKER = re.compile(rb"\n\[mantik: (\d+) bytes of output left out here\]\n")


def test_a_flood_keeps_the_head_and_the_tail(tmp_path: Path, recorder: Any) -> None:
    """5 MB of output under a 255 KiB cap: the first 85 KiB and the last 85 to 170 KiB stay on
    disk; the uploaded log is head, marker, tail, ending with the last line."""
    url = f"http://127.0.0.1:{recorder.server_port}"
    command = "yes 'a line of output' | head -c 5000000; echo; echo the-last-line"
    job = spec(
        {},
        workdir=tmp_path,
        command=command,
        tracking_uri=url,
        artifact_url=f"{url}/artifacts",
        log_max_bytes=255 * 1024,
    )
    Driver.write_job(_NoDriver(), job, "t")
    (tmp_path / "project").mkdir()
    result = subprocess.run(["bash", str(job.script_path)], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) < 1000
    files = {p.name: p.stat().st_size for p in (tmp_path / ".mantik").iterdir()}
    assert files["job.log"] == 85 * 1024
    parts = sorted(name for name in files if name.startswith("job.log.tail.87040."))
    assert len(parts) == 2, files
    assert sum(files.values()) < 260 * 1024  # no copy, no upload file left behind
    uploads = [
        b for m, p, _, b in _Recorder.calls if (m, p) == ("PUT", "/artifacts/mantik/job.log")
    ]
    assert len(uploads) == 1
    body = uploads[0]
    assert body.startswith(b"a line of output\n") and body.endswith(b"\nthe-last-line\n")
    dropped = _MARKER.search(body)
    assert dropped is not None
    kept = len(body) - len(dropped[0])
    assert kept + int(dropped[1]) == 5000000 + len("\nthe-last-line\n")
    assert len(body) <= 255 * 1024 + 100


def test_a_job_killed_in_a_flood_keeps_its_tail(tmp_path: Path, recorder: Any) -> None:
    url = f"http://127.0.0.1:{recorder.server_port}"
    command = "yes 'a line of output' | head -c 3000000; echo flood-over; sleep 60"
    job = spec({}, workdir=tmp_path, command=command, tracking_uri=url, artifact_url=None)
    job = dataclasses.replace(job, log_max_bytes=256 * 1024)
    Driver.write_job(_NoDriver(), job, "t")
    (tmp_path / "project").mkdir()

    def newest_part() -> bytes:
        parts = sorted((tmp_path / ".mantik").glob("job.log.tail.*"))
        return parts[-1].read_bytes() if parts else b""

    with subprocess.Popen(["bash", str(job.script_path)]) as process:
        _wait_for(lambda: b"flood-over" in newest_part())
        process.terminate()
        assert process.wait(timeout=30) == 143
    # The job's own shell may still say "Terminated" after the wrapper's line.
    assert b"flood-over\nmantik: received termination signal, stopping the job\n" in newest_part()


class _NoDriver(Driver):
    def __init__(self) -> None:
        pass

    def submit(self, spec: JobSpec) -> str:  # pragma: no cover
        raise NotImplementedError

    def poll(self, jobs: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def cancel(self, job: Any) -> None:  # pragma: no cover
        raise NotImplementedError


def test_unicore_job_description_for_the_guide_config(golden: Any) -> None:
    import json as json_module

    from mantik.server.compute.drivers.unicore.render import job_description

    description = job_description(spec(GUIDE_CONFIG, project="training2"))
    golden("unicore-guide.json", json_module.dumps(description, indent=2) + "\n")
    resources = description["Resources"]
    assert resources["Memory"] == "12G"  # the guide's "12GiB" fails on UNICORE
    assert resources["Runtime"] == "12h"
    assert resources["TotalCPUs"] == "1" and "CPUs" not in resources
    assert description["Project"] == "training2"
    assert description["Name"].isalnum()


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ({"Runtime": "90m", "Memory": "1536M"}, {"Runtime": "90m", "Memory": "1536M"}),
        ({"Runtime": "1h30m", "Memory": "500MiB"}, {"Runtime": "90m", "Memory": "500M"}),
        ({"Runtime": 45, "Memory": 1000}, {"Runtime": "45s", "Memory": "1K"}),
        ({"Runtime": "1d"}, {"Runtime": "1d"}),
    ],
)
def test_unicore_units(resources: dict[str, Any], expected: dict[str, str]) -> None:
    from mantik.server.compute.drivers.unicore.render import job_description

    rendered = job_description(spec({"Resources": resources}))["Resources"]
    assert {k: rendered[k] for k in expected} == expected


def test_unicore_wrapper_runs_in_the_folder_the_site_chose(golden: Any) -> None:
    from mantik.server.compute.drivers.unicore.render import PROLOGUE

    job = spec(GUIDE_CONFIG, image="image.sif", site_chooses_workdir=True)
    script = render_wrapper(job, prologue=PROLOGUE)
    golden("wrapper-unicore.sh", without_node_scripts(script))
    assert 'export MANTIK_DIR="$PWD/.mantik"' in script
