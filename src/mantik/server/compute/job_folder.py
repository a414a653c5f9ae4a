"""The job folder: one per run, and the only place its file names are spelled.

Layout (``.mantik/`` holds the platform's and the wrapper's files)::

    <work root>/<run id>/
    ├── project/                  the uploaded MLproject; the entry point starts here
    ├── mantik-image.sif          the image, where the driver copies it to the site
    └── .mantik/
        ├── job.sh                the wrapper (also logged as an artifact)
        ├── job-token             the job's token (0600; never in the script)
        ├── job.log               what the entry point printed (its first part)
        ├── job.log.tail.<S>.<n>  the rest, in parts of S bytes; the newest two are kept
        ├── exit-code             written by the wrapper when the program ended
        ├── tracking              the mode the job chose: online | offline
        ├── stdout                the wrapper's own output (local site)
        ├── image-digest          which cached image the job runs
        ├── backend-config.json   the config as the platform understood it
        ├── ranks/                "Launcher": "srun": rank-<N>.exit, each task's exit code;
        │                         rank-<N>/, the tracking store of a rank but 0 (not synced)
        └── offline/              offline tracking: the job's local MLflow store
            ├── mlruns.db         live, written by the job only
            ├── snapshot.db       consistent copies, published atomically
            ├── snapshot.db.blocks  their block digests
            ├── artifacts/        the local experiment's artifact location
            └── init.py, snapshot.py  the node scripts

Generated scripts (the wrapper, the UNICORE prologue) take the names from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MANTIK = ".mantik"
PROJECT = "project"
STAGED_IMAGE = "mantik-image.sif"
SCRIPT = "job.sh"
TOKEN = "job-token"  # noqa: S105 (a file name)
LOG = "job.log"
LOG_TAIL = f"{LOG}.tail."  # + part bytes + "." + zero-padded index
EXIT_CODE = "exit-code"
TRACKING_MODE = "tracking"
STDOUT = "stdout"
IMAGE_DIGEST = "image-digest"
BACKEND_CONFIG = "backend-config.json"
RANKS = "ranks"
OFFLINE = "offline"
LIVE_STORE = "mlruns.db"
SNAPSHOT = "snapshot.db"
BLOCKS = f"{SNAPSHOT}.blocks"
ARTIFACTS = "artifacts"
INIT_SCRIPT = "init.py"
SNAPSHOT_SCRIPT = "snapshot.py"


def is_log_file(name: str) -> bool:
    """Whether ``name`` (in ``.mantik``) holds part of the job's log."""
    head, _, index = name.removeprefix(LOG_TAIL).partition(".")
    return name == LOG or (name.startswith(LOG_TAIL) and head.isdigit() and index.isdigit())


def is_wrapper_script(path: bytes) -> bool:
    """Whether ``path`` (e.g. an argument of a process) names a job's wrapper script."""
    return path.endswith(os.fsencode(f"/{MANTIK}/{SCRIPT}"))


@dataclass(frozen=True)
class JobFolder:
    """Paths inside one job folder (``root``) as the platform sees it."""

    root: Path

    @property
    def mantik(self) -> Path:
        return self.root / MANTIK

    @property
    def project(self) -> Path:
        return self.root / PROJECT

    @property
    def script(self) -> Path:
        return self.mantik / SCRIPT

    @property
    def log(self) -> Path:
        return self.mantik / LOG

    @property
    def token(self) -> Path:
        return self.mantik / TOKEN

    @property
    def exit_code_file(self) -> Path:
        return self.mantik / EXIT_CODE

    def exit_code(self) -> int | None:
        """The exit code the wrapper recorded, if it got that far."""
        try:
            return int(self.exit_code_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
