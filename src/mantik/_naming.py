"""Names the client and the platform must agree on (neither imports the other)."""

from __future__ import annotations

_DEFAULT_SUFFIX = "-default"


def default_experiment(username: str) -> str:
    """Where a user's runs go when no experiment is chosen (created on first use)."""
    return f"{username}{_DEFAULT_SUFFIX}"


def default_experiment_owner(name: str) -> str | None:
    """The user whose personal default experiment ``name`` is, if it has that form."""
    if name.endswith(_DEFAULT_SUFFIX) and len(name) > len(_DEFAULT_SUFFIX):
        return name[: -len(_DEFAULT_SUFFIX)]
    return None
