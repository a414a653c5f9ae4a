"""Errors of the platform: what it refuses, and why, in words for the user.

Hierarchy::

    MantikError (mantik._exceptions)
    └── ServerError                   a request the platform refuses or cannot serve
        ├── IdentityError             accounts, sign-in, tokens (identity.errors)
        │   ├── BadRequest            the request is malformed or breaks a rule
        │   ├── InvalidCredentials    wrong user name or password
        │   ├── InvalidRefreshToken   the refresh token is unknown, used or expired
        │   ├── NewPasswordRequired   the temporary password must be changed first
        │   ├── NotFound              no such account, role or key
        │   ├── Conflict              the name is taken
        │   └── SignInThrottled       too many failed sign-ins: wait
        └── ComputeError              submissions and runs (compute.errors)
            ├── ExperimentNotFound    no such experiment
            ├── RunNotFound           no submitted run of that id
            ├── Forbidden             the user may not see or change the experiment
            ├── NotAJobAccount        the user may not run jobs on that site (no account)
            ├── InvalidSubmission     the project, its config or an image cannot run as sent
            ├── SubmissionInProgress  the same Idempotency-Key's submission is going on
            ├── IdempotencyKeyReused  an Idempotency-Key sent with a different submission
            ├── InvalidLogRequest     a log range asked for in two ways at once
            ├── LogRemoved            the job's folder went after its retention
            ├── ImageTooLarge         an image over the platform's limit
            ├── CacheFull             the image cache has no disk space left
            └── SiteError             the compute site refused or failed
                ├── SiteRefused       the site cannot run what was asked (the user can fix it)
                ├── CredentialsRefused  the site refused the user's credentials
                ├── SiteUnavailable   the site accepts no jobs right now
                └── SiteFailed        the site failed, or cannot be reached

Services and drivers raise these and know nothing of HTTP; the status each one gets is
chosen in one place, ``mantik.server.api.errors``. Third-party errors (pyunicore, httpx)
are translated where they are caught, with ``raise Mapped(message) from exc``.
"""

from __future__ import annotations

from mantik._exceptions import MantikError


class ServerError(MantikError):
    """A request the platform refuses or cannot serve; ``message`` is for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
