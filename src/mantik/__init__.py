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
from mantik.client._compute import ComputeBackendClient
from mantik.client._progress import UploadProgress
from mantik.client._runs import RunInfo, SubmittedRun
from mantik.client._tokens import Tokens
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
    "Tokens",
    "UploadProgress",
    "__version__",
    "init_tracking",
]
