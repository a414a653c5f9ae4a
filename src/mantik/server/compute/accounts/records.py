"""Who a recorded job runs as: the columns of its record (``mantik_compute_jobs``)."""

from __future__ import annotations

from typing import Any

from mantik.server.compute.accounts.identity import JobIdentity
from mantik.server.models import ComputeJob


def run_as_columns(identity: JobIdentity) -> dict[str, Any]:
    if identity.is_platform:
        return {}
    return {
        "run_as_account": identity.account,
        "run_as_uid": identity.uid,
        "run_as_gid": identity.gid,
    }


def identity_of(job: ComputeJob) -> JobIdentity | None:
    """Who a recorded job runs as (None: the platform)."""
    if job.run_as_uid is None or job.run_as_gid is None:
        return None
    home = JobIdentity.of_account(job.run_as_account) if job.run_as_account else None
    return JobIdentity(
        job.run_as_uid, job.run_as_gid, job.run_as_account, home.home if home else None
    )
