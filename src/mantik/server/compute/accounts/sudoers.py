"""The sudoers rule that lets a platform which is not root run jobs as their accounts.

It names the job commands only (those the drivers and job folders run, by absolute path)
and the accounts or group they may run as, never root. What the platform can do with them
is what a job can: act as those accounts, no more.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence

from mantik.server.compute.accounts.identity import SYSTEM_PATH

# Job folders (mkdir, tar, rm), local jobs (bash starts, kill stops), SLURM jobs.
JOB_COMMANDS = ("mkdir", "tar", "rm", "bash", "kill", "sbatch", "scancel")


def job_command_paths() -> list[str]:
    found = (shutil.which(name, path=f"{SYSTEM_PATH}:/usr/sbin:/sbin") for name in JOB_COMMANDS)
    return [path for path in found if path]


def sudoers_rule(platform_user: str, accounts: Sequence[str], groups: Sequence[str]) -> str:
    targets = [*accounts, *(f"%{g}" for g in groups), "!root"]
    commands = ", ".join(job_command_paths())
    return "\n".join(
        [
            f"# mantik: the platform's account ({platform_user}) starts, watches and stops jobs",
            "# as their users' accounts, never as root. Install: visudo -f /etc/sudoers.d/mantik",
            f"Cmnd_Alias MANTIK_JOBS = {commands}",
            "Defaults!MANTIK_JOBS !requiretty, !use_pty",
            f"{platform_user} ALL=({', '.join(targets)}) NOPASSWD: MANTIK_JOBS",
            "",
        ]
    )
