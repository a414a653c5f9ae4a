"""Part 4: offline tracking — sync throughput against online logging, and the sync lag.

One platform (``mantik server start`` with its defaults: one worker, the poller every 2 s,
node snapshots every 10 s) and a site ``offline-local`` whose tracking URI is a closed port,
so that its jobs cannot reach the platform.

A  online: a fresh client process signs in and logs N points with ``log_batch`` (1000 per
   call) to the platform over HTTP — what a job on a connected node does.
B  sync: the same N points go into a job's local store on the "node" (the wrapper's init
   and snapshot scripts, the job's MLflow); then the platform's sync
   (``OfflineSyncer.sync``, run in this process against the platform's stores, as its
   poller runs it) pushes the snapshot into the central run. Timed: the sync alone.
D  sync through UNICORE's file API: the same N points, logged the same way, but the node's
   store and snapshot lie in the working directory of a UNICORE job; the platform reads
   them only with the user's UNICORE credentials. Timed: the platform's sync with those
   credentials (``OfflineSyncer.sync(job, credentials=...)``: the UNICORE driver's
   ``offline_files`` mirrors ``.mantik/tracking`` and the snapshot with pyunicore over
   HTTP, then the same push as B); the fetch (``offline_files``) is also timed alone.
   The site is the test suite's UNICORE gateway (``tests.support.unicore_gateway``, in its
   own process, see ``bench/unicore_site.py``): it stands in for UNICORE/X, and its file
   serving speed is not a real site's. The UNICORE job is a real job on the gateway (one
   without an executable: nothing runs on SLURM); its job record on the platform is made
   the way B makes its own (never stored: the poller does not see it).
A, B and D alternate (A, B, D, A, B, D, A, B: D is left out of the last of three
repetitions, which keeps it within a minute); each uses a fresh run.
C  lag: an offline job on ``offline-local`` logs up to 1,000 points/s (10 metrics per step,
   one ``log_metrics`` call each) for a minute; its sync lag (``GET
   /compute-backend/runs/{id}``: seconds since the newest point that reached the central
   run) is sampled every 0.5 s while it runs.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import procs
from bench.report import Check, Options, PartResult, fmt, median, parse_result

if TYPE_CHECKING:
    from mantik.server.compute.drivers.base import Driver
    from mantik.server.compute.jobs import SiteCredentials, TrackedJob
    from mantik.server.models import ComputeJob

USERNAME = "bench-offline"
TEMPORARY_PASSWORD = "Bench-Temporary-Pw-1!"
PASSWORD = "Bench-Final-Password-9?"
SITE = "offline-local"
UNICORE_SITE = "offline-unicore"
UNICORE_USER = "bench-xlogin"
UNICORE_PASSWORD = "Bench-Unicore-Pw-3%"
# The platform's defaults (ServerSettings): a point waits for the next snapshot, then for
# the next poll cycle.
SNAPSHOT_SECONDS = 10.0
POLL_SECONDS = 2.0

# Targets.
MIN_SYNC_OVER_ONLINE = 1.0  # the sync must keep up with jobs that could log online
MIN_UNICORE_OVER_ONLINE = 1.0  # and through UNICORE's file API (measured 1.1 to 1.3, 2 cores)
# After a tenth more points, the next fetch moves the changed blocks, not the snapshot.
MAX_NEXT_FETCH_SHARE = 0.35
MAX_LAG_SECONDS = SNAPSHOT_SECONDS + POLL_SECONDS + 3.0  # one sync period, some slack

TRAIN = """
import sys, time
import mlflow

seconds = float(sys.argv[1])
with mlflow.start_run():
    start = time.time()
    step = 0
    while time.time() - start < seconds:
        mlflow.log_metrics({f"m{k}": step + k / 10 for k in range(10)}, step=step)
        step += 1
        pause = start + step / 100 - time.time()
        if pause > 0:
            time.sleep(pause)
print("logged", step * 10, "points", flush=True)
"""

_STARTED = time.monotonic()


def _say(message: str) -> None:
    print(f"  {time.monotonic() - _STARTED:5.0f}s {message}", flush=True)


def _python(args: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=900
    )
    result = parse_result(done.stdout)
    if done.returncode != 0 or result is None:
        raise RuntimeError(f"{args} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return result


def _create_user(data_dir: Path, url: str, home: Path) -> None:
    env = procs.clean_env(home, MANTIK_DATA_DIR=str(data_dir))
    procs.create_user(url, data_dir, env, USERNAME, TEMPORARY_PASSWORD, PASSWORD)


class UnicoreSite:
    """The gateway process (``bench.unicore_site``), seen as a UNICORE site by its user."""

    def __init__(self, base_url: str, root: Path) -> None:
        self.base_url = base_url
        self.root = root  # where the gateway keeps job working directories

    def new_job(self) -> tuple[str, Path]:
        """A job on the site (no executable: nothing runs); its id and working directory."""
        from pyunicore import client as unicore
        from pyunicore.credentials import UsernamePassword

        credential = UsernamePassword(UNICORE_USER, UNICORE_PASSWORD)
        transport = unicore.Transport(credential, use_security_sessions=False)
        job = unicore.Client(transport, self.base_url).new_job({"Name": "benchoffline"})
        job_id = str(job.resource_url).rstrip("/").rsplit("/", 1)[-1]
        return job_id, self.root / job_id


class FetchClock:
    """Stands in for a driver's ``offline_files`` (the fetch): times each call, and counts
    the bytes the UNICORE mirror fetched."""

    def __init__(self, driver: Driver) -> None:
        from mantik.server.compute.offline import mirror as offline_mirror

        self.fetch = driver.offline_files
        self.seconds = 0.0
        self.bytes = 0
        driver.offline_files = self  # type: ignore[method-assign]
        mirror_run = offline_mirror.OfflineMirror.run

        def counted(mirror: offline_mirror.OfflineMirror, *, final: bool) -> Path:
            try:
                return mirror_run(mirror, final=final)
            finally:
                self.bytes += mirror.bytes

        offline_mirror.OfflineMirror.run = counted  # type: ignore[method-assign]

    def __call__(
        self, job: TrackedJob, credentials: SiteCredentials | None = None, *, final: bool = False
    ) -> Path | None:
        started = time.perf_counter()
        try:
            return self.fetch(job, credentials, final=final)
        finally:
            self.seconds += time.perf_counter() - started


class SyncBench:
    """B (and D): the platform's sync, in this process, on the platform's stores."""

    def __init__(
        self, data_dir: Path, sites: Path, experiment: str, home: Path, unicore: UnicoreSite
    ) -> None:
        from mantik.server.compute.offline.syncer import OfflineSyncer
        from mantik.server.compute.service import ComputeService
        from mantik.server.platform import build
        from mantik.server.settings import ServerSettings

        settings = ServerSettings(data_dir=data_dir, sites_file=sites)
        parts = build(settings)
        self.service = ComputeService(settings, parts.db, parts.tokens, parts.identity)
        self.syncer = OfflineSyncer(
            parts.db, self.service.runs, self.service.sites, data_dir / "offline-sync"
        )
        self.experiment = experiment
        self.home = home
        self.jobs = data_dir / "jobs" / SITE
        self.unicore = unicore
        self.unicore_jobs = self.service.sites.work_root(self.service.sites[UNICORE_SITE])
        self.fetch_clock = FetchClock(self.service.sites.driver(UNICORE_SITE))

    def _new_run(self) -> str:
        run = self.service.runs.create(self.experiment, run_name="sync", tags={}, params={})
        run_id: str = run.info.run_id
        return run_id

    def _node(self, count: int, run_id: str, job_dir: Path, more: bool = False) -> dict[str, Any]:
        """``count`` points in the local store and snapshot of the job of ``run_id`` whose
        working directory is ``job_dir`` (laid out as the wrapper does); ``more``: into the
        store made before."""
        from mantik.server.compute.offline import node

        offline = job_dir / ".mantik" / "offline"
        if not more:
            (offline / "artifacts").mkdir(parents=True)
            (offline.parent / "tracking").write_text("offline\n")
        env = procs.clean_env(
            self.home,
            MLFLOW_TRACKING_URI=f"sqlite:///{offline / 'mlruns.db'}",
            MLFLOW_RUN_ID=run_id,
            MLFLOW_EXPERIMENT_ID=self.experiment,
        )
        scripts = Path(node.__file__).parent
        args = ["--count", str(count), "--node-scripts", str(scripts)] + (
            ["--more"] if more else []
        )
        return _python(["-m", "bench.offline_client", "node", *args], env, offline)

    def _job(self, run_id: str, site: str, job_id: str | None, workdir: Path) -> ComputeJob:
        """The job record (never stored: the poller does not see this job; only the sync
        state is kept)."""
        from mantik.compute.states import JobState
        from mantik.server.models import ComputeJob, utcnow

        return ComputeJob(
            run_id=run_id,
            experiment_id=self.experiment,
            username=USERNAME,
            site=site,
            job_id=job_id,
            state=JobState.RUNNING,
            entry_point="main",
            workdir=str(workdir),
            token_id="-",
            token_expires_at=utcnow() + timedelta(hours=1),
        )

    def _check(self, run_id: str, count: int) -> None:
        client = self.service.runs.client
        synced = sum(len(client.get_metric_history(run_id, f"m{k}")) for k in range(10))
        if synced != count:
            raise RuntimeError(f"the sync brought {synced} of {count} points")

    def run(self, count: int) -> dict[str, Any]:
        """B: the job folder is on a filesystem the platform reads."""
        run_id = self._new_run()
        job_dir = self.jobs / run_id
        local = self._node(count, run_id, job_dir)
        job = self._job(run_id, SITE, None, job_dir)
        started = time.perf_counter()
        self.syncer.sync(job, final=False, wait=True)
        seconds = time.perf_counter() - started
        self._check(run_id, count)
        return {**local, "sync_seconds": seconds}

    def run_unicore(self, count: int) -> dict[str, Any]:
        """D: the job folder is on the UNICORE site, read with the user's credentials."""
        from mantik.server.compute.jobs import SiteCredentials

        run_id = self._new_run()
        job_id, remote = self.unicore.new_job()
        local = self._node(count, run_id, remote)
        job = self._job(run_id, UNICORE_SITE, job_id, self.unicore_jobs / run_id)
        credentials = SiteCredentials(UNICORE_USER, UNICORE_PASSWORD)
        self.fetch_clock.seconds = 0.0
        started = time.perf_counter()
        self.syncer.sync(job, final=False, wait=True, credentials=credentials)
        seconds = time.perf_counter() - started
        self._check(run_id, count)
        # A fresh mirror: everything in it was fetched by this sync.
        fetched = [p for p in (Path(job.workdir) / ".mantik").rglob("*") if p.is_file()]
        result = {
            **local,
            "sync_seconds": seconds,
            "fetch_seconds": self.fetch_clock.seconds,
            "fetched_files": len(fetched),
            "fetched_mb": sum(p.stat().st_size for p in fetched) / 1e6,
            "unicore_job_id": job_id,
        }
        # E: the job goes on (a tenth more points); the next sync fetches what changed.
        more = count // 10
        later = self._node(more, run_id, remote, more=True)
        self.fetch_clock.seconds, self.fetch_clock.bytes = 0.0, 0
        started = time.perf_counter()
        self.syncer.sync(job, final=False, wait=True, credentials=credentials)
        result["next"] = {
            "points": more,
            "sync_seconds": time.perf_counter() - started,
            "fetch_seconds": self.fetch_clock.seconds,
            "fetched_mb": self.fetch_clock.bytes / 1e6,
            "snapshot_mb": later["snapshot_mb"],
        }
        self._check(run_id, count + more)
        return result


def _project(root: Path, seconds: float) -> Path:
    project = root / "lag-project"
    project.mkdir()
    (project / "MLproject").write_text(
        f"name: lag\nentry_points:\n  main:\n    command: 'python train.py {seconds:g}'\n"
    )
    (project / "train.py").write_text(TRAIN)
    (project / "backend.json").write_text(json.dumps({"ComputeSite": SITE, "Tracking": "auto"}))
    return project


def run(options: Options) -> PartResult:
    root = options.workdir
    data_dir, home = root / "platform", root / "home"
    data_dir.mkdir()
    with _unicore_site(root) as unicore:
        sites = root / "sites.yaml"
        closed = f"http://127.0.0.1:{procs.free_port()}"
        listed = [
            procs.one_team_site(SITE, "local", USERNAME, tracking_uri=closed),
            {
                "name": UNICORE_SITE,
                "driver": "unicore",
                "url": unicore.base_url,
                "tracking_uri": closed,
            },
        ]
        sites.write_text(json.dumps({"sites": listed}))
        return _measure(options, root, data_dir, home, sites, unicore)


@contextlib.contextmanager
def _unicore_site(root: Path) -> Iterator[UnicoreSite]:
    """The gateway in its own process (``bench.unicore_site``), stopped on exit."""
    site_root, url_file = root / "unicore-site", root / "unicore-site.url"
    command = [sys.executable, "-m", "bench.unicore_site", str(site_root), str(url_file)]
    env = procs.clean_env(
        root / "unicore-home",
        BENCH_UNICORE_USER=UNICORE_USER,
        BENCH_UNICORE_PASSWORD=UNICORE_PASSWORD,
    )
    with procs.running(
        "unicore-site",
        command,
        env=env,
        url=str(url_file),  # the gateway chooses its port: its URL is written to this file
        log_path=root / "unicore-site.log",
        cwd=root,
    ) as gateway:
        ready = procs.wait_until(gateway, url_file.exists, timeout=60)
        _say(f"UNICORE site (test gateway) ready after {ready:.1f} s")
        yield UnicoreSite(url_file.read_text().strip(), site_root)


def _measure(
    options: Options,
    root: Path,
    data_dir: Path,
    home: Path,
    sites: Path,
    unicore: UnicoreSite,
) -> PartResult:
    count, reps, lag_seconds = (20_000, 1, 30.0) if options.quick else (100_000, 3, 60.0)
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mantik.cli", "server", "start", "--port", str(port)]
    server_env = procs.clean_env(
        root / "server-home", MANTIK_DATA_DIR=str(data_dir), MANTIK_SITES_FILE=str(sites)
    )
    with procs.running(
        "platform", command, env=server_env, url=url, log_path=root / "platform.log", cwd=root
    ) as server:
        ready = procs.wait_until(
            server, lambda: procs.http_status(f"{url}/api/mantik/health") == 200, timeout=120
        )
        _say(f"platform ready after {ready:.1f} s")
        _create_user(data_dir, url, home)
        client_env = procs.clean_env(
            home, MLFLOW_TRACKING_URI=url, MANTIK_USERNAME=USERNAME, MANTIK_PASSWORD=PASSWORD
        )
        code = "import mantik, mlflow; mantik.init_tracking(); print(mlflow.create_experiment('x'))"
        made = subprocess.run(
            [sys.executable, "-c", code],
            env=client_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        experiment = made.stdout.strip().splitlines()[-1]
        client_env["BENCH_EXPERIMENT_ID"] = experiment
        bench = SyncBench(data_dir, sites, experiment, home, unicore)
        onlines, syncs = [], []
        unicores: list[dict[str, Any]] = []
        unicore_reps = max(1, reps - 1)  # D costs ~25 s per repetition (mostly the node)
        for _ in range(reps):
            onlines.append(
                _python(
                    ["-m", "bench.offline_client", "online", "--count", str(count)],
                    client_env,
                    root,
                )
            )
            _say(f"A online: {count} points in {onlines[-1]['seconds']:.2f} s")
            syncs.append(bench.run(count))
            _say(_describe_sync(count, syncs[-1]))
            if len(unicores) < unicore_reps:
                unicores.append(bench.run_unicore(count))
                _say(_describe_unicore(count, unicores[-1]))
        project = _project(root, lag_seconds)
        watched = _python(
            ["-m", "bench.offline_client", "watch", "--project", str(project)], client_env, root
        )
        _say(
            f"C lag: {len(watched['lags'])} samples, run {watched['status']}, "
            f"{watched['central_points']} points synced"
        )
    return _result(count, onlines, syncs, unicores, watched, lag_seconds, options.quick)


def _describe_sync(count: int, result: dict[str, Any]) -> str:
    return (
        f"B sync: {count} points in {result['sync_seconds']:.2f} s (the node logged them in "
        f"{result['local_seconds']:.2f} s; snapshot {result['snapshot_seconds']:.2f} s, "
        f"{result['snapshot_mb']:.0f} MB)"
    )


def _describe_unicore(count: int, result: dict[str, Any]) -> str:
    return (
        f"D sync through UNICORE: {count} points in {result['sync_seconds']:.2f} s, of which "
        f"the fetch {result['fetch_seconds']:.2f} s ({result['fetched_mb']:.1f} MB in "
        f"{result['fetched_files']} files); next sync (+{result['next']['points']} points): "
        f"{result['next']['sync_seconds']:.2f} s, fetched {result['next']['fetched_mb']:.1f} of "
        f"{result['next']['snapshot_mb']:.1f} MB"
    )


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _result(
    count: int,
    onlines: list[dict[str, Any]],
    syncs: list[dict[str, Any]],
    unicores: list[dict[str, Any]],
    watched: dict[str, Any],
    lag_seconds: float,
    quick: bool,
) -> PartResult:
    online_rate = median([count / r["seconds"] for r in onlines])
    sync_rate = median([count / r["sync_seconds"] for r in syncs])
    node_rate = median([count / r["local_seconds"] for r in syncs])
    unicore_rate = median([count / r["sync_seconds"] for r in unicores])
    fetch_share = median([r["fetch_seconds"] / r["sync_seconds"] for r in unicores])
    fetch_rate = median([r["fetched_mb"] / r["fetch_seconds"] for r in unicores])
    push_seconds = median([r["sync_seconds"] - r["fetch_seconds"] for r in unicores])
    nexts = [r["next"] for r in unicores]
    changed_share = median([n["fetched_mb"] / n["snapshot_mb"] for n in nexts])
    lags: list[float] = watched["lags"]
    job_rate = (watched["job_points"] or 0) / lag_seconds  # what the job managed to log
    lag_p50, lag_p95, lag_max = _percentile(lags, 0.5), _percentile(lags, 0.95), max(lags or [0.0])
    rows = [
        [
            f"A online log_batch over HTTP ({count:,} points)",
            f"{online_rate:,.0f}",
            fmt(median([r["seconds"] for r in onlines])),
        ],
        [
            f"B offline sync of a snapshot ({count:,} points)",
            f"{sync_rate:,.0f}",
            fmt(median([r["sync_seconds"] for r in syncs])),
        ],
        [
            "  the job logging into its local store",
            f"{node_rate:,.0f}",
            fmt(median([r["local_seconds"] for r in syncs])),
        ],
        [
            "  snapshot on the node (backup API)",
            "",
            fmt(median([r["snapshot_seconds"] for r in syncs])),
        ],
        [
            f"D sync through UNICORE's file API ({count:,} points)",
            f"{unicore_rate:,.0f}",
            fmt(median([r["sync_seconds"] for r in unicores])),
        ],
        [
            f"  the fetch (offline_files: {median([r['fetched_mb'] for r in unicores]):.1f} MB, "
            f"{fetch_rate:.0f} MB/s), {fetch_share:.0%} of D",
            "",
            fmt(median([r["fetch_seconds"] for r in unicores])),
        ],
        ["  the rest (what B does: snapshot copy, push)", "", fmt(push_seconds)],
        [
            f"E the next sync through UNICORE (+{nexts[0]['points']:,} points)",
            f"{median([n['points'] / n['sync_seconds'] for n in nexts]):,.0f}",
            fmt(median([n["sync_seconds"] for n in nexts])),
        ],
        [
            f"  the fetch: {median([n['fetched_mb'] for n in nexts]):.1f} MB of the "
            f"{median([n['snapshot_mb'] for n in nexts]):.1f} MB snapshot "
            f"({changed_share:.0%}, changed blocks only)",
            "",
            fmt(median([n["fetch_seconds"] for n in nexts])),
        ],
        ["B / A (sync over online)", fmt(sync_rate / online_rate), ""],
        ["D / A (sync through UNICORE over online)", fmt(unicore_rate / online_rate), ""],
        ["D / B (UNICORE over shared filesystem)", fmt(unicore_rate / sync_rate), ""],
        [
            f"C sync lag while the job logs, p50 (n={len(lags)})",
            f"{job_rate:,.0f}",
            fmt(lag_p50, 1),
        ],
        ["  p95", "", fmt(lag_p95, 1)],
        ["  max", "", fmt(lag_max, 1)],
        [
            "  points in the central run / logged by the job",
            f"{watched['central_points']:,}",
            f"{watched['job_points'] or 0:,}",
        ],
    ]
    checks = [
        Check("sync / online throughput", sync_rate / online_rate, ">=", MIN_SYNC_OVER_ONLINE),
        Check(
            "UNICORE sync / online throughput",
            unicore_rate / online_rate,
            ">=",
            MIN_UNICORE_OVER_ONLINE,
        ),
        Check(
            "next UNICORE fetch / snapshot size",
            changed_share,
            "<=",
            # A small store (--quick) changes in a larger share of its blocks.
            MAX_NEXT_FETCH_SHARE if not quick else 0.5,
        ),
        Check("sync lag p95", lag_p95, "<=", MAX_LAG_SECONDS, " s"),
        Check("offline run FINISHED", 1.0 if watched["status"] == "FINISHED" else 0.0, ">=", 1.0),
        Check(
            "points missing or doubled",
            float(abs(watched["central_points"] - (watched["job_points"] or -1))),
            "<=",
            0.0,
        ),
    ]
    notes = [
        f"Defaults: the node publishes a snapshot every {SNAPSHOT_SECONDS:g} s, the poller syncs "
        f"every {POLL_SECONDS:g} s; a point therefore reaches the central run within one sync "
        f"period ({SNAPSHOT_SECONDS + POLL_SECONDS:g} s) plus the sync itself. Both are settings "
        "(MANTIK_OFFLINE_SNAPSHOT_SECONDS, MANTIK_POLL_SECONDS).",
        "B writes with the server-side MlflowClient straight into the tracking store, 1000 "
        "points per log_batch, and commits its high-water mark after each batch; A goes "
        "through HTTP, authentication and MLflow's REST handlers.",
        "D: the site is the test suite's UNICORE gateway (bench/unicore_site.py) in its own "
        "process on this machine: it stands in for UNICORE/X, and its file serving speed "
        "(uvicorn on 127.0.0.1, no TLS, no network, 64 KiB chunks) is not a real site's. The "
        "fetch (the UNICORE driver's offline_files, timed alone) signs in, reads the job, "
        "lists two folders and GETs the tracking file and the snapshot whole; the rest of D "
        "is what B does (snapshot copy, push). E: the same job logs a tenth more points and "
        "publishes a new snapshot; the next sync fetches the node's block digests and only "
        "the 16 KiB blocks that changed (HTTP ranges).",
        "Lag: seconds since the newest point that reached the central run (node clock = "
        "platform clock here), sampled every 0.5 s while the job runs.",
    ]
    if quick:
        notes.append(f"--quick: {count:,} points, one repetition, a {lag_seconds:g} s job.")
    else:
        notes.append(f"Repetitions: {len(onlines)} of A and B, {len(unicores)} of D (medians).")
    return PartResult(
        number=4,
        title="offline tracking: sync throughput vs online logging, and the lag",
        header=["measure", "points/s", "seconds"],
        rows=rows,
        checks=checks,
        notes=notes,
        data={
            "count": count,
            "online": onlines,
            "sync": syncs,
            "unicore": unicores,
            "lag": watched,
        },
    )
