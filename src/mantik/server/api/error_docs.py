"""What the API's error responses look like, for its OpenAPI document.

Every refusal has the same body (:mod:`.errors` makes it): ``{"detail": "<what was wrong>"}``,
plus ``code`` on identity errors; validation errors (422) too, with one message naming each
bad field, not FastAPI's list of error objects.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    detail: str = Field(description="What was wrong, in the user's terms.")
    code: str | None = Field(
        default=None, description="Identity errors: a stable reason (e.g. NEW_PASSWORD_REQUIRED)."
    )


_REF = "#/components/schemas/ErrorBody"
_MEANING = {
    400: "The request cannot be served as sent (the detail says why).",
    401: "No valid token or credentials.",
    403: "Not allowed for this user.",
    404: "No such experiment, run, image or user.",
    409: "Conflicts with what exists (or with a submission still going on).",
    410: "A finished job's folder was removed after its retention (its log is in the run).",
    413: "The request body is too large.",
    422: "A field is missing or malformed (or an Idempotency-Key is reused).",
    429: "Too many failed sign-ins; retry later.",
    502: "The compute site failed or could not be reached.",
    503: "The compute site or a store is unavailable right now.",
    507: "The platform has no disk space left for this.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a router whose routes may answer with these codes (as JSON, also
    on routes whose answers are text)."""
    return {
        code: {
            "model": ErrorBody,
            "description": _MEANING[code],
            "content": {"application/json": {"schema": {"$ref": _REF}}},
        }
        for code in codes
    }


IDENTITY_ERRORS = error_responses(400, 401, 403, 404, 409, 413, 422, 429)
COMPUTE_ERRORS = error_responses(400, 401, 403, 404, 409, 410, 413, 422, 502, 503, 507)
