"""Part 5 — SLURM over SSH, side by side with SLURM on the platform's host.

Debian's sshd on a loopback port in front of the real SLURM (as the tests run it), one
login account. The drivers are measured in this process:

1. submit a small job until SLURM lists it: the SSH driver (connect, SFTP the job folder,
   sbatch in a login shell) against the local driver (sbatch here); median of N each.
2. observe N held jobs with the user's login: one connection and one squeue for all of
   them (what a list request does) against one connection per job (a status request each).
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from bench.report import Check, Options, PartResult, fmt, median

CONFIG = {"Resources": {"Runtime": "5m", "Queue": "debug"}}


def _spec(root: Path, driver: Any, site: str) -> Any:
    from mantik.compute.config.loading import validate_backend_config
    from mantik.server.compute.spec import JobSpec

    run_id = uuid.uuid4().hex
    spec = JobSpec(
        run_id=run_id,
        experiment_id="1",
        name=f"mantik-{run_id[:12]}",
        command="true",
        workdir=root / site / run_id,
        tracking_uri="http://127.0.0.1:9",  # nobody listens: the job's reports fail fast
        artifact_url=None,
        config=validate_backend_config(dict(CONFIG), source="bench"),
        site_chooses_workdir=site == "ssh",
    )
    (spec.workdir / "project").mkdir(parents=True)
    driver.write_job(spec, "bench-token")
    return spec


def _submit_times(root: Path, driver: Any, site: str, count: int, credentials: Any) -> list[float]:
    seconds = []
    for _ in range(count):
        spec = _spec(root, driver, site)
        started = time.perf_counter()
        driver.submit(spec, credentials)
        seconds.append(time.perf_counter() - started)  # sbatch returned: SLURM lists it
    return seconds


def run(options: Options) -> PartResult:
    from tests.support.sshd import login_account, start_sshd

    from mantik.server.compute.drivers.site_config import SiteConfig
    from mantik.server.compute.drivers.slurm.driver import SlurmDriver
    from mantik.server.compute.drivers.slurm_ssh import connection
    from mantik.server.compute.drivers.slurm_ssh.driver import SshSlurmDriver
    from mantik.server.compute.jobs import SiteCredentials, SshLogin, TrackedJob

    root = options.workdir
    root.mkdir(parents=True, exist_ok=True)
    for folder in (root.parent, root):  # sshd reads authorized keys as the account
        folder.chmod(0o711)
    count, held = (5, 50) if options.quick else (20, 200)
    with start_sshd(root / "sshd") as sshd:
        login = login_account(sshd, f"benchssh{uuid.uuid4().hex[:6]}")
        endpoint = {"host": "127.0.0.1", "port": sshd.port, "host_key": sshd.host_key}
        ssh_site = SiteConfig(name="ssh", driver="slurm", ssh=endpoint)  # type: ignore[arg-type]
        ssh_driver = SshSlurmDriver(ssh_site)
        local_driver = SlurmDriver(SiteConfig(name="local-slurm", driver="slurm"))
        credentials = SiteCredentials(
            "", "", SshLogin(login.name, private_key=login.key_file.read_text())
        )
        over_ssh = _submit_times(root, ssh_driver, "ssh", count, credentials)
        local = _submit_times(root, local_driver, "local", count, None)

        ids = []
        for _ in range(held):
            out = subprocess.run(
                ["setpriv", f"--reuid={login.name}", f"--regid={login.name}", "--init-groups",
                 "sbatch", "--hold", "--parsable", "--job-name=bench-ssh", "--wrap", "true"],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            ids.append(out.strip().split(";")[0])
        jobs = [TrackedJob(i, root / "ssh" / f"held-{i}") for i in ids]
        commands: list[str] = []
        run_command = connection.SshSession.run

        def counted(session: Any, argv: list[str], **kw: Any) -> Any:
            commands.append(argv[0])
            return run_command(session, argv, **kw)

        connection.SshSession.run = counted  # type: ignore[method-assign]
        try:
            started = time.perf_counter()
            batched = ssh_driver.observe_many(jobs, credentials)
            batched_s = time.perf_counter() - started
            batched_squeues = commands.count("squeue")
            sample = jobs[: max(10, held // 10)]  # one connection per job: a sample
            started = time.perf_counter()
            for job in sample:
                ssh_driver.observe(job, credentials)
            one_by_one_s = (time.perf_counter() - started) * len(jobs) / len(sample)
        finally:
            connection.SshSession.run = run_command  # type: ignore[method-assign]
            subprocess.run(["scancel", *ids], check=False)
    pending = sum(1 for o in batched.values() if o.state.value == "PENDING")
    ssh_median, local_median = median(over_ssh), median(local)
    rows = [
        ["submit → listed by SLURM, s (median)", fmt(ssh_median, 3), fmt(local_median, 3),
         fmt(ssh_median / local_median, 2)],
        [f"observe {held} held jobs, s", fmt(batched_s, 2), fmt(one_by_one_s, 1),
         fmt(batched_s / one_by_one_s, 3)],
        ["  squeue calls for them", str(batched_squeues), str(len(jobs)), ""],
        ["  seen PENDING", str(pending), "", ""],
    ]  # fmt: skip
    return PartResult(
        number=5,
        title="SLURM over SSH",
        header=["", "SSH driver", "reference", "ratio"],
        rows=rows,
        checks=[
            Check("submit over SSH", ssh_median, "<", 1.5, " s"),
            Check(f"squeue calls for {held} jobs", float(batched_squeues), "<=", 1),
        ],
        notes=[
            "reference for submit: the local SLURM driver (sbatch on the platform's host); "
            "for observing: one connection per job (a status request each), timed on a "
            f"sample of {len(sample)} and scaled to {held}.",
            f"{count} submissions each; sshd on loopback (no network latency).",
        ],
        data={"ssh_submit_s": over_ssh, "local_submit_s": local, "batched_s": batched_s},
    )
