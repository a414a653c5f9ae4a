"""How the local driver starts a job: the command line, as a pure function."""

from __future__ import annotations

from mantik.server.compute.job_folder import STDOUT
from mantik.server.compute.spec import JobSpec


def start_command(spec: JobSpec) -> list[str]:
    """Detached (setsid, background, the starting shell exits): the job survives platform
    restarts and is reaped by init, whichever worker started it. Prints the job's pid."""
    return [
        "bash",
        "-c",
        'setsid bash "$1" >"$2" 2>&1 </dev/null & echo $!',
        "mantik-job",
        str(spec.script_path),
        str(spec.mantik_dir / STDOUT),
    ]
