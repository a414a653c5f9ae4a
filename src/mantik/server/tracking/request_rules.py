"""Shapes of MLflow requests our gate refuses for everyone, before MLflow's own checks.

MLflow 3.17.2's permission checks and its handlers read a request in different places for
a few shapes (fixed upstream in 3.18, which we cannot install yet); those shapes are refused
here, so that what is checked is what is executed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

_API = re.compile(r"^/(?:api|ajax-api)/[23]\.0/")
_ARTIFACT_PROXY = re.compile(r"^/(?:api|ajax-api)/2\.0/mlflow-artifacts/")
# Part-wise uploads: the small JSON body's `path` is the client's file; MLflow keeps its name.
_MULTIPART = re.compile(r"^/(?:api|ajax-api)/2\.0/mlflow-artifacts/mpu/(?:create|complete|abort)/")
# Registry calls whose name becomes a permission key: `*` there is MLflow's wildcard grant.
_NAMING = re.compile(r"^/(?:api|ajax-api)/2\.0/mlflow/registered-models/(?:create|rename)$")
_MODEL_TAGS = re.compile(r"^/(?:api|ajax-api)/2\.0/mlflow/registered-models/(?:set|delete)-tag$")
# Which grants guard a registry entry (prompt or registered model) follows this tag: an
# editor who flips it locks everyone out, the owner included.
PROMPT_TAG = "mlflow.prompt.is_prompt"
_PATH_PARAMS = ("path", "artifact_path", "artifact_file_path")
_USER_LIST = re.compile(r"^/(?:api|ajax-api)/2\.0/mlflow/users/list$")


class Refusal(Exception):
    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


# Uploads (the artifact proxy, but for the small JSON of part-wise uploads) are never
# parsed; REST bodies beyond this are not judged.
MAX_JUDGED_BODY = 16 * 1024 * 1024


class Unread:
    """A body the gate did not parse (an upload, or too large to judge)."""


UNREAD = Unread()


def mlflow_body(request: Any) -> Any:
    """The body as MLflow's handlers parse it: JSON whatever the Content-Type, and once more
    if a legacy client double-encoded it. Flask's parsed-JSON cache is left alone."""
    path = request.path
    if not _API.match(path) or (_ARTIFACT_PROXY.match(path) and not _MULTIPART.match(path)):
        return UNREAD
    if (request.content_length or 0) > MAX_JUDGED_BODY:
        return UNREAD
    data = request.get_data(cache=True)  # MLflow reads the same bytes afterwards
    try:
        body = json.loads(data) if data else None
    except ValueError:
        return None
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return body
    return body


def _has_dot_segment(path: str) -> bool:
    decoded = path
    for _ in range(3):  # %252e → %2e → .
        decoded = unquote(decoded)
    return any(part in (".", "..") for part in decoded.replace("\\", "/").split("/")) or (
        "//" in decoded
    )


def body_fields(body: Any) -> dict[str, Any]:
    """The JSON object of a judged body (see :func:`mlflow_body`), or a :class:`Refusal`."""
    if isinstance(body, Unread):
        raise Refusal(400, "INVALID_PARAMETER_VALUE", "The request body is too large.")
    if not isinstance(body, dict):
        raise Refusal(400, "INVALID_PARAMETER_VALUE", "The request body must be a JSON object.")
    return body


def _check_multipart_file(body: Any) -> None:
    """MLflow stores a part-wise upload under the last segment of the body's ``path``:
    that segment must be a file name (``..``, ``.``, ``a\\..\\b`` were a 500, a trailing
    ``/`` an object named like its folder)."""
    value = body_fields(body).get("path")
    # A Windows client's own path (C:\Users\…\big.bin) stays acceptable.
    parts = value.rsplit("/", 1)[-1].split("\\") if isinstance(value, str) else [""]
    if parts[-1] in ("", ".", "..") or any(p in (".", "..") or "\0" in p for p in parts):
        raise Refusal(
            400, "INVALID_PARAMETER_VALUE", "'path' must end in a file name, without '.' or '..'."
        )


def check(request: Any, body: Any, is_admin: Callable[[], bool]) -> None:
    """Raise :class:`Refusal` for a request shape no honest client sends."""
    path: str = request.path
    if _ARTIFACT_PROXY.match(path) and _has_dot_segment(path.split("/mlflow-artifacts/", 1)[-1]):
        raise Refusal(
            400, "INVALID_PARAMETER_VALUE", "Artifact paths may not contain '.', '..' or '//'."
        )
    if _MULTIPART.match(path):
        _check_multipart_file(body)
    for name in _PATH_PARAMS:
        for value in request.args.getlist(name):
            if _has_dot_segment(value):
                raise Refusal(
                    400, "INVALID_PARAMETER_VALUE", f"'{name}' may not contain '.', '..' or '//'."
                )
    if not _API.match(path):
        return
    has_body = body is UNREAD or body not in (None, {}, "", [])
    if request.method == "DELETE" and has_body and (len(request.args) or not request.is_json):
        raise Refusal(
            400,
            "INVALID_PARAMETER_VALUE",
            "A DELETE request names its target in a JSON body sent as application/json, "
            "and not in the query as well.",
        )
    if _NAMING.match(path) and isinstance(body, dict):
        for key in ("name", "new_name", "newName"):
            if str(body.get(key, "")).strip() == "*":
                raise Refusal(400, "INVALID_PARAMETER_VALUE", "'*' is not a valid name.")
    if _MODEL_TAGS.match(path) and isinstance(body, dict) and body.get("key") == PROMPT_TAG:
        raise Refusal(
            400,
            "INVALID_PARAMETER_VALUE",
            f"'{PROMPT_TAG}' is set when a prompt is created and cannot be changed.",
        )
    if _USER_LIST.match(path) and not is_admin():
        raise Refusal(403, "PERMISSION_DENIED", "Only administrators may list users.")
