"""Golden files: rendered text compared with a recorded copy in tests/server/golden/."""

from __future__ import annotations

import os
import re
from pathlib import Path

from mantik.server.compute.job_folder import INIT_SCRIPT, SNAPSHOT_SCRIPT
from mantik.server.compute.offline.node import source

GOLDEN = Path(__file__).parent / "golden"
# The node scripts the wrapper embeds (as here-documents), by the name it gives them.
NODE_SCRIPTS = {INIT_SCRIPT: "offline_init", SNAPSHOT_SCRIPT: "offline_snapshot"}
_EMBEDDED = re.compile(
    r"""(?P<open>cat >"\$MANTIK_OFFLINE/(?P<file>[\w.]+)" <<'MANTIK_PY'\n)"""
    r"(?P<body>.*?)\n(?P<close>MANTIK_PY\n)",
    re.DOTALL,
)


def without_node_scripts(script: str) -> str:
    """``script`` (a wrapper) with each embedded node script replaced by one line naming
    it. Each must be embedded verbatim; the scripts are tested on their own, so that editing
    one re-records no wrapper."""

    def placeholder(match: re.Match[str]) -> str:
        name = NODE_SCRIPTS[match["file"]]
        assert match["body"] == source(name).rstrip(), f"{name}.py is not embedded verbatim"
        line = f"# mantik/server/compute/offline/node/{name}.py, embedded verbatim"
        return f"{match['open']}{line}\n{match['close']}"

    replaced, count = _EMBEDDED.subn(placeholder, script)
    assert count in (0, len(NODE_SCRIPTS)), f"{count} node scripts embedded"
    return replaced


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("MANTIK_RECORD_GOLDEN") == "1" or not path.exists():
        if os.environ.get("CI") == "true" and not path.exists():
            raise AssertionError(f"golden file {path} is missing")
        path.write_text(text)
    expected = path.read_text()
    assert text == expected, (
        f"{name} differs from the recorded golden file. If the change is intended, re-record "
        f"with: MANTIK_RECORD_GOLDEN=1 pytest {Path(__file__).parent}"
    )
