"""Client side of bench part 2, run in its own process so its RSS is its own."""

from __future__ import annotations

import argparse
import resource
import subprocess
import time
from pathlib import Path

from bench.report import emit_result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["latency", "big"])
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()

    import mantik

    # No MLflow import: the client's own footprint is what is measured.
    client = mantik.ComputeBackendClient.from_env()
    response = client._http.post(
        f"{client.platform_url}/api/2.0/mlflow/experiments/create",
        json={"name": f"bench-{args.mode}-{time.time_ns()}"},
        headers=client._headers(),
    )
    response.raise_for_status()
    experiment = response.json()["experiment_id"]
    if args.mode == "latency":
        seconds = []
        for _ in range(args.count):
            started = time.perf_counter()
            submitted = client.submit_run(experiment, {}, args.project, args.config)
            # "Visible in SLURM": the scheduler lists the job id the platform returned.
            listed = subprocess.run(
                ["squeue", "--states=all", "-h", "-j", submitted.job_id, "-o", "%i"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            seconds.append(time.perf_counter() - started)
            assert submitted.job_id in listed, (submitted.job_id, listed)
        emit_result({"seconds": seconds})
    else:
        before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        window_start = time.monotonic()
        submitted = client.submit_run(experiment, {}, args.project, args.config)
        window = [window_start, time.monotonic()]
        emit_result(
            {
                "seconds": time.perf_counter() - started,
                "window": window,
                "client_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "client_before_mb": before_mb,
                "run_id": submitted.run_id,
            }
        )


if __name__ == "__main__":
    main()
