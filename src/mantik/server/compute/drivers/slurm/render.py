"""What the SLURM driver hands to sbatch, rendered by pure functions (golden-tested)."""

from __future__ import annotations

import re

from mantik.compute.config.units import GIB, MIB
from mantik.server.compute.drivers.site_config import SiteConfig
from mantik.server.compute.errors import InvalidSubmission
from mantik.server.compute.spec import JobSpec

_MINUTE, _HOUR, _DAY = 60, 3600, 86400
# Values that reach sbatch must be plain tokens: no whitespace, quotes or newlines.
_SAFE_VALUE = re.compile(r"[A-Za-z0-9_.,:@%&|!()\[\]*+=/-]+")


def _require_positive(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")


def slurm_time(seconds: int) -> str:
    """``--time`` for sbatch: ``"HH:MM:SS"`` or ``"D-HH:MM:SS"``, at least one minute.

    >>> slurm_time(43200), slurm_time(90000), slurm_time(30)
    ('12:00:00', '1-01:00:00', '00:01:00')
    """
    _require_positive(seconds, "seconds")
    days, rest = divmod(max(seconds, _MINUTE), _DAY)
    hours, rest = divmod(rest, _HOUR)
    minutes, secs = divmod(rest, _MINUTE)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock


def slurm_memory(size: int) -> str:
    """``--mem`` for sbatch: ``"12G"`` when whole GiB, else MiB rounded up (``"500M"``)."""
    _require_positive(size, "size")
    if size % GIB == 0:
        return f"{size // GIB}G"
    return f"{-(-size // MIB)}M"


def _checked(key: str, value: str) -> str:
    if not _SAFE_VALUE.fullmatch(value):
        raise InvalidSubmission(
            f"Resources.{key}={value!r} contains characters SLURM does not accept "
            "(spaces, quotes or line breaks)."
        )
    return value


def sbatch_arguments(spec: JobSpec, site: SiteConfig) -> list[str]:
    """The sbatch options for ``spec`` (UNICORE's mapping: CPUs → --ntasks; the tasks of
    ``"Launcher": "srun"``: TasksPerNode → --ntasks-per-node, CPUsPerTask → --cpus-per-task)."""
    r = spec.config.resources
    args = [
        f"--job-name={spec.name}",
        f"--output={spec.mantik_dir}/slurm-%j.out",
        f"--chdir={spec.workdir}",
        "--parsable",
    ]
    queue = r.queue or site.partition
    if queue:
        args.append(f"--partition={_checked('Queue', queue)}")
    if r.runtime is not None:
        args.append(f"--time={slurm_time(r.runtime)}")
    if r.nodes is not None:
        args.append(f"--nodes={r.nodes}")
    if r.cpus is not None:
        args.append(f"--ntasks={r.cpus}")
    if r.cpus_per_node is not None:
        args.append(f"--ntasks-per-node={r.cpus_per_node}")
    if r.tasks_per_node is not None:  # with "Launcher": "srun" only
        args.append(f"--ntasks-per-node={r.tasks_per_node}")
    if r.cpus_per_task is not None:
        args.append(f"--cpus-per-task={r.cpus_per_task}")
    if r.gpus_per_node is not None:
        args.append(f"--gpus-per-node={r.gpus_per_node}")
    if r.memory is not None:
        args.append(f"--mem={slurm_memory(r.memory)}")
    if r.reservation:
        args.append(f"--reservation={_checked('Reservation', r.reservation)}")
    if r.node_constraints:
        args.append(f"--constraint={_checked('NodeConstraints', r.node_constraints)}")
    if r.qos:
        args.append(f"--qos={_checked('QoS', r.qos)}")
    if spec.project:
        args.append(f"--account={_checked('project', spec.project)}")
    return [*args, *site.sbatch_args]
