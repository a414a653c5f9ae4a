"""The compute and identity API answer as their OpenAPI document says (issue 15, item 9):
schemathesis generates requests from ``/compute-backend/openapi.json`` against the real
platform, signed in as a user, and checks that no answer is a server error and that every
status code, content type and body is one the document names."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support.platform import PlatformProcess

# Enough to reach every field of every operation, small enough for two cores (~15 s).
_EXAMPLES = "25"
_CHECKS = (
    "not_a_server_error,status_code_conformance,response_schema_conformance,"
    "content_type_conformance"
)


def test_the_api_keeps_its_openapi_contract(
    sqlite_platform: PlatformProcess, tmp_path: Path
) -> None:
    user = sqlite_platform.new_user("contract")
    token = sqlite_platform.access_token(user)
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("st")),
            "run",
            f"{sqlite_platform.url}/compute-backend/openapi.json",
            "--checks",
            _CHECKS,
            "--max-examples",
            _EXAMPLES,
            "--seed",
            "15",  # the same requests in every run: a failure here is reproducible
            "--phases",
            "examples,coverage,fuzzing",
            "--continue-on-failure",
            "--header",
            f"Authorization: Bearer {token}",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-2000:]
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert tested is not None and int(tested[1]) >= 13, result.stdout[-5000:]  # all of them
