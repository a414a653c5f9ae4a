"""A UNICORE/X REST test gateway that really runs jobs on the local SLURM.

A real UNICORE server cannot run on our machines (Java, not packaged, no Docker), so the
``unicore`` driver is tested against this server. It speaks the subset of the UNICORE/X REST
API that pyunicore 2.0.2 uses (UNICORE/X REST API documentation, unicore.eu) and executes jobs the
way UNICORE's TSI does: it renders a batch script with ``#SBATCH`` directives from the job
description, submits it with ``sbatch``, follows it with ``squeue`` and reads the exit code
the script leaves in ``UNICORE_SCRIPT_EXIT_CODE``.

Where a behaviour is taken from UNICORE's own source or documentation, the comment next to it
says so ("verified"); where it is only our best guess, it says "assumed".

    with UnicoreGateway(users={"alice": "pw"}, work_root=tmp_path) as gateway:
        client = Client(Transport(UsernamePassword("alice", "pw")), gateway.base_url)
        job = client.new_job({"Executable": "/bin/date"})
        gateway.wait_for(job.job_id)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import hmac
import json
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# --- constants --------------------------------------------------------------------------

SESSION_HEADER = "X-UNICORE-SecuritySession"
SERVER_VERSION = "10.1.1-test-gateway"  # pyunicore parses the part before "-"
EXIT_CODE_FILE = "UNICORE_SCRIPT_EXIT_CODE"  # verified: the TSI's name for this file
_PRE_EXIT_CODE_FILE = ".UNICORE_PRECOMMAND_EXIT_CODE"  # the gateway's own bookkeeping
TERMINAL = frozenset({"SUCCESSFUL", "FAILED"})

# Assumed wording: unicorex's DefaultProcessor records ActionResult(USER_ABORTED, "Job
# aborted."); how the REST layer words that in statusMessage is not verified.
ABORT_MESSAGE = "Job was aborted"

# Built-in resource names (notes: unicorex JSONParser). Anything else must be defined by
# the site, else the job FAILS after the 201 -- this gateway defines none.
BUILTIN_RESOURCES = frozenset(
    {
        "Runtime",
        "Queue",
        "Nodes",
        "TotalCPUs",
        "CPUsPerNode",
        "GPUsPerNode",
        "Memory",
        "Reservation",
        "NodeConstraints",
        "QoS",
        "Exclusive",
        "ArraySize",
        "ArrayLimit",
        "Project",
    }
)

# SLURM states while a job is not finished, mapped to UNICORE statuses. The TSI's own
# decoder (verified, slurm/BSS.py) maps PENDING/CONFIGURING → QUEUED, RUNNING/COMPLETING →
# RUNNING, and CANCELLED/FAILED/COMPLETED → COMPLETED, after which XNJS reads the exit code.
_WAITING = {
    "PENDING": "QUEUED",
    "CONFIGURING": "QUEUED",
    "REQUEUED": "QUEUED",
    "REQUEUE_HOLD": "QUEUED",
    "REQUEUE_FED": "QUEUED",
    "RESV_DEL_HOLD": "QUEUED",
    "SUSPENDED": "QUEUED",
    "STOPPED": "QUEUED",
    "PREEMPTED": "QUEUED",
    "RUNNING": "RUNNING",
    "COMPLETING": "RUNNING",
    "RESIZING": "RUNNING",
    "SIGNALING": "RUNNING",
    "STAGE_OUT": "RUNNING",
}

_RUNTIME = re.compile(r"(\d+)(s|min|m|h|d)?")
_RUNTIME_UNITS = {None: 1, "s": 1, "min": 60, "m": 60, "h": 3600, "d": 86400}
_MEMORY = re.compile(r"(\d+)([KMGT])?")
_MEMORY_UNITS = {None: 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Values that reach an #SBATCH line: one token, no whitespace or quotes.
_DIRECTIVE_VALUE = re.compile(r"[A-Za-z0-9_.,:@%&|!()\[\]*+=/-]+")
# verified (tsi slurm/BSS.py): any other character in the name gives "UNICORE_job"
_JOB_NAME_ILLEGAL = re.compile(r"[^0-9a-zA-Z.:=~/]")


def _now() -> datetime:
    return datetime.now().astimezone()


def unicore_date(moment: datetime) -> str:
    """``yyyy-MM-dd'T'HH:mm:ssZ``, e.g. ``2024-01-01T12:00:00+0100`` (verified, REST docs)."""
    return moment.astimezone().strftime("%Y-%m-%dT%H:%M:%S%z")


def _flag(value: Any, default: bool = False) -> bool:
    """UNICORE booleans are the strings "true"/"false"; accept JSON booleans too."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() == "true"


# --- job description → batch script -----------------------------------------------------


class JobDescriptionError(Exception):
    """The job cannot run as described; the message becomes the job's ``statusMessage``."""


def parse_runtime(value: Any) -> int:
    """Seconds from ``Runtime``: an integer with an optional s|min|m|h|d suffix (notes)."""
    match = _RUNTIME.fullmatch(str(value).strip())
    if not match:
        raise JobDescriptionError(f"Resource Runtime has an invalid value: {value}")  # assumed
    return int(match.group(1)) * _RUNTIME_UNITS[match.group(2)]


def parse_memory(value: Any) -> int:
    """Bytes from ``Memory``: an integer with an optional K|M|G|T suffix (powers of 1024; notes).

    "12GiB" and "12GB" are invalid on a real UNICORE (notes); so they are here.
    """
    match = _MEMORY.fullmatch(str(value).strip())
    if not match:
        raise JobDescriptionError(f"Resource Memory has an invalid value: {value}")  # assumed
    return int(match.group(1)) * _MEMORY_UNITS[match.group(2)]


def _positive_int(name: str, value: Any) -> int:
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise JobDescriptionError(f"Resource {name} has an invalid value: {value}")  # assumed
    return int(text)


def _directive_value(name: str, value: Any) -> str:
    text = str(value).strip()
    if not _DIRECTIVE_VALUE.fullmatch(text):
        raise JobDescriptionError(f"Resource {name} has an invalid value: {value!r}")
    return text


def _environment(description: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``Environment`` (list of ``K=V`` or a map) and ``Parameters`` as variables.

    UNICORE docs: "parameters for applications are often transferred in the form of
    environment variables" -- exporting them for a plain Executable is assumed.
    """
    pairs: list[tuple[str, str]] = []
    environment = description.get("Environment") or []
    if isinstance(environment, Mapping):
        pairs.extend((str(k), str(v)) for k, v in environment.items())
    elif isinstance(environment, list):
        for entry in environment:
            name, sep, value = str(entry).partition("=")
            if not sep:
                raise JobDescriptionError(f"Invalid environment setting: {entry!r}")
            pairs.append((name.strip(), value))
    else:
        raise JobDescriptionError("Environment must be a list of 'NAME=value' or a map")
    parameters = description.get("Parameters") or {}
    if not isinstance(parameters, Mapping):
        raise JobDescriptionError("Parameters must be a map")
    pairs.extend((str(k), str(v)) for k, v in parameters.items())
    for name, _ in pairs:
        if not _ENV_NAME.fullmatch(name):
            raise JobDescriptionError(f"Invalid environment variable name: {name!r}")
    return pairs


def _export(name: str, value: str) -> str:
    # Double quotes keep spaces but still expand "$PATH"-style references, which the UNICORE
    # docs use ("PATH=/bin:$PATH"); how XNJS quotes exactly is assumed.
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`")
    return f'export {name}="{escaped}"'


@dataclass(frozen=True)
class BatchPlan:
    """What the gateway will do for one job, decided before anything runs."""

    script: str | None  # None: nothing to execute ("empty job", XNJS sets it SUCCESSFUL)
    directives: tuple[str, ...]
    precommand_on_login_node: str | None
    postcommand_on_login_node: str | None
    ignore_exit_code: bool
    ignore_precommand_exit_code: bool
    ignore_postcommand_exit_code: bool


def sbatch_directives(description: Mapping[str, Any], workdir: Path) -> list[str]:
    """The ``#SBATCH`` options UNICORE's TSI (slurm/BSS.py, verified) writes for a job."""
    resources = description.get("Resources") or {}
    if not isinstance(resources, Mapping):
        raise JobDescriptionError("Resources must be a map")
    for name in resources:
        if name not in BUILTIN_RESOURCES:
            # verified wording (notes): "Resource CPUs is not available"
            raise JobDescriptionError(f"Resource {name} is not available")
    for name in ("ArraySize", "ArrayLimit"):
        if name in resources:
            raise JobDescriptionError(f"Resource {name} is not supported by the test gateway")

    name = str(description.get("Name") or "UNICORE_Job")
    if _JOB_NAME_ILLEGAL.search(name):
        name = "UNICORE_job"  # verified (TSI): names with other characters are replaced
    lines = [f"--job-name={name}"]
    if resources.get("Queue") is not None:
        lines.append(f"--partition={_directive_value('Queue', resources['Queue'])}")
    project = description.get("Project") or resources.get("Project")
    if project:
        lines.append(f"--account={_directive_value('Project', project)}")
    nodes = _positive_int("Nodes", resources["Nodes"]) if "Nodes" in resources else None
    per_node = (
        _positive_int("CPUsPerNode", resources["CPUsPerNode"])
        if "CPUsPerNode" in resources
        else None
    )
    total = _positive_int("TotalCPUs", resources["TotalCPUs"]) if "TotalCPUs" in resources else None
    # verified (TSI): with a node count, --nodes (+ --ntasks-per-node); otherwise the total
    # count as --ntasks. The other value is then dropped, as the TSI drops it.
    if nodes is not None:
        lines.append(f"--nodes={nodes}")
        if per_node is not None:
            lines.append(f"--ntasks-per-node={per_node}")
    elif total is not None:
        lines.append(f"--ntasks={total}")
    if resources.get("NodeConstraints"):
        value = _directive_value("NodeConstraints", resources["NodeConstraints"])
        lines.append(f"--constraint={value}")
    if resources.get("QoS"):
        lines.append(f"--qos={_directive_value('QoS', resources['QoS'])}")
    if "Memory" in resources:
        # verified (TSI): --mem per node in MB; at least 1 here (--mem=0 means "all").
        megabytes = max(1, parse_memory(resources["Memory"]) // 1024**2)
        lines.append(f"--mem={megabytes}")
    if "Runtime" in resources:
        # verified (TSI): minutes; notes: at least 1.
        lines.append(f"--time={max(1, parse_runtime(resources['Runtime']) // 60)}")
    if resources.get("Reservation"):
        lines.append(f"--reservation={_directive_value('Reservation', resources['Reservation'])}")
    if "GPUsPerNode" in resources:  # assumed: not in the TSI version we read
        lines.append(f"--gpus-per-node={_positive_int('GPUsPerNode', resources['GPUsPerNode'])}")
    if _flag(resources.get("Exclusive")):  # assumed
        lines.append("--exclusive")
    stdout = _plain_file_name("Stdout", description.get("Stdout") or "stdout")
    stderr = _plain_file_name("Stderr", description.get("Stderr") or "stderr")
    # verified (TSI): output files in the working directory, which is also --chdir
    lines.append(f"--output={workdir / stdout}")
    lines.append(f"--error={workdir / stderr}")
    lines.append(f"--chdir={workdir}")
    return lines


def _plain_file_name(key: str, value: Any) -> str:
    text = str(value)
    if not text or "/" in text or text in (".", "..") or not _DIRECTIVE_VALUE.fullmatch(text):
        raise JobDescriptionError(f"{key} must be a plain file name, not {value!r}")
    return text


def plan_job(description: Mapping[str, Any], workdir: Path) -> BatchPlan:
    """Check a job description and render its batch script; raise JobDescriptionError."""
    job_type = str(description.get("Job type") or "batch").lower()
    if job_type != "batch":
        raise JobDescriptionError(f"Job type {job_type!r} is not supported by the test gateway")
    if description.get("ApplicationName"):
        raise JobDescriptionError(
            f"Application {description['ApplicationName']!r} is not available "
            "(the test gateway defines no applications)"
        )
    if description.get("Exports"):
        raise JobDescriptionError("Exports are not supported by the test gateway")
    arguments = description.get("Arguments") or []
    if not isinstance(arguments, list) or any(isinstance(a, Mapping | list) for a in arguments):
        raise JobDescriptionError("Arguments must be a list of strings (no sweeps here)")
    directives = sbatch_directives(description, workdir)
    environment = _environment(description)
    pre = description.get("User precommand")
    post = description.get("User postcommand")
    # verified (UNICORE docs): pre- and post-commands run on the login node by default
    pre_on_login = _flag(description.get("RunUserPrecommandOnLoginNode"), default=True)
    post_on_login = _flag(description.get("RunUserPostcommandOnLoginNode"), default=True)
    ignore_pre = _flag(description.get("UserPrecommandIgnoreNonZeroExitCode"))
    executable = description.get("Executable")
    script: str | None = None
    if executable:
        lines = ["#!/bin/bash", *(f"#SBATCH {d}" for d in directives)]
        lines.append("# rendered by the mantik UNICORE test gateway (XNJS + TSI's job)")
        lines.append(f"cd {shlex.quote(str(workdir))} || exit 1")
        lines.extend(_export(k, v) for k, v in environment)
        if pre and not pre_on_login:
            # same shell as the executable, so that e.g. "module load" carries over (assumed)
            lines.append(f"{{\n{pre}\n}}")
            lines.append("UC_PRE_EXIT=$?")
            failing = "" if ignore_pre else "; exit 0"
            lines.append(
                f'if [ "$UC_PRE_EXIT" -ne 0 ]; then echo "$UC_PRE_EXIT" > '
                f"{_PRE_EXIT_CODE_FILE}{failing}; fi"
            )
        # assumed: XNJS hands Executable and Arguments to the shell as they are (no quoting),
        # so shell syntax in them works and arguments with spaces need the user's quotes.
        # The command runs in a subshell so that an "exit N" in it still leaves its code.
        command = " ".join([str(executable), *(str(a) for a in arguments)])
        stdin = description.get("Stdin")
        if stdin:
            command = f"( {command}\n) < {shlex.quote(_plain_file_name('Stdin', stdin))}"
        else:
            command = f"( {command}\n)"
        lines.append(command)
        lines.append(f"echo $? > {EXIT_CODE_FILE}")
        if post and not post_on_login:
            lines.append(f"{{\n{post}\n}}")
        script = "\n".join(lines) + "\n"
    return BatchPlan(
        script=script,
        directives=tuple(directives),
        precommand_on_login_node=str(pre) if pre and pre_on_login else None,
        postcommand_on_login_node=str(post) if post and post_on_login else None,
        ignore_exit_code=_flag(description.get("IgnoreNonZeroExitCode")),
        ignore_precommand_exit_code=ignore_pre,
        ignore_postcommand_exit_code=_flag(description.get("UserPostcommandIgnoreNonZeroExitCode")),
    )


# --- jobs -------------------------------------------------------------------------------


@dataclass(eq=False)
class _Job:
    id: str
    user: str
    description: dict[str, Any]
    workdir: Path
    submitted: datetime
    termination: datetime
    status: str = "READY"
    status_message: str = ""
    exit_code: int | None = None
    log: list[str] = field(default_factory=list)
    bss_id: str | None = None
    queue: str | None = None
    plan: BatchPlan | None = None
    # created → starting → submitted → done
    phase: str = "created"
    script_path: Path | None = None

    def add_log(self, message: str) -> None:
        self.log.append(f"{unicore_date(_now())}: {message}")

    def finish(self, status: str, message: str = "") -> None:
        self.status = status
        self.status_message = message
        self.phase = "done"
        self.add_log(f"Status set to {status}" + (f": {message}" if message else "."))


@dataclass(frozen=True)
class JobView:
    """A snapshot of one job, for assertions in tests."""

    id: str
    user: str
    status: str
    status_message: str
    exit_code: int | None
    bss_id: str | None
    queue: str | None
    workdir: Path
    description: dict[str, Any]
    log: tuple[str, ...]
    script: str | None
    directives: tuple[str, ...]


@dataclass
class Exchange:
    """One request the gateway received, with the status it answered (None while busy)."""

    method: str
    path: str
    status: int | None = None
    had_session: bool = False
    authorization: str | None = None  # "basic", "bearer" or None


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> JSONResponse:
    # verified (notes): errors are JSON {"errorMessage": ..., "status": N}
    return JSONResponse({"errorMessage": message, "status": status}, status_code=status)


@dataclass(frozen=True)
class _Caller:
    user: str | None  # None: anonymous
    session: str | None


# --- the gateway ------------------------------------------------------------------------


class UnicoreGateway:
    """A UNICORE/X REST server on 127.0.0.1 (a free port) that runs jobs on the local SLURM.

    Use it as a context manager (or ``start()``/``stop()``); it serves from a uvicorn thread
    and follows SLURM from a second thread every ``poll_interval`` seconds.

    Attributes: ``base_url`` (``http[s]://127.0.0.1:PORT/SITE/rest/core``), ``job_url(id)``,
    ``storage_url(id)``; ``requests`` -- ``(method, path)`` of every request received;
    ``exchanges`` -- the same with the status answered and whether a session / which
    credential was sent; ``jobs`` / ``job(id)`` -- snapshots (status, SLURM id, rendered
    script, ``#SBATCH`` directives, working directory); ``wait_for(id)``; ``errors`` --
    problems of the SLURM thread (a test should assert it stays empty).

    Knobs: ``submission_enabled`` (settable any time; False → 503 on POST /jobs);
    ``expire_sessions()`` (the next request carrying a security session gets 432);
    ``tokens`` (Bearer token → user); ``tls=True`` (https with a self-signed certificate,
    ``ca_file`` / ``ssl_context()`` for clients). Invalid resources (an undefined name like
    ``CPUs``, ``Memory: "12GiB"``) make a job FAILED after the 201, as on a real UNICORE.
    Jobs run as the user running the gateway (a real UNICORE runs them as the xlogin).
    ``storages`` names storages besides the job directories (e.g. ``SCRATCH``): each user
    sees their own folder ``work_root/storages/NAME/USER`` there (mount point in its
    properties), listed by ``GET /storages`` without a filter, as UNICORE lists them.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        work_root: Path,
        site: str = "DEMO-SITE",
        *,
        tokens: Mapping[str, str] | None = None,
        submission_enabled: bool = True,
        poll_interval: float = 0.2,
        job_environment: Mapping[str, str] | None = None,
        job_lifetime: timedelta = timedelta(days=30),
        session_lifetime: timedelta = timedelta(hours=8),
        queues: Iterable[str] | None = None,
        tls: bool = False,
        storages: Iterable[str] = (),
    ) -> None:
        self.users = dict(users)
        self.tokens = dict(tokens or {})  # Bearer token → user name
        self.work_root = Path(work_root).resolve()
        self.site = site
        self.submission_enabled = submission_enabled
        self.poll_interval = poll_interval
        self.job_lifetime = job_lifetime  # assumed default; "terminationTime" is cleanup time
        self.session_lifetime = session_lifetime
        self.job_environment = dict(job_environment) if job_environment is not None else None
        self._queues = list(queues) if queues is not None else None
        self.tls = tls
        # With tls: a self-signed certificate for 127.0.0.1, written at start()
        self.ca_file: Path | None = None
        self.requests: list[tuple[str, str]] = []
        self.exchanges: list[Exchange] = []
        self.errors: list[str] = []  # problems of the background worker (tests assert empty)
        self._lock = threading.RLock()
        self._jobs: dict[str, _Job] = {}
        self._storage_names = frozenset(storages)
        # (storage, user) → a job-like holder of that user's folder (same file endpoints)
        self._spaces: dict[tuple[str, str], _Job] = {}
        self._sessions: dict[str, str] = {}  # session id → user
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._server_thread: threading.Thread | None = None
        self._worker: threading.Thread | None = None
        self.app = self._build_app()

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> UnicoreGateway:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._server is not None:
            return
        self.work_root.mkdir(parents=True, exist_ok=True)
        if self._queues is None:
            self._queues = _slurm_partitions()
        certfile = keyfile = None
        if self.tls:
            cert, key = _self_signed_certificate(self.work_root / ".gateway-tls")
            self.ca_file = cert
            certfile, keyfile = str(cert), str(key)
        self._stopping.clear()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            _Recorder(self.app, self),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
        )
        self._server = uvicorn.Server(config)
        server = self._server
        self._server_thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="unicore-gateway", daemon=True
        )
        self._server_thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if not self._server_thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError("the UNICORE test gateway did not start")
            time.sleep(0.01)
        self._worker = threading.Thread(target=self._work, name="unicore-gateway-tsi", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        """Stop serving, stop polling, and scancel every SLURM job still running."""
        if self._server is None:
            return
        self._stopping.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout=30)
        with self._lock:
            leftovers = [
                j.bss_id for j in self._jobs.values() if j.bss_id and j.phase == "submitted"
            ]
            for job in self._jobs.values():
                if job.phase != "done":
                    job.finish("FAILED", "The test gateway was stopped")
        if leftovers:
            _run(["scancel", *leftovers])
        self._server.should_exit = True
        if self._server_thread is not None:
            self._server_thread.join(timeout=15)
        self._server = None

    # -- addresses --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the gateway is not started")
        return self._port

    @property
    def root_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this gateway's certificate (with ``tls=True``)."""
        if self.ca_file is None:
            raise RuntimeError("the gateway runs without TLS (or is not started)")
        return ssl.create_default_context(cafile=str(self.ca_file))

    @property
    def base_url(self) -> str:
        return f"{self.root_url}{self._prefix}"

    @property
    def _prefix(self) -> str:
        return f"/{self.site}/rest/core"

    def job_url(self, job_id: str) -> str:
        return f"{self.base_url}/jobs/{job_id}"

    def storage_url(self, job_id: str) -> str:
        return f"{self.base_url}/storages/{job_id}-uspace"

    # -- knobs and inspection ---------------------------------------------------------------

    def expire_sessions(self) -> None:
        """Forget every security session: the next request that sends one gets 432."""
        with self._lock:
            self._sessions.clear()

    @property
    def jobs(self) -> dict[str, JobView]:
        with self._lock:
            return {job_id: self._view(job) for job_id, job in self._jobs.items()}

    def job(self, job_id: str) -> JobView:
        with self._lock:
            return self._view(self._jobs[job_id])

    def wait_for(
        self, job_id: str, statuses: Iterable[str] = TERMINAL, timeout: float = 30
    ) -> JobView:
        """Wait until the job's status is one of ``statuses``; return its snapshot."""
        wanted = set(statuses)
        deadline = time.monotonic() + timeout
        while True:
            view = self.job(job_id)
            if view.status in wanted:
                return view
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is {view.status}, not {sorted(wanted)}")
            time.sleep(0.05)

    def _view(self, job: _Job) -> JobView:
        script = None
        if job.script_path is not None and job.script_path.exists():
            script = job.script_path.read_text()
        return JobView(
            id=job.id,
            user=job.user,
            status=job.status,
            status_message=job.status_message,
            exit_code=job.exit_code,
            bss_id=job.bss_id,
            queue=job.queue,
            workdir=job.workdir,
            description=copy.deepcopy(job.description),
            log=tuple(job.log),
            script=script,
            directives=job.plan.directives if job.plan else (),
        )

    # -- HTTP ----------------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        p = "/{site}/rest/core"
        all_methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
        routes = [
            Route(p, self._endpoint(self._base, anonymous=True), methods=["GET"]),
            Route(p + "/jobs", self._endpoint(self._jobs_list), methods=["GET"]),
            Route(p + "/jobs", self._endpoint(self._submit), methods=["POST"]),
            Route(p + "/jobs/{job_id}", self._endpoint(self._job_get), methods=["GET"]),
            Route(p + "/jobs/{job_id}", self._endpoint(self._job_delete), methods=["DELETE"]),
            Route(
                p + "/jobs/{job_id}/actions/{action}",
                self._endpoint(self._job_action),
                methods=["POST"],
            ),
            Route(p + "/jobs/{job_id}/details", self._endpoint(self._job_details), methods=["GET"]),
            Route(
                p + "/jobs/{job_id}/submitted",
                self._endpoint(self._job_submitted),
                methods=["GET"],
            ),
            Route(p + "/storages", self._endpoint(self._storages_list), methods=["GET"]),
            Route(p + "/storages/{sid}", self._endpoint(self._storage_get), methods=["GET"]),
            Route(
                p + "/storages/{sid}/actions/{action}",
                self._endpoint(self._storage_action),
                methods=["POST"],
            ),
            Route(
                p + "/storages/{sid}/files",
                self._endpoint(self._files),
                methods=["GET", "PUT", "POST", "DELETE"],
            ),
            Route(
                p + "/storages/{sid}/files/{path:path}",
                self._endpoint(self._files),
                methods=["GET", "PUT", "POST", "DELETE"],
            ),
            Route(p + "/factories", self._endpoint(self._factories), methods=["GET"]),
            Route(p + "/factories/{fid}", self._endpoint(self._factory), methods=["GET"]),
            Route(p + "/transfers", self._endpoint(self._transfers), methods=["GET"]),
            Route("/{rest:path}", self._not_found, methods=all_methods),
        ]
        return Starlette(routes=routes)

    async def _not_found(self, request: Request) -> Response:
        return _error(404, f"No such resource: {request.url.path}")

    def _endpoint(
        self,
        handler: Callable[[Request, str], Awaitable[Response]],
        *,
        anonymous: bool = False,
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if request.path_params.get("site") != self.site:
                return _error(404, f"No such site: {request.path_params.get('site')}")
            try:
                caller = self._authenticate(request)
            except ApiError as exc:
                return _error(exc.status, exc.message)
            try:
                if caller.user is None:
                    if not anonymous:
                        # assumed: anonymous callers may only read the base resource
                        raise ApiError(403, "Access denied: please authenticate")
                    response = await self._base_anonymous(request)
                else:
                    response = await handler(request, caller.user)
            except ApiError as exc:
                response = _error(exc.status, exc.message)
            if caller.session is not None:
                # verified (REST docs): session id and its lifetime in milliseconds
                response.headers[SESSION_HEADER] = caller.session
                lifetime = int(self.session_lifetime.total_seconds() * 1000)
                response.headers[SESSION_HEADER + "-Lifetime"] = str(lifetime)
            return response

        return endpoint

    def _authenticate(self, request: Request) -> _Caller:
        session = request.headers.get(SESSION_HEADER)
        if session is not None:
            with self._lock:
                known = self._sessions.get(session)
            if known is None:
                # verified (REST docs): an invalid session answers 432, the client must
                # re-send its credentials (pyunicore retries once without the header)
                raise ApiError(432, "Security session expired or unknown")
            return _Caller(known, session)
        header = request.headers.get("Authorization")
        if not header:
            return _Caller(None, None)
        scheme, _, value = header.partition(" ")
        user: str | None = None
        if scheme.lower() == "basic":
            try:
                name, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                name, sep, password = "", "", ""
            expected = self.users.get(name)
            if sep and expected is not None and hmac.compare_digest(expected, password):
                user = name
        elif scheme.lower() == "bearer":
            user = self.tokens.get(value.strip())
        if user is None:
            # notes: bad credentials → 403 (or 401); we answer 403
            raise ApiError(403, "Authentication failed: invalid credentials")
        session_id = uuid.uuid4().hex
        with self._lock:
            self._sessions[session_id] = user
        return _Caller(user, session_id)

    # -- base ------------------------------------------------------------------------------------

    def _links(self) -> dict[str, dict[str, str]]:
        base = self.base_url
        return {
            "self": {"href": base},
            "jobs": {"href": f"{base}/jobs"},
            "storages": {"href": f"{base}/storages"},
            "transfers": {"href": f"{base}/transfers"},
            "factories": {"href": f"{base}/factories"},
        }

    def _server_info(self) -> dict[str, Any]:
        return {
            "version": SERVER_VERSION,
            "jobSubmission": {"enabled": self.submission_enabled},
            "externalHostname": "127.0.0.1",
        }

    async def _base_anonymous(self, request: Request) -> Response:
        return JSONResponse(
            {
                "client": {"role": {"selected": "anonymous", "availableRoles": []}},
                "server": self._server_info(),
                "_links": self._links(),
            }
        )

    async def _base(self, request: Request, user: str) -> Response:
        return JSONResponse(
            {
                "client": {
                    "dn": _dn(user),
                    "role": {"selected": "user", "availableRoles": ["user"]},
                    "xlogin": {"UID": user, "availableUIDs": [user], "availableGroups": []},
                    "queues": {"availableQueues": list(self._queues or [])},
                },
                "server": self._server_info(),
                "_links": self._links(),
            }
        )

    async def _factories(self, request: Request, user: str) -> Response:
        url = f"{self.base_url}/factories/default_target_system_factory"
        return JSONResponse({"factories": [url], "_links": {"self": {"href": url}}})

    async def _factory(self, request: Request, user: str) -> Response:
        if request.path_params["fid"] != "default_target_system_factory":
            raise ApiError(404, "No such factory")
        return JSONResponse(
            {
                "resources": {"Queue": {"AllowedValues": list(self._queues or [])}},
                "applications": [],
                "_links": {"self": {"href": str(request.url)}},
            }
        )

    async def _transfers(self, request: Request, user: str) -> Response:
        return JSONResponse({"transfers": [], "_links": {"self": {"href": str(request.url)}}})

    # -- jobs ------------------------------------------------------------------------------------

    def _get_job(self, job_id: str, user: str) -> _Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"Job {job_id} not found")
        if job.user != user:
            raise ApiError(403, "Access denied")  # assumed wording
        return job

    async def _jobs_list(self, request: Request, user: str) -> Response:
        params = request.query_params
        tags = {t for t in params.get("tags", "").split(",") if t}
        with self._lock:
            jobs = [
                j
                for j in self._jobs.values()
                if j.user == user and tags <= set(j.description.get("Tags") or [])
            ]
        offset = int(params.get("offset", 0) or 0)
        num = params.get("num")
        jobs = jobs[offset:] if num is None else jobs[offset : offset + int(num)]
        return JSONResponse(
            {
                "jobs": [self.job_url(j.id) for j in jobs],
                "_links": {"self": {"href": str(request.url)}},
            }
        )

    async def _submit(self, request: Request, user: str) -> Response:
        if not self.submission_enabled:
            # verified (notes): disabled submission answers 503
            raise ApiError(503, "Job submission is currently disabled")
        try:
            description = json.loads(await request.body())
        except ValueError as exc:
            raise ApiError(400, f"Invalid JSON job description: {exc}") from exc
        if not isinstance(description, dict):
            raise ApiError(400, "The job description must be a JSON object")
        job_id = str(uuid.uuid4())
        workdir = self.work_root / job_id
        workdir.mkdir(parents=True)
        now = _now()
        job = _Job(
            id=job_id,
            user=user,
            description=description,
            workdir=workdir,
            submitted=now,
            termination=now + self.job_lifetime,
        )
        job.add_log(f"Created with ID {job_id}")
        try:
            # Resource problems surface after the 201, as a FAILED job (notes)
            job.plan = plan_job(description, workdir)
        except JobDescriptionError as exc:
            job.finish("FAILED", str(exc))
        with self._lock:
            self._jobs[job_id] = job
            if job.phase != "done":
                if _flag(description.get("haveClientStageIn")):
                    job.add_log("Waiting for the client to start the job.")
                else:
                    self._request_start(job)
        # verified (notes): 201, empty body, Location
        return Response(status_code=201, headers={"Location": self.job_url(job_id)})

    def _request_start(self, job: _Job) -> None:
        job.phase = "starting"
        job.status = "QUEUED"  # assumed: XNJS's PENDING shows as QUEUED until it is submitted
        job.add_log("Start requested.")
        self._wake.set()

    def _job_properties(self, job: _Job) -> dict[str, Any]:
        url = self.job_url(job.id)
        props: dict[str, Any] = {
            "status": job.status,
            "statusMessage": job.status_message,
            "log": list(job.log),
            "name": job.description.get("Name") or "N/A",  # verified (docs): or "N/A"
            "queue": job.queue or "N/A",  # verified (docs): or "N/A"
            "batchSystemID": job.bss_id or "N/A",
            "submissionTime": unicore_date(job.submitted),
            # verified (docs): terminationTime is the time of automated job cleanup
            "terminationTime": unicore_date(job.termination),
            "currentTime": unicore_date(_now()),
            "owner": _dn(job.user),
            "tags": list(job.description.get("Tags") or []),
            "acl": [],
            "resourceStatus": "READY",
            "submissionPreferences": {},
            "_links": {
                "self": {"href": url},
                "action:start": {"href": f"{url}/actions/start"},
                "action:abort": {"href": f"{url}/actions/abort"},
                "action:restart": {"href": f"{url}/actions/restart"},
                "workingDirectory": {"href": self.storage_url(job.id)},
                "details": {"href": f"{url}/details"},
                "submitted": {"href": f"{url}/submitted"},
            },
        }
        if job.exit_code is not None:
            props["exitCode"] = str(job.exit_code)  # notes: a string, once known
        return props

    async def _job_get(self, request: Request, user: str) -> Response:
        with self._lock:
            job = self._get_job(request.path_params["job_id"], user)
            return JSONResponse(self._job_properties(job))

    async def _job_submitted(self, request: Request, user: str) -> Response:
        with self._lock:
            job = self._get_job(request.path_params["job_id"], user)
            return JSONResponse(copy.deepcopy(job.description))

    async def _job_details(self, request: Request, user: str) -> Response:
        with self._lock:
            bss_id = self._get_job(request.path_params["job_id"], user).bss_id
        if bss_id is None:
            return JSONResponse({})
        result = await run_in_threadpool(_run, ["scontrol", "show", "job", "-o", bss_id])
        details: dict[str, Any] = {}
        for token in result.stdout.split():
            key, sep, value = token.partition("=")
            if sep:
                details[key] = value
        details["rawDetailsData"] = result.stdout.strip()  # assumed field name
        return JSONResponse(details)

    async def _job_action(self, request: Request, user: str) -> Response:
        action = request.path_params["action"]
        cancel: str | None = None
        with self._lock:
            job = self._get_job(request.path_params["job_id"], user)
            if action == "start":
                if job.phase == "created":  # idempotent: a second start does nothing
                    self._request_start(job)
            elif action == "abort":
                if job.phase != "done":
                    cancel = job.bss_id if job.phase == "submitted" else None
                    job.finish("FAILED", ABORT_MESSAGE)
            elif action == "restart":
                if job.plan is None:
                    raise ApiError(400, "This job cannot be restarted")
                cancel = job.bss_id if job.phase == "submitted" else None
                for name in (EXIT_CODE_FILE, _PRE_EXIT_CODE_FILE):
                    (job.workdir / name).unlink(missing_ok=True)
                job.exit_code = None
                job.bss_id = None
                job.status_message = ""
                job.add_log("Restarting.")
                self._request_start(job)
            else:
                raise ApiError(404, f"No such action: {action}")
        if cancel is not None:
            await run_in_threadpool(_run, ["scancel", cancel])
        return Response(status_code=204)

    async def _job_delete(self, request: Request, user: str) -> Response:
        with self._lock:
            job = self._get_job(request.path_params["job_id"], user)
            cancel = job.bss_id if job.phase == "submitted" else None
            if job.phase != "done":
                job.finish("FAILED", ABORT_MESSAGE)
            del self._jobs[job.id]
        if cancel is not None:
            await run_in_threadpool(_run, ["scancel", cancel])
        # verified (notes): DELETE removes the working directory too
        await run_in_threadpool(shutil.rmtree, job.workdir, True)
        return Response(status_code=204)

    # -- storages -------------------------------------------------------------------------------

    def _named_storage(self, sid: str, user: str) -> _Job:
        with self._lock:
            space = self._spaces.get((sid, user))
            if space is None:
                folder = self.work_root / "storages" / sid / user
                folder.mkdir(parents=True, exist_ok=True)
                now = _now()
                space = _Job(sid, user, {}, folder, now, now + timedelta(days=3650))
                self._spaces[(sid, user)] = space
            return space

    def _storage_job(self, sid: str, user: str) -> _Job:
        if sid in self._storage_names:
            return self._named_storage(sid, user)
        if not sid.endswith("-uspace"):
            raise ApiError(404, f"Storage {sid} not found")
        with self._lock:
            job = self._jobs.get(sid.removesuffix("-uspace"))
            if job is None:
                raise ApiError(404, f"Storage {sid} not found")
            if job.user != user:
                raise ApiError(403, "Access denied")
            return job

    async def _storages_list(self, request: Request, user: str) -> Response:
        # verified (pyunicore docs): job directories are only listed with filter=all
        urls = [f"{self.base_url}/storages/{name}" for name in sorted(self._storage_names)]
        if request.query_params.get("filter") == "all":
            with self._lock:
                urls += [self.storage_url(j.id) for j in self._jobs.values() if j.user == user]
        return JSONResponse({"storages": urls, "_links": {"self": {"href": str(request.url)}}})

    async def _storage_get(self, request: Request, user: str) -> Response:
        sid = request.path_params["sid"]
        job = self._storage_job(sid, user)
        url = f"{self.base_url}/storages/{sid}"
        return JSONResponse(
            {
                "resourceStatus": "READY",
                "mountPoint": str(job.workdir),
                "description": sid if sid in self._storage_names else "Job's workspace",
                "protocols": ["BFT"],
                "metadataSupported": False,
                "owner": _dn(user),
                "acl": [],
                "tags": [],
                "currentTime": unicore_date(_now()),
                "terminationTime": unicore_date(job.termination),
                "_links": {
                    "self": {"href": url},
                    "files": {"href": f"{url}/files"},
                    "action:copy": {"href": f"{url}/actions/copy"},
                    "action:rename": {"href": f"{url}/actions/rename"},
                },
            }
        )

    def _resolve(self, job: _Job, path: str) -> tuple[Path, str]:
        """The file for ``path`` inside the job's directory; refuse anything outside it."""
        relative = path.strip("/")
        root = job.workdir.resolve()
        if any(part == ".." for part in relative.split("/")):
            raise ApiError(403, f"Access denied: {path!r} leaves the storage")
        target = (root / relative).resolve() if relative else root
        if target != root and root not in target.parents:
            raise ApiError(403, f"Access denied: {path!r} leaves the storage")
        return target, "/" + relative

    def _file_properties(self, job: _Job, target: Path, shown: str) -> dict[str, Any]:
        info = target.stat()
        mode = info.st_mode
        perms = "".join(
            letter if mode & bit else "-"
            for letter, bit in (("r", 0o400), ("w", 0o200), ("x", 0o100))
        )
        props: dict[str, Any] = {
            "path": shown,
            "isDirectory": target.is_dir(),
            "size": 0 if target.is_dir() else info.st_size,
            "lastAccessed": unicore_date(datetime.fromtimestamp(info.st_mtime)),
            "permissions": perms,
            "metadata": {},
        }
        return props

    async def _files(self, request: Request, user: str) -> Response:
        sid = request.path_params["sid"]
        job = self._storage_job(sid, user)
        target, shown = self._resolve(job, request.path_params.get("path", ""))
        method = request.method
        if method == "GET":
            return await self._file_get(request, job, target, shown)
        if method == "PUT":
            return await self._file_put(request, target, shown)
        if method == "POST":  # verified (REST docs): POST {} creates a directory
            target.mkdir(parents=True, exist_ok=True)
            return Response(status_code=201, headers={"Location": str(request.url)})
        # DELETE
        if target == job.workdir.resolve():
            raise ApiError(403, "The storage root cannot be deleted")
        if not target.exists():
            raise ApiError(404, f"File {shown} not found")
        if target.is_dir() and not target.is_symlink():
            await run_in_threadpool(shutil.rmtree, target)
        else:
            target.unlink()
        return Response(status_code=204)

    async def _file_get(self, request: Request, job: _Job, target: Path, shown: str) -> Response:
        if not target.exists():
            raise ApiError(404, f"File {shown} not found")
        accept = request.headers.get("Accept", "")
        if target.is_dir():
            # Content keys are full paths from the storage root, as pyunicore's listdir expects
            props = self._file_properties(job, target, shown)
            content = {}
            for child in sorted(target.iterdir()):
                child_shown = f"{shown.rstrip('/')}/{child.name}"
                try:
                    content[child_shown] = self._file_properties(job, child, child_shown)
                except OSError:  # e.g. a dangling symlink
                    continue
            props["content"] = content
            props["children"] = list(content)
            return JSONResponse(props)
        if "application/json" in accept:
            return JSONResponse(self._file_properties(job, target, shown))
        return _file_download(target, request.headers.get("Range"))

    async def _file_put(self, request: Request, target: Path, shown: str) -> Response:
        content_type = request.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
            # verified (REST docs): JSON PUT modifies properties; none are modifiable here
            try:
                wanted = json.loads(await request.body())
            except ValueError as exc:
                raise ApiError(400, f"Invalid JSON: {exc}") from exc
            keys = wanted if isinstance(wanted, dict) else {}
            return JSONResponse({k: "Property not found or cannot be modified!" for k in keys})
        if target.is_dir():
            raise ApiError(409, f"{shown} is a directory")
        target.parent.mkdir(parents=True, exist_ok=True)  # verified: parents are created
        partial = target.with_name(f".{target.name}.upload-{uuid.uuid4().hex[:8]}")
        try:
            with partial.open("wb") as handle:
                async for chunk in request.stream():
                    handle.write(chunk)
            partial.replace(target)
        except ClientDisconnect:  # the client gave up mid-upload; nothing is stored
            return Response(status_code=400)
        finally:
            partial.unlink(missing_ok=True)
        return Response(status_code=204)

    async def _storage_action(self, request: Request, user: str) -> Response:
        sid = request.path_params["sid"]
        job = self._storage_job(sid, user)
        action = request.path_params["action"]
        try:
            body = json.loads(await request.body() or b"{}")
            source, _ = self._resolve(job, str(body["from"]))
            dest, _ = self._resolve(job, str(body["to"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(400, 'Expected {"from": ..., "to": ...}') from exc
        if not source.exists():
            raise ApiError(404, f"File {body['from']} not found")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if action == "rename":
            source.rename(dest)
        elif action == "copy":
            if source.is_dir():
                shutil.copytree(source, dest)
            else:
                shutil.copy2(source, dest)
        else:
            raise ApiError(404, f"No such action: {action}")
        return Response(status_code=204)

    # -- the TSI: submitting and following jobs -----------------------------------------------

    def _work(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                self._cycle()
            except Exception as exc:  # keep the thread alive; tests check .errors
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def _cycle(self) -> None:
        with self._lock:
            starting = [j for j in self._jobs.values() if j.phase == "starting"]
        for job in starting:
            self._launch(job)
        self._poll()

    def _job_env(self) -> dict[str, str]:
        if self.job_environment is not None:
            return dict(self.job_environment)
        env = {
            k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "USER", "LOGNAME")
        }
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        return env

    def _launch(self, job: _Job) -> None:
        """Stage in, run a login-node pre-command, and sbatch the script (the TSI's part)."""
        plan = job.plan
        assert plan is not None
        try:
            self._stage_in(job)
        except JobDescriptionError as exc:
            self._finish_if_current(job, "starting", "FAILED", f"Staging in failed. Reason: {exc}")
            return
        if plan.precommand_on_login_node:
            code, output = _shell(plan.precommand_on_login_node, job.workdir, self._job_env())
            with self._lock:
                job.add_log(f"Pre-command exited with {code}. Output: {output[-2000:]}")
            if code != 0 and not plan.ignore_precommand_exit_code:
                # verified wording (xnjs JobProcessor): "Pre-command(s) failed: ..."
                message = f"Pre-command(s) failed: [exit code {code}]"
                self._finish_if_current(job, "starting", "FAILED", message)
                return
        if plan.script is None:
            # verified (xnjs JobProcessor): no executable → nothing to run, job is DONE
            self._finish_if_current(job, "starting", "SUCCESSFUL", "")
            return
        script_path = job.workdir / f"UNICORE_Job_{int(time.time() * 1000)}"
        script_path.write_text(plan.script)
        result = _run(
            ["sbatch", "--parsable", str(script_path)], cwd=job.workdir, env=self._job_env()
        )
        bss_id = result.stdout.strip().split(";")[0]
        cancel: str | None = None
        with self._lock:
            job.script_path = script_path
            if result.returncode != 0 or not bss_id.isdigit():
                error = (result.stderr or result.stdout).strip() or f"exit {result.returncode}"
                # verified wording (xnjs JobProcessor): "Could not submit job: <reason>"
                if job.phase == "starting":
                    job.finish("FAILED", f"Could not submit job: {error}")
                return
            if job.phase != "starting":  # aborted or deleted while sbatch ran
                cancel = bss_id
            else:
                job.bss_id = bss_id
                job.phase = "submitted"
                job.status = "QUEUED"
                resources = job.description.get("Resources") or {}
                job.queue = str(resources["Queue"]) if resources.get("Queue") else None
                job.add_log(f"Submitted to the batch system with ID {bss_id}.")
        if cancel is not None:
            _run(["scancel", cancel])

    def _finish_if_current(self, job: _Job, phase: str, status: str, message: str) -> None:
        with self._lock:
            if job.phase == phase:
                job.finish(status, message)

    def _stage_in(self, job: _Job) -> None:
        """``Imports``: inline data, ``file://`` copies and ``link:`` symlinks (docs)."""
        imports = job.description.get("Imports") or []
        if not isinstance(imports, list):
            raise JobDescriptionError("Imports must be a list")
        for entry in imports:
            if not isinstance(entry, Mapping) or "To" not in entry:
                raise JobDescriptionError(f"Invalid import {entry!r}")
            try:
                self._import_one(job, entry)
            except (OSError, JobDescriptionError, ApiError) as exc:
                if _flag(entry.get("FailOnError"), default=True):
                    raise JobDescriptionError(f"{entry.get('From')!r}: {exc}") from exc
                with self._lock:
                    job.add_log(f"Ignoring failed import of {entry.get('From')!r}: {exc}")

    def _import_one(self, job: _Job, entry: Mapping[str, Any]) -> None:
        source = str(entry.get("From", ""))
        target, _ = self._resolve(job, str(entry["To"]))
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.startswith("inline:") or "Data" in entry:
            target.write_text(str(entry.get("Data", "")))
        elif source.startswith("link:"):
            target.symlink_to(source.removeprefix("link:"))
        elif source.startswith("file://") or source.startswith("/"):
            path = Path(source.removeprefix("file://"))
            if path.is_dir():
                shutil.copytree(path, target)
            else:
                shutil.copy2(path, target)
        else:
            raise JobDescriptionError("this protocol is not supported by the test gateway")

    def _poll(self) -> None:
        with self._lock:
            active = {j.bss_id: j for j in self._jobs.values() if j.phase == "submitted"}
        if not active:
            return
        # One squeue for all jobs per cycle; --states=all keeps ended jobs (MinJobAge).
        result = _run(["squeue", "--states=all", "--noheader", "--format=%i|%T|%P|%r"])
        if result.returncode != 0:
            self.errors.append(f"squeue failed: {result.stderr.strip()}")
            return
        listed: dict[str, tuple[str, str, str]] = {}
        for line in result.stdout.splitlines():
            parts = line.strip().split("|", 3)
            if len(parts) == 4:
                listed[parts[0]] = (parts[1], parts[2], parts[3])
        for bss_id, job in active.items():
            state, partition, reason = listed.get(str(bss_id), ("", "", ""))
            if state in _WAITING:
                with self._lock:
                    if job.phase == "submitted":
                        if job.status != _WAITING[state]:
                            job.add_log(f"Batch system state {state}.")
                        job.status = _WAITING[state]
                        job.queue = partition or job.queue
                continue
            self._complete(job, state or None, reason)

    def _complete(self, job: _Job, state: str | None, reason: str) -> None:
        """The batch job ended (``state`` None: SLURM no longer lists it)."""
        plan = job.plan
        assert plan is not None
        code = _read_int(job.workdir / EXIT_CODE_FILE)
        pre_code = _read_int(job.workdir / _PRE_EXIT_CODE_FILE)
        status, message = "SUCCESSFUL", ""
        if state not in (None, "COMPLETED", "FAILED") or (state == "FAILED" and code is None):
            # assumed: the TSI maps CANCELLED/FAILED to COMPLETED and TIMEOUT/NODE_FAIL to
            # UNKNOWN (verified); what XNJS then reports is not verified -- we name the state.
            why = f" ({reason})" if reason and reason != "None" else ""
            status, message = "FAILED", f"Batch job {job.bss_id} ended in SLURM state {state}{why}"
        elif pre_code is not None and not plan.ignore_precommand_exit_code:
            status, message = "FAILED", f"Pre-command(s) failed: [exit code {pre_code}]"
        elif code is not None and code != 0 and not plan.ignore_exit_code:
            # verified wording (xnjs JobProcessor.checkMainExecutionSuccess)
            status, message = "FAILED", f"User application exited with non-zero exit code: <{code}>"
        # verified (xnjs): no exit code at all counts as success (exitCode stays absent)
        if status == "SUCCESSFUL" and plan.postcommand_on_login_node:
            post_code, output = _shell(plan.postcommand_on_login_node, job.workdir, self._job_env())
            with self._lock:
                job.add_log(f"Post-command exited with {post_code}. Output: {output[-2000:]}")
            if post_code != 0 and not plan.ignore_postcommand_exit_code:
                status, message = "FAILED", f"Post-command(s) failed: [exit code {post_code}]"
        with self._lock:
            if job.phase == "submitted":
                job.exit_code = code
                job.finish(status, message)


class _Recorder:
    """ASGI middleware: note every request (method, path) and the status answered."""

    def __init__(self, app: ASGIApp, gateway: UnicoreGateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        scheme = headers.get("authorization", "").partition(" ")[0].lower() or None
        exchange = Exchange(
            method=scope["method"],
            path=scope["path"],
            had_session=SESSION_HEADER.lower() in headers,
            authorization=scheme,
        )
        self.gateway.requests.append((exchange.method, exchange.path))
        self.gateway.exchanges.append(exchange)

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
            await send(message)

        await self.app(scope, receive, send_and_note)


# --- helpers --------------------------------------------------------------------------------


def _dn(user: str) -> str:
    return f"CN={user},O=mantik test gateway,C=EU"


def _run(
    argv: list[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=30, cwd=cwd, env=env, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(argv, 255, "", f"{argv[0]}: {exc}")


def _shell(command: str, cwd: Path, env: Mapping[str, str]) -> tuple[int, str]:
    """Run a user pre/post-command "on the login node" (here: locally, in the job dir)."""
    try:
        result = subprocess.run(
            ["/bin/bash", "-c", command],
            cwd=cwd,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return 124, "timed out after 120 s"
    return result.returncode, (result.stdout + result.stderr).strip()


def _self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate and key for 127.0.0.1/localhost (valid for one day)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unicore-test-gateway")])
    now = datetime.now().astimezone()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _slurm_partitions() -> list[str]:
    result = _run(["sinfo", "-h", "-o", "%R"])
    if result.returncode != 0:
        return []
    return sorted({line.strip() for line in result.stdout.splitlines() if line.strip()})


_CHUNK = 64 * 1024


def _file_download(path: Path, range_header: str | None) -> Response:
    """Bytes of ``path``, honouring a single ``Range: bytes=a-b`` (206) as UNICORE does."""
    size = path.stat().st_size
    start, end, status = 0, size - 1, 200
    if range_header:
        spec = range_header.strip()
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", spec)
        if match and (match.group(1) or match.group(2)):
            first, last = match.group(1), match.group(2)
            if first:
                start = int(first)
                end = min(int(last), size - 1) if last else size - 1
            else:  # suffix: the last N bytes
                start = max(0, size - int(last))
            if start >= size or start > end:
                return Response(
                    status_code=416,
                    headers={"Content-Range": f"bytes */{size}"},
                )
            status = 206
    length = max(0, end - start + 1)
    headers = {"Content-Length": str(length), "Accept-Ranges": "bytes"}
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"

    async def chunks() -> AsyncIterator[bytes]:
        remaining = length
        with path.open("rb") as handle:
            handle.seek(start)
            while remaining > 0:
                data = handle.read(min(_CHUNK, remaining))
                if not data:
                    break
                remaining -= len(data)
                yield data
                await asyncio.sleep(0)

    return StreamingResponse(
        chunks(), status_code=status, headers=headers, media_type="application/octet-stream"
    )
