"""Part 6: load — many concurrent tracking clients, and every accepted point accounted for.

a  stock ``mlflow server`` (4 uvicorn workers, no auth) on PostgreSQL,
b  mantik, 2 replicas x 2 workers behind Debian's HAProxy, on the same PostgreSQL server
   (separate databases), shared jobs and artifact folders,
c  mantik, one process on SQLite (the embedded default).

Each target runs alone: N concurrent clients (bench/load_client.py, one keep-alive connection
each, one run each) call ``runs/log-metric`` and ``runs/log-batch`` (100-1000 points) for
T seconds; then every run's history is read back through the same API. Everything — load
generator, servers, HAProxy, PostgreSQL — shares the machine's cores.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import procs
from bench.load_client import run_load
from bench.report import Check, Options, PartResult, fmt

USERNAME = "bench"
TEMPORARY_PASSWORD = "Bench-Temporary-Pw-1!"
PASSWORD = "Bench-Final-Password-9?"
MLFLOW_WORKERS = 4  # `mlflow server`'s default; b has 2 x 2
REPLICAS, REPLICA_WORKERS = 2, 2


@dataclass(frozen=True)
class Plan:
    clients: int
    seconds: float


def make_plan(quick: bool) -> Plan:
    return Plan(10, 10.0) if quick else Plan(50, 60.0)


@dataclass
class Target:
    key: str
    label: str
    description: str
    url: str
    roots: list[int]  # process trees whose CPU time counts as the server's
    token: Callable[[], str | None] = lambda: None
    result: dict[str, Any] = field(default_factory=dict)


# -- PostgreSQL ---------------------------------------------------------------------------


def _admin_url() -> str:
    from tests.support.services import PG_ADMIN_URL

    return PG_ADMIN_URL


def fresh_databases(prefix: str, names: list[str]) -> dict[str, str]:
    """Empty databases ``<prefix>_<name>`` on the test cluster; their SQLAlchemy URIs."""
    admin = _admin_url()
    if shutil.which("psql") is None:
        raise RuntimeError("psql not found: run scripts/system-deps.sh and `make pg-up`")
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://")
    uris = {}
    for name in names:
        database = f"{prefix}_{name}"
        for sql in (f'DROP DATABASE IF EXISTS "{database}"', f'CREATE DATABASE "{database}"'):
            subprocess.run(
                ["psql", admin, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql],
                check=True,
                capture_output=True,
                timeout=60,
            )
        uris[name] = f"{base}/{database}"
    return uris


def drop_databases(uris: dict[str, str]) -> None:
    for uri in uris.values():
        database = uri.rsplit("/", 1)[1]
        subprocess.run(
            ["psql", _admin_url(), "-qAt", "-c", f'DROP DATABASE IF EXISTS "{database}"'],
            capture_output=True,
            timeout=60,
        )


# -- servers ------------------------------------------------------------------------------


def _script(name: str) -> str:
    script = Path(sys.executable).parent / name
    return str(script) if script.exists() else name


def _ready(url: str, health: str) -> Callable[[], bool]:
    return lambda: (
        procs.http_status(url + health) == 200
        and (procs.http_status(url + "/version") in (200, 401))
    )


def _start(
    stack: contextlib.ExitStack, name: str, command: list[str], env: dict[str, str], url: str
) -> procs.Server:
    workdir = Path(env["HOME"]).parent
    server = stack.enter_context(
        procs.running(name, command, env=env, url=url, log_path=workdir / "server.log", cwd=workdir)
    )
    health = "/health" if name == "a" else "/api/mantik/health"
    procs.wait_until(server, _ready(url, health), timeout=180)
    return server


def _sign_in(url: str) -> Callable[[], str | None]:
    def token() -> str | None:
        response = httpx.post(
            f"{url}/api/mantik/tokens/create",
            json={"username": USERNAME, "password": PASSWORD},
            timeout=60,
        )
        response.raise_for_status()
        access: str = response.json()["AccessToken"]
        return access

    return token


def _create_user(env: dict[str, str], data_dir: Path, url: str) -> None:
    procs.create_user(url, data_dir, env, USERNAME, TEMPORARY_PASSWORD, PASSWORD)


@contextlib.contextmanager
def stock_mlflow(root: Path) -> Iterator[Target]:
    uris = fresh_databases(f"bench_load_{os.getpid()}", ["mlflow"])
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    env = procs.clean_env(root / "a" / "home", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    command = [
        _script("mlflow"), "server", "--backend-store-uri", uris["mlflow"],
        "--artifacts-destination", str(root / "a" / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(MLFLOW_WORKERS),
    ]  # fmt: skip
    try:
        with contextlib.ExitStack() as stack:
            server = _start(stack, "a", command, env, url)
            yield Target(
                "a",
                "a mlflow/PG",
                f"`mlflow server --workers {MLFLOW_WORKERS}` on PostgreSQL, no auth, "
                "job execution off",
                url,
                [server.process.pid],
            )
    finally:
        drop_databases(uris)


@contextlib.contextmanager
def mantik_replicas(root: Path) -> Iterator[Target]:
    from tests.support.balancer import start_balancer

    names = ["mantik", "tracking", "auth"]
    uris = fresh_databases(f"bench_load_{os.getpid()}", names)
    shared = root / "b" / "shared"
    (shared / "jobs").mkdir(parents=True)
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    common = {
        "MANTIK_DATABASE_URI": uris["mantik"],
        "MANTIK_BACKEND_STORE_URI": uris["tracking"],
        "MANTIK_AUTH_DATABASE_URI": uris["auth"],
        "MANTIK_JOBS_DIR": str(shared / "jobs"),
        "MANTIK_ARTIFACTS_DESTINATION": str(shared / "artifacts"),
        "MANTIK_PUBLIC_URL": url,
        "MANTIK_FORWARDED_ALLOW_IPS": "127.0.0.1",
    }
    try:
        with contextlib.ExitStack() as stack:
            replicas = []
            for index in range(REPLICAS):  # one after the other: the first creates schemas
                data_dir = root / "b" / f"replica{index}"
                env = procs.clean_env(data_dir / "home", MANTIK_DATA_DIR=str(data_dir), **common)
                replica_port = procs.free_port()
                command = [
                    _script("mantik"), "server", "start",
                    "--port", str(replica_port), "--workers", str(REPLICA_WORKERS),
                ]  # fmt: skip
                replica_url = f"http://127.0.0.1:{replica_port}"
                replicas.append(_start(stack, f"b{index}", command, env, replica_url))
            balancer = stack.enter_context(start_balancer([r.url for r in replicas], port))
            first_env = procs.clean_env(root / "b" / "replica0" / "home", **common)
            _create_user(first_env, root / "b" / "replica0", url)
            yield Target(
                "b",
                "b mantik 2x2/PG",
                f"{REPLICAS} x `mantik server start --workers {REPLICA_WORKERS}` on PostgreSQL "
                "behind HAProxy (roundrobin), user 'bench' (JWT)",
                url,
                [*(r.process.pid for r in replicas), balancer.process.pid],
                _sign_in(url),
            )
    finally:
        drop_databases(uris)


@contextlib.contextmanager
def mantik_sqlite(root: Path) -> Iterator[Target]:
    data_dir = root / "c" / "data"
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    env = procs.clean_env(root / "c" / "home", MANTIK_DATA_DIR=str(data_dir))
    command = [_script("mantik"), "server", "start", "--port", str(port)]
    with contextlib.ExitStack() as stack:
        server = _start(stack, "c", command, env, url)
        _create_user(env, data_dir, url)
        yield Target(
            "c",
            "c mantik 1/SQLite",
            "`mantik server start` (1 worker, SQLite: the embedded default), user 'bench'",
            url,
            [server.process.pid],
            _sign_in(url),
        )


# -- the workload -------------------------------------------------------------------------


def measure(target: Target, plan: Plan) -> None:
    token = target.token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(
        f"{target.url}/api/2.0/mlflow/experiments/create",
        json={"name": f"load-{target.key}"},
        headers=headers,
        timeout=60,
    )
    response.raise_for_status()
    experiment_id = response.json()["experiment_id"]
    target.result = run_load(
        target.url,
        plan.clients,
        plan.seconds,
        experiment_id,
        target.token,
        lambda: sum(procs.tree_cpu_seconds(pid) for pid in target.roots),
    )
    r = target.result
    print(
        f"  [{target.key}] {r['points_per_s']:,.0f} points/s, {r['requests_per_s']:.0f} req/s, "
        f"accepted {r['points_accepted']:,} stored {r['points_stored']:,}, lost {r['lost']}, "
        f"dup {r['duplicated']}, 5xx {r['status_5xx']}, other {r['other_errors']}",
        flush=True,
    )


# -- report -------------------------------------------------------------------------------

ROWS: list[tuple[str, str, int, bool]] = [  # (label, summary key, digits, ratio?)
    ("points accepted (2xx)", "points_accepted", 0, True),
    ("points stored (read back)", "points_stored", 0, True),
    ("  lost / duplicated", "lost_dup", 0, False),
    ("  stored from failed calls", "stored_from_failed_calls", 0, False),
    ("5xx / other errors", "errors", 0, False),
    ("throughput, points/s", "points_per_s", 0, True),
    ("throughput, requests/s", "requests_per_s", 1, True),
    ("log-metric p50 / p99, ms", "single", 1, False),
    ("log-batch p50 / p99, ms", "batch", 1, False),
    ("server CPU, cores busy", "server_cpu_share", 2, True),
    ("load generator CPU, cores", "loadgen_cpu_share", 2, False),
]


def _cell(result: dict[str, Any], key: str, digits: int) -> str:
    if not result:
        return "—"
    if key == "lost_dup":
        return f"{result['lost']} / {result['duplicated']}"
    if key == "errors":
        return f"{result['status_5xx']} / {result['other_errors']}"
    if key in ("single", "batch"):
        return f"{fmt(result[f'{key}_p50_ms'], 1)} / {fmt(result[f'{key}_p99_ms'], 1)}"
    value = result[key]
    return f"{value:,.{digits}f}"


def _ratio(numerator: dict[str, Any], denominator: dict[str, Any], key: str) -> str:
    if not numerator or not denominator or not denominator.get(key):
        return ""
    return fmt(numerator[key] / denominator[key])


def build_result(targets: dict[str, Target], plan: Plan, busy_before: float) -> PartResult:
    a, b, c = (targets[k].result for k in "abc")
    rows = []
    for label, key, digits, ratio in ROWS:
        cells = [_cell(r, key, digits) for r in (a, b, c)]
        ratios = [_ratio(b, a, key), _ratio(c, a, key)] if ratio else ["", ""]
        rows.append([label, *cells, *ratios])
    checks = []
    for key, result in (("a", a), ("b", b), ("c", c)):
        checks += [
            Check(f"{key}: points lost", result.get("lost"), "<=", 0),
            Check(f"{key}: points duplicated", result.get("duplicated"), "<=", 0),
            Check(f"{key}: 5xx answers", result.get("status_5xx"), "<=", 0),
        ]
    notes = [f"{t.label}: {t.description}" for t in targets.values()]
    notes += [
        f"{plan.clients} concurrent clients for {plan.seconds:.0f} s per target, one keep-alive "
        "connection and one run each; per round 4 log-metric calls and 1 log-batch "
        "(100, 400, 700, 1000 points in turn); targets ran one after the other.",
        f"All of it shares {os.cpu_count()} cores: load generator (asyncio + httpx, this "
        "process), servers, HAProxy and PostgreSQL (PostgreSQL's CPU is not in 'server CPU').",
        "Lost = accepted (2xx) but not read back; duplicated = a step read back twice; a "
        "failed call's points that were stored anyway are listed apart.",
        "The ratio columns are b/a and c/a.",
    ]
    if busy_before > 0.2:
        notes.append(
            f"Other work kept the machine {100 * busy_before:.0f}% busy before the run: "
            "throughput is skewed low."
        )
    samples = [s for r in (a, b, c) for s in r.get("error_samples", [])]
    notes += [f"error sample: {s}" for s in samples[:5]]
    return PartResult(
        number=6,
        title="load: a stock mlflow on PG / b mantik 2 replicas x 2 workers + HAProxy on PG / "
        "c mantik 1 process on SQLite",
        header=["", *(targets[k].label for k in "abc"), "b/a", "c/a"],
        rows=rows,
        checks=checks,
        notes=notes,
        data={
            "plan": {"clients": plan.clients, "seconds": plan.seconds},
            "results": {k: t.result for k, t in targets.items()},
            "machine_busy_before": busy_before,
        },
    )


def run(options: Options) -> PartResult:
    busy_before = procs.machine_busy()
    plan = make_plan(options.quick)
    targets: dict[str, Target] = {}
    for launch in (stock_mlflow, mantik_replicas, mantik_sqlite):
        with launch(options.workdir) as target:
            measure(target, plan)
            targets[target.key] = target
    return build_result(targets, plan, busy_before)
