"""mantik: authenticated MLflow tracking and MLflow projects on HPC systems."""

from __future__ import annotations

from mantik._exceptions import (
    AuthenticationError,
    ConfigurationError,
    MantikError,
    MissingEnvironmentError,
    PasswordChangeRequired,
    PlatformError,
    PlatformUnreachable,
    RunTimeout,
)
from mantik._version import __version__
from mantik.client._compute import ComputeBackendClient, RunInfo, SubmittedRun
from mantik.client._tracking import init_tracking

__all__ = [
    "AuthenticationError",
    "ComputeBackendClient",
    "ConfigurationError",
    "MantikError",
    "MissingEnvironmentError",
    "PasswordChangeRequired",
    "PlatformError",
    "PlatformUnreachable",
    "RunInfo",
    "RunTimeout",
    "SubmittedRun",
    "__version__",
    "init_tracking",
]
