"""Every route the platform serves has a rule here, or it is refused.

MLflow decides most routes itself (a permission check per route, with fail-closed on, see
``mlflow_app.environment``); this module names the ones we refuse, the ones only admins
may call, and the few that any signed-in user may call without a per-object check.
:func:`rule_for` classifies a route template; a test walks every route MLflow and mantik
serve, so a new MLflow release that adds a route fails it until someone decides.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable


class Rule(enum.Enum):
    MANTIK = "mantik's own route; its handler checks the caller"
    MLFLOW_CHECK = "MLflow's per-object permission check"
    SIGNED_IN = "any signed-in user; no per-object data"
    PUBLIC = "no sign-in"
    ADMIN = "administrators only"
    REFUSED = "refused for everyone"


# Not offered by mantik: user management is ours (`mantik admin users`); job execution is
# off; the Assistant trusts requests that look local (every request behind a proxy) and
# writes server-wide config; the gateway proxies to arbitrary endpoints (SSRF).
REFUSED = re.compile(
    r"^/(?:signup|api/2\.0/mlflow/users/(?!get$|current$|list$)"
    r"|ajax-api/2\.0/mlflow/users/(?!get$|current$|list$)"
    r"|(?:api|ajax-api)/3\.0/jobs(?:/|$)"
    r"|(?:api|ajax-api)/3\.0/mlflow/assistant(?:/|$)"
    r"|gateway/|(?:api|ajax-api)/[23]\.0/(?:mlflow/)?gateway(?:/|-proxy$)"
    # Prompt optimisation runs as jobs; single-workspace calls need workspaces (off here);
    # online traces are a Databricks feature MLflow has no check for.
    r"|(?:api|ajax-api)/3\.0/mlflow/prompt-optimization/jobs/"
    r"|(?:api|ajax-api)/3\.0/mlflow/workspaces/"
    r"|(?:api|ajax-api)/2\.0/mlflow/(?:get-online-trace-details|unified-traces)$"
    r"|(?:api|ajax-api)/2\.0mlflow/"
    r")"
)
ADMIN = re.compile(r"^/(?:api|ajax-api)/2\.0/mlflow/users/list$")
# The UI's pages and static files, health, version: nothing in them is anyone's data.
SIGNED_IN = re.compile(
    r"^/(?:$|static-files/|static/|build/|favicon\.ico$|health$|version$"
    r"|(?:api|ajax-api)/3\.0/mlflow/server-info$"
    r"|(?:api|ajax-api)/2\.0/mlflow/users/(?:current|get)$"
    r")"
)
# mantik's own pages: sign-in, and the jobs page (/jobs, /jobs/<run>, /jobs/<run>/cancel).
MANTIK_PREFIXES = ("/api/mantik/", "/compute-backend", "/.well-known/", "/jobs/")
MANTIK_PATHS = frozenset({"/login", "/logout", "/new-password", "/jobs"})


def is_mantik(path: str) -> bool:
    return path in MANTIK_PATHS or path.startswith(MANTIK_PREFIXES)


USER_ADMIN = re.compile(r"^/(?:signup|(?:api|ajax-api)/2\.0/mlflow/users/)")


def refusal_message(path: str) -> str:
    if USER_ADMIN.match(path):
        return "Users are managed by mantik: use `mantik admin users`."
    return "This MLflow feature is not offered by this platform."


def refused(path: str) -> bool:
    """Checked on every request, before MLflow sees it."""
    return REFUSED.match(path) is not None


def rule_for(path: str, method: str, mlflow_checks: Callable[[str, str], bool]) -> Rule | None:
    """The rule of one route (``path`` with its parameters filled in); None: no rule.

    ``mlflow_checks(path, method)``: whether MLflow's auth app decides this route.
    """
    if is_mantik(path):
        return Rule.MANTIK
    if refused(path):
        return Rule.REFUSED
    if ADMIN.match(path):
        return Rule.ADMIN
    if mlflow_checks(path, method):
        return Rule.MLFLOW_CHECK
    if SIGNED_IN.match(path):
        return Rule.SIGNED_IN
    return None


def collapse_slashes(path: str) -> str:
    """`//api/…` and `/api//2.0/…` route as `/api/…` everywhere, so refusals see them."""
    return re.sub(r"/{2,}", "/", path)
