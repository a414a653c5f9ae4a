"""One image submission in a fresh client process.

``python -m bench.images_client PROJECT EXPERIMENT`` submits PROJECT (backend.json names a
SingularityImage) with ``ComputeBackendClient.submit_run``; signing in happens before the
clock starts. Prints ``BENCH_RESULT {json}`` with the time of the call and its phases
(hashing and asking the platform until the first byte, the image, the rest).
"""

from __future__ import annotations

import sys
import time

import mantik
from bench.report import emit_result


def main() -> None:
    project, experiment = sys.argv[1:3]
    client = mantik.ComputeBackendClient.from_env()
    client.list_runs(experiment_id=experiment)  # signs in: not part of the submission
    marks: dict[str, float] = {}
    started = time.monotonic()

    def progress(sent: int, total: int) -> None:
        now = time.monotonic() - started
        marks.setdefault("first_byte_s", now)
        marks["last_byte_s"] = now

    submitted = client.submit_run(experiment, {}, project, "backend.json", progress=progress)
    seconds = time.monotonic() - started
    info = client.wait(submitted.run_id, timeout=300, interval=0.5)
    emit_result(
        {
            "seconds": seconds,
            "started_at": started,
            "image_bytes_sent": submitted.image_bytes_sent,
            "run_status": info.run_status,
            **marks,
        }
    )


if __name__ == "__main__":
    main()
