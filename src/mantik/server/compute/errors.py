"""Errors of submissions, runs and compute sites (drawn in :mod:`mantik.server.errors`)."""

from __future__ import annotations

from mantik.server.errors import ServerError


class ComputeError(ServerError):
    """A submission or run request the platform refuses or cannot serve."""


class ExperimentNotFound(ComputeError):
    """No such (active) experiment."""


class RunNotFound(ComputeError):
    """No submitted run of that id."""


class Forbidden(ComputeError):
    """The user may not see or change the experiment."""


class NotAJobAccount(ComputeError):
    """The user may not run jobs on the site: no OS account there, or not listed."""


class LogRemoved(ComputeError):
    """The job's folder (and the log in it) went after the retention; the run keeps a copy."""


class InvalidSubmission(ComputeError):
    """The project, its backend config, an image or a parameter cannot run as sent."""


class SubmissionInProgress(ComputeError):
    """A submission with the same Idempotency-Key has not ended yet."""


class IdempotencyKeyReused(ComputeError):
    """An Idempotency-Key sent again with a different submission."""


class InvalidLogRequest(ComputeError):
    """A log request whose byte range cannot be served as asked."""


class ImageTooLarge(ComputeError):
    """An image over what the platform accepts."""


class CacheFull(ComputeError):
    """The platform's image cache has no disk space left."""


class SiteError(ComputeError):
    """The compute site refused or failed."""


class SiteRefused(SiteError):
    """The site cannot run what was asked; the user can change the request."""


class CredentialsRefused(SiteError):
    """The site refused the user's credentials."""


class SiteUnavailable(SiteError):
    """The site accepts no jobs right now."""


class SiteFailed(SiteError):
    """The site failed, or cannot be reached."""
