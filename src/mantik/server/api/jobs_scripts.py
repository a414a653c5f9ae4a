"""The jobs pages' two small scripts (``scripts/*.js``, plain browser JavaScript, no build)."""

from __future__ import annotations

from importlib.resources import files

_SCRIPTS = files("mantik.server.api") / "scripts"


def _script(name: str) -> str:
    return (_SCRIPTS / name).read_text(encoding="utf-8")


_COMMON = _script("jobs-common.js")
LIST = _COMMON + _script("jobs-list.js")
JOB = _COMMON + _script("jobs-job.js")
