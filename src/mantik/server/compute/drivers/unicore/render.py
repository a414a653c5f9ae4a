"""What the UNICORE driver sends: the job description and the script's prologue, rendered
by pure functions (golden-tested)."""

from __future__ import annotations

import re
from typing import Any

from mantik.compute.config.units import unicore_memory, unicore_runtime
from mantik.server.compute.job_folder import MANTIK, PROJECT, TOKEN
from mantik.server.compute.spec import JobSpec

SCRIPT = "mantik-job.sh"  # uploaded names, in the working directory UNICORE makes
ARCHIVE = "project.zip"
STDOUT, STDERR = "stdout", "stderr"  # written by UNICORE there
# Unpack the uploads into the layout the wrapper expects (.mantik/ and project/).
PROLOGUE = (
    f"mkdir -p {MANTIK} {PROJECT} && mv -f {TOKEN} {MANTIK}/ && chmod 600 {MANTIK}/{TOKEN}",
    f"(cd {PROJECT} && (python3 -m zipfile -e ../{ARCHIVE} . 2>/dev/null"
    f" || unzip -qo ../{ARCHIVE})) && rm -f {ARCHIVE}",
)


def job_name(spec: JobSpec) -> str:
    # UNICORE replaces names with other characters than letters and digits ("UNICORE_job").
    return "mantik" + re.sub(r"[^A-Za-z0-9]", "", spec.run_id)[:12]


def job_description(spec: JobSpec) -> dict[str, Any]:
    """The UNICORE job description for ``spec`` (golden-tested)."""
    r = spec.config.resources
    resources: dict[str, str] = {}
    if r.runtime is not None:
        resources["Runtime"] = unicore_runtime(r.runtime)
    if r.queue:
        resources["Queue"] = r.queue
    if r.nodes is not None:
        resources["Nodes"] = str(r.nodes)
    if r.cpus is not None:
        resources["TotalCPUs"] = str(r.cpus)  # "CPUs" is not a UNICORE built-in
    if r.cpus_per_node is not None:
        resources["CPUsPerNode"] = str(r.cpus_per_node)
    if r.gpus_per_node is not None:
        resources["GPUsPerNode"] = str(r.gpus_per_node)
    if r.memory is not None:
        resources["Memory"] = unicore_memory(r.memory)  # "12GiB" would fail the job
    if r.reservation:
        resources["Reservation"] = r.reservation
    if r.node_constraints:
        resources["NodeConstraints"] = r.node_constraints
    if r.qos:
        resources["QoS"] = r.qos
    description: dict[str, Any] = {
        "Name": job_name(spec),
        "Executable": "/bin/bash",
        "Arguments": [SCRIPT],
        "Environment": dict(spec.config.environment),
        "Stdout": STDOUT,
        "Stderr": STDERR,
        "Tags": ["mantik", spec.run_id],
    }
    if resources:
        description["Resources"] = resources
    if spec.project:
        description["Project"] = spec.project
    return description
