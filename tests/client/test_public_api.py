"""The names ``import mantik`` offers: what users' code and the guide rely on."""

from __future__ import annotations

import inspect
import typing

import mantik


def test_the_public_names_stay() -> None:
    assert set(mantik.__all__) == {
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
    }
    for name in mantik.__all__:
        assert hasattr(mantik, name), name


def test_the_public_calls_name_public_types() -> None:
    assert typing.get_type_hints(mantik.init_tracking)["return"] is mantik.Tokens
    hints = typing.get_type_hints(mantik.ComputeBackendClient.submit_run)
    assert hints["progress"] == mantik.UploadProgress | None
    assert (
        inspect.signature(mantik.ComputeBackendClient.submit_run).parameters["progress"].default
        is None
    )
