"""Python that the job wrapper runs on the compute node, embedded in the script as text.

These files are not imported by the platform: :func:`source` returns their text. They
must run on any Python 3.8+ (the snapshot: stdlib only, on the host; the init: with the
job's own MLflow, inside its container or venv) — no mantik on the node.
"""

from __future__ import annotations

from importlib.resources import files


def source(name: str) -> str:
    """The text of ``name``: ``offline_init`` or ``offline_snapshot``."""
    return files(__package__).joinpath(f"{name}.py").read_text()
