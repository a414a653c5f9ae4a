"""The one door to MLflow's private API (written against the pinned MLflow 3.17.2).

mantik leans on parts of MLflow that are not its public API: the auth app's module state and
private helpers, the tracking server's store getters, and the fluent API's active experiment.
Every such use goes through a function here and nowhere else (``tests/server/
test_mlflow_door.py`` checks it), so an MLflow upgrade starts by reading this module.

``mlflow.server.auth`` reads its configuration once, when first imported: nothing here
imports it before a function that needs it is called, and :func:`auth_imported` tells
whether something did.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from typing import Any

_AUTH = "mlflow.server.auth"


def _auth() -> Any:
    return importlib.import_module(_AUTH)


def _handlers() -> Any:
    return importlib.import_module("mlflow.server.handlers")


# --- The fluent API (client side) ----------------------------------------------------


def active_experiment_id() -> str | None:
    """The experiment this process logs to, if one was chosen (``mlflow.set_experiment``)."""
    from mlflow.tracking import fluent

    return fluent._active_experiment_id


def set_active_experiment_id(experiment_id: str) -> None:
    """Choose the experiment for this process only, as ``mlflow.set_experiment`` would
    without looking it up again (no environment variable: children would inherit it)."""
    from mlflow.tracking import fluent

    fluent._active_experiment_id = experiment_id  # type: ignore[assignment]


# --- What MLflow accepts -------------------------------------------------------------


def param_refusal(key: str, value: str) -> str | None:
    """MLflow's reason to refuse logging param ``key`` = ``value`` (None: it accepts it).
    The reason quotes ``key`` in full."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_param

    try:
        _validate_param(key, value)  # type: ignore[no-untyped-call]
    except MlflowException as exc:
        return str(exc.message)
    return None


# --- The tracking server's stores ----------------------------------------------------


def initialize_backend_stores(backend_store_uri: str, default_artifact_root: str) -> None:
    """Create or migrate the tracking and registry databases, as ``mlflow server`` does."""
    _handlers().initialize_backend_stores(
        backend_store_uri, backend_store_uri, default_artifact_root
    )


def tracking_store() -> Any:
    """The tracking store the server's handlers use (this process's)."""
    return _handlers()._get_tracking_store()


def model_registry_store() -> Any:
    """The model registry store the auth app checks against."""
    return _auth()._get_model_registry_store()


# --- The auth app --------------------------------------------------------------------


def auth_imported() -> bool:
    """Whether MLflow's auth app was imported (and so has read its configuration)."""
    return _AUTH in sys.modules


def auth_settings() -> tuple[str, str]:
    """The auth app's permission database and default permission, as it read them."""
    config = _auth().auth_config
    return str(config.database_uri), str(config.default_permission)


def create_auth_app() -> Any:
    """MLflow's tracking app behind its auth app."""
    return _auth().create_app()


def open_permission_store(database_uri: str) -> Any:
    """A permission store (users, grants) on ``database_uri``, created or migrated."""
    store_module = importlib.import_module(f"{_AUTH}.sqlalchemy_store")
    store = store_module.SqlAlchemyStore()
    store.init_db(database_uri)
    return store


def write_auth_user(database_uri: str, username: str, password: str, *, is_admin: bool) -> bool:
    """Make ``username`` a user of the permission database with this admin flag, as the
    store's ``create_user``/``update_user`` would, without importing ``mlflow.server`` (its
    package builds the whole tracking app, seconds for a CLI command). ``password`` is
    hashed as the store hashes it; an existing user keeps theirs.

    False, with nothing written, when MLflow has not made the database yet: then only
    :func:`open_permission_store` can (it runs MLflow's migrations).
    """
    import sqlalchemy as sa
    from werkzeug.security import generate_password_hash  # what the store hashes with

    # The ``users`` table as every migration since MLflow's first (8606fa83a998) has it.
    users = sa.Table(
        "users",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(255), unique=True),
        sa.Column("password_hash", sa.String(255)),
        sa.Column("is_admin", sa.Boolean),
    )
    engine = sa.create_engine(database_uri)
    try:
        if not sa.inspect(engine).has_table("users"):
            return False
        mark = sa.update(users).where(users.c.username == username).values(is_admin=is_admin)
        with engine.begin() as connection:
            if connection.execute(mark).rowcount:
                return True
        try:
            with engine.begin() as connection:
                connection.execute(
                    sa.insert(users).values(
                        username=username,
                        password_hash=generate_password_hash(password),
                        is_admin=is_admin,
                    )
                )
        except sa.exc.IntegrityError:  # someone (a platform worker) created it meanwhile
            with engine.begin() as connection:
                connection.execute(mark)
        return True
    finally:
        engine.dispose()


def permission_store() -> Any:
    """The permission store of this process's auth app."""
    return _auth().store


def resolve_permission(username: str, resource_type: str, resource_id: str) -> Any:
    """``username``'s permission on a resource, resolved as MLflow resolves it for its own
    routes (grants, roles, the default permission)."""
    auth = _auth()
    with auth.app.test_request_context():
        return auth._resolve_user_permission_for_resource(username, resource_type, resource_id)


def request_param(name: str) -> Any:
    """A parameter of the request being checked, read as MLflow's validators read it."""
    return _auth()._get_request_param(name)


def is_prompt(name: str) -> bool:
    """Whether the registered model ``name`` exists and is a prompt."""
    from mlflow.exceptions import MlflowException

    try:
        model = model_registry_store().get_registered_model(name)
    except MlflowException:
        return False
    return bool(model._is_prompt())


# Resource types, as the auth app spells them.
EXPERIMENT = "experiment"
RUN = "run"
PROMPT = "prompt"
REGISTERED_MODEL = "registered_model"


def run_requirements(experiment_id: str, action: str) -> tuple[Any, list[Any]]:
    """What MLflow requires to ``action`` a run of ``experiment_id``: READ on the
    experiment, and the action on the run, falling back to the experiment's grant."""
    requirement = _auth().Requirement
    experiment = (EXPERIMENT, experiment_id)
    return experiment, [
        requirement(EXPERIMENT, experiment_id, "read"),
        requirement(RUN, "*", action, fallback_if_no_grant=(experiment,)),
    ]


def run_requirement(run_id: str, action: str) -> tuple[Any, list[Any]] | None:
    """What MLflow requires to ``action`` the run ``run_id`` (None: no such run)."""
    return _auth()._run_requirement(run_id, action)  # type: ignore[no-any-return]


def authorize(username: str, anchor: Any, requirements: list[Any]) -> bool:
    """Whether ``username`` meets ``requirements``, as MLflow decides it."""
    return bool(_auth().authorize(username, anchor, requirements))


def can_update_run_and_models(model_ids: Iterable[str]) -> bool:
    """MLflow's check of a write to the request's run and to the logged models it names."""
    return bool(_auth()._validate_can_update_run_and_models(set(model_ids)))


# --- Changing the auth app's decisions -----------------------------------------------


def wrap_run_requirement(
    wrap: Callable[[Callable[[str, str], Any]], Callable[[str, str], Any]],
) -> None:
    """Replace how the auth app finds a run's requirements by ``wrap(original)``."""
    auth = _auth()
    auth._run_requirement = wrap(auth._run_requirement)


def wrap_otel_validator(wrap: Callable[[Callable[[str], Any]], Callable[[str], Any]]) -> None:
    """Replace how the auth app builds its check of an OTLP export by ``wrap(original)``."""
    auth = _auth()
    auth._get_otel_validator = wrap(auth._get_otel_validator)


def replace_validator(name: str, wrap: Callable[[Callable[[], bool]], Callable[[], bool]]) -> None:
    """Replace the auth app's before-request validator ``name`` (e.g.
    ``validate_can_log_batch``) on every route it guards by ``wrap(original)``."""
    auth = _auth()
    original = getattr(auth, name)
    replacement = wrap(original)
    for route, validator in list(auth.BEFORE_REQUEST_VALIDATORS.items()):
        if validator is original:
            auth.BEFORE_REQUEST_VALIDATORS[route] = replacement


def share_workspace_lookup(resource_type: str, like: str) -> None:
    """Let the grant routes find the workspace of a ``resource_type`` as of ``like``'s."""
    table = _auth()._RESOURCE_WORKSPACE_FETCHER
    table.setdefault(resource_type, table[like])
