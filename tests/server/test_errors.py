"""The server's error tree: drawn in ``mantik.server.errors`` as the classes are, and every
error has its HTTP status chosen in ``mantik.server.api.errors``."""

from __future__ import annotations

from mantik import _exceptions
from mantik.server import errors
from mantik.server.api.errors import STATUS, status_of
from mantik.server.compute import errors as compute
from mantik.server.identity import errors as identity
from tests.support.trees import drawn_tree


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def test_the_drawn_tree_is_the_class_tree() -> None:
    classes = {cls.__name__: cls for cls in _subclasses(errors.ServerError)}
    classes |= {"ServerError": errors.ServerError, "MantikError": _exceptions.MantikError}
    drawn = drawn_tree(errors.__doc__ or "")
    assert set(drawn) == set(classes)
    for name, parent in drawn.items():
        if parent is not None:
            assert classes[name].__bases__ == (classes[parent],), name


def test_every_error_has_its_status_listed_once() -> None:
    for cls in _subclasses(errors.ServerError):
        assert cls in STATUS, f"{cls.__name__} has no HTTP status in api/errors.py"


def test_statuses_users_get() -> None:
    cases = [
        (compute.InvalidSubmission("x"), 400),
        (compute.RunNotFound("x"), 404),
        (compute.Forbidden("x"), 403),
        (compute.ImageTooLarge("x"), 413),
        (compute.CacheFull("x"), 507),
        (compute.SiteRefused("x"), 400),
        (compute.CredentialsRefused("x"), 401),
        (compute.SiteFailed("x"), 502),
        (compute.SiteUnavailable("x"), 503),
        (identity.SignInThrottled("x"), 429),
        (identity.NewPasswordRequired("x"), 403),
    ]
    assert [(type(exc).__name__, status_of(exc)) for exc, _ in cases] == [
        (type(exc).__name__, status) for exc, status in cases
    ]
