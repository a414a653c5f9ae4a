"""Every route MLflow 3.17.2 and mantik serve has an explicit rule in our gate.

A new MLflow release that adds a route fails here until someone decides its rule.
"""

from __future__ import annotations

import os
import re
import sys
import types
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from mantik.server.platform import prepare
from mantik.server.settings import ServerSettings
from mantik.server.tracking import mlflow_app, route_rules
from mantik.server.tracking.route_rules import Rule

# mantik's own routes that answer without a signed-in user (everything else depends on
# the caller: CurrentUser, or an identity form that checks the password itself).
MANTIK_PUBLIC = {
    "/api/mantik/health",
    "/.well-known/jwks.json",
    "/.well-known/openid-configuration",
    "/compute-backend/docs",
    "/compute-backend/openapi.json",
}


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    data_dir = tmp_path_factory.mktemp("routes")
    settings = ServerSettings(data_dir=data_dir)
    prepare(settings)  # mantik's stores first, as `mantik server start` does
    saved = dict(os.environ)  # building MLflow's app configures it through the environment
    # Another test module may have imported MLflow's auth app with its defaults: the app
    # is built from a fresh import, as in a platform worker.
    for name in [
        m for m in sys.modules if m == "mlflow.server.auth" or m.startswith("mlflow.server.auth.")
    ]:
        del sys.modules[name]
    try:
        mlflow_app.prepare_stores(settings)
        yield settings, mlflow_app.create_mlflow_app(settings)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _filled(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", re.sub(r"<(?:[^:>]+:)?[^>]+>", "x", template))


def _mlflow_routes(app: Any) -> set[tuple[str, str]]:
    from mlflow.server import app as flask_app

    routes = {
        (rule.rule, method)
        for rule in flask_app.url_map.iter_rules()
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    for included in app.router.routes:  # MLflow's native FastAPI routers
        router = getattr(included, "original_router", None)
        if router is None:
            continue
        prefix = included.include_context.prefix
        routes |= {(prefix + r.path, m) for r in router.routes for m in r.methods or ()}
    return routes


def _mlflow_decides(path: str, method: str) -> bool:
    """Whether MLflow's auth app has a decision for this route (MLflow's own helpers)."""
    from mlflow.server import auth

    request = types.SimpleNamespace(path=path, method=method)
    if auth._is_proxy_artifact_path(path):
        view_args = {"artifact_path": "x"} if path.rstrip("/").count("/") > 4 else None
        return auth._get_proxy_artifact_validator(method, view_args) is not None
    return bool(
        auth.is_unprotected_route(path)
        or auth._find_validator(request)
        or auth._find_fastapi_validator(path, method)
        or auth._authorized_outside_before_request(request)
    )


def test_every_mlflow_route_has_a_rule(apps: tuple[Any, Any]) -> None:
    _, app = apps
    routes = _mlflow_routes(app)
    rules = {
        (template, method): route_rules.rule_for(_filled(template), method, _mlflow_decides)
        for template, method in routes
    }
    missing = sorted(k for k, v in rules.items() if v is None)
    assert not missing, f"{len(missing)} MLflow routes have no rule in our gate: {missing}"
    counts = Counter(rules.values())
    print(f"{len(routes)} MLflow routes: " + ", ".join(f"{r.name} {n}" for r, n in counts.items()))
    assert len(routes) > 400  # the walk found MLflow's routes, not an empty app
    # The routes any signed-in user may call without a check stay few and data-free.
    signed_in = sorted(k for k, v in rules.items() if v is Rule.SIGNED_IN)
    assert len(signed_in) <= 12, signed_in
    assert counts[Rule.REFUSED] > 0 and counts[Rule.ADMIN] > 0


def test_every_mantik_route_needs_a_caller_or_is_listed_public(apps: tuple[Any, Any]) -> None:
    from fastapi.routing import APIRoute

    from mantik.server.api import deps
    from mantik.server.app import create_mantik_api

    settings, _ = apps
    from mantik.server.compute.service import ComputeService
    from mantik.server.platform import build

    platform = build(settings)
    service = ComputeService(settings, platform.db, platform.tokens, platform.identity)
    api = create_mantik_api(platform, service)
    checked = 0
    routes = [
        (getattr(included, "include_context", None), route)
        for included in api.routes
        for route in getattr(getattr(included, "original_router", None), "routes", [included])
    ]
    for context, route in routes:
        path = (context.prefix if context else "") + getattr(route, "path", "")
        assert route_rules.rule_for(_filled(path), "GET", lambda p, m: False) is Rule.MANTIK, path
        if not isinstance(route, APIRoute):
            assert path in MANTIK_PUBLIC, path
            continue
        calls = {d.call for d in route.dependant.dependencies}
        calls |= {d.call for dep in route.dependant.dependencies for d in dep.dependencies}
        needs_user = bool({deps.current_principal, deps.browser_user} & calls)
        # Identity forms (sign-in, password change, refresh) check credentials themselves.
        identity_form = path.startswith(("/api/mantik/", "/login", "/logout", "/new-password"))
        assert needs_user or identity_form or path in MANTIK_PUBLIC, path
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("/ajax-api/3.0/jobs/search", Rule.REFUSED),
        ("/ajax-api/3.0/mlflow/assistant/config", Rule.REFUSED),
        ("/api/2.0/mlflow/users/create", Rule.REFUSED),
        ("/api/2.0/mlflow/users/list", Rule.ADMIN),
        ("/api/2.0/mlflow/runs/get", Rule.MLFLOW_CHECK),
        ("/compute-backend/submit/1", Rule.MANTIK),
    ],
)
def test_known_routes(apps: tuple[Any, Any], path: str, rule: Rule) -> None:
    assert route_rules.rule_for(path, "GET", _mlflow_decides) is rule


def test_an_unknown_route_has_no_rule() -> None:
    assert route_rules.rule_for("/api/2.0/mlflow/new-feature", "POST", lambda p, m: False) is None


def test_collapse_slashes() -> None:
    assert route_rules.collapse_slashes("//api//2.0/mlflow/users/create") == (
        "/api/2.0/mlflow/users/create"
    )
