"""The UNICORE test gateway, driven by pyunicore 2.0.2 itself (the client the driver uses).

Tests marked ``slurm`` run real jobs on the single-node SLURM (scripts/slurm.sh); the others
only need the HTTP side (jobs that wait for the client's start never reach SLURM).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import h11
import httpx
import pytest
from pyunicore.client import Client, Job, JobStatus, Storage, Transport
from pyunicore.credentials import AuthenticationFailedException, BearerToken, UsernamePassword

from tests.support.services import require_slurm
from tests.support.unicore_gateway import (
    ABORT_MESSAGE,
    EXIT_CODE_FILE,
    JobDescriptionError,
    UnicoreGateway,
    parse_memory,
    parse_runtime,
    plan_job,
    sbatch_directives,
)

USERS = {"alice": "pw-alice", "bob": "pw-bob"}
TOKENS = {"token-of-bob": "bob"}
DONE = (JobStatus.SUCCESSFUL, JobStatus.FAILED)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[UnicoreGateway]:
    with UnicoreGateway(
        users=USERS, work_root=tmp_path / "uspace", poll_interval=0.1, tokens=TOKENS
    ) as gw:
        yield gw
    assert gw.errors == []


def connect(gateway: UnicoreGateway, user: str = "alice", password: str | None = None) -> Client:
    credential = UsernamePassword(user, USERS[user] if password is None else password)
    return Client(Transport(credential, verify=False), gateway.base_url)


@pytest.fixture
def client(gateway: UnicoreGateway) -> Client:
    return connect(gateway)


def fresh(job: Job) -> Job:
    """The same job without pyunicore's 5 s property cache."""
    return Job(job.transport, job.resource_url, cache_time=0)


def wait_status(job: Job, statuses: Iterable[JobStatus] = DONE, timeout: float = 30) -> Job:
    """Poll like a driver would, but every 0.1 s instead of pyunicore's ≥ 6 s ``poll()``."""
    live = fresh(job)
    wanted = set(statuses)
    deadline = time.monotonic() + timeout
    while live.status not in wanted:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{job.job_id} is still {live.status}")
        time.sleep(0.1)
    return live


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def squeue_state(bss_id: str) -> str:
    out = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--format=%T", f"--jobs={bss_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


# --- units and job descriptions (no SLURM) ------------------------------------------------


def test_runtime_and_memory_units() -> None:
    assert [parse_runtime(v) for v in ("90", "30s", "10min", "10m", "12h", "2d", 600)] == [
        90,
        30,
        600,
        600,
        43200,
        172800,
        600,
    ]
    for bad in ("2.5h", "1:30:00", "12H", "ten", ""):
        with pytest.raises(JobDescriptionError, match="Runtime"):
            parse_runtime(bad)
    assert parse_memory("12G") == 12 * 1024**3
    assert parse_memory("512M") == 512 * 1024**2
    assert parse_memory(1024) == 1024
    for bad in ("12GiB", "12GB", "12g", "1.5G"):
        with pytest.raises(JobDescriptionError, match="Memory"):
            parse_memory(bad)


def test_sbatch_directives_follow_the_tsi(tmp_path: Path) -> None:
    description = {
        "Name": "train",
        "Project": "proj1",
        "Stdout": "out.txt",
        "Resources": {
            "Queue": "batch",
            "Runtime": "90s",
            "Memory": "2G",
            "TotalCPUs": "4",
            "Reservation": "res1",
            "NodeConstraints": "gpu",
            "QoS": "normal",
        },
    }
    assert sbatch_directives(description, tmp_path) == [
        "--job-name=train",
        "--partition=batch",
        "--account=proj1",
        "--ntasks=4",
        "--constraint=gpu",
        "--qos=normal",
        "--mem=2048",
        "--time=1",
        "--reservation=res1",
        f"--output={tmp_path}/out.txt",
        f"--error={tmp_path}/stderr",
        f"--chdir={tmp_path}",
    ]
    # With a node count the TSI writes --nodes/--ntasks-per-node and drops the total
    nodes = sbatch_directives(
        {"Resources": {"Nodes": 2, "CPUsPerNode": 8, "TotalCPUs": 16}}, tmp_path
    )
    assert nodes[:3] == ["--job-name=UNICORE_job", "--nodes=2", "--ntasks-per-node=8"]
    assert not any(d.startswith("--ntasks=") for d in nodes)
    # Names with characters outside the TSI's set become UNICORE_job
    assert sbatch_directives({"Name": "my-run_1"}, tmp_path)[0] == "--job-name=UNICORE_job"


@pytest.mark.parametrize(
    ("description", "message"),
    [
        ({"Resources": {"CPUs": 2}}, "Resource CPUs is not available"),
        ({"Resources": {"Memory": "12GiB"}}, "Resource Memory has an invalid value: 12GiB"),
        ({"Resources": {"Runtime": "1:30:00"}}, "Resource Runtime has an invalid value"),
        ({"Resources": {"Queue": "a b"}}, "Resource Queue has an invalid value"),
        ({"Environment": ["NOEQUALS"]}, "Invalid environment setting"),
        ({"Environment": {"1BAD": "x"}}, "Invalid environment variable name"),
        ({"Stdout": "../out"}, "Stdout must be a plain file name"),
        ({"Job type": "on_login_node"}, "not supported by the test gateway"),
    ],
)
def test_invalid_descriptions(tmp_path: Path, description: dict[str, object], message: str) -> None:
    with pytest.raises(JobDescriptionError, match=message.replace("(", r"\(")):
        plan_job({"Executable": "/bin/true", **description}, tmp_path)


def test_script_exports_environment_and_records_the_exit_code(tmp_path: Path) -> None:
    plan = plan_job(
        {
            "Executable": "python3 train.py",
            "Arguments": ["--alpha", "0.5"],
            "Environment": ["GREETING=hello world", "PATH=/opt/bin:$PATH"],
            "Parameters": {"EPOCHS": "3"},
        },
        tmp_path,
    )
    assert plan.script is not None
    assert 'export GREETING="hello world"' in plan.script
    assert 'export PATH="/opt/bin:$PATH"' in plan.script
    assert 'export EPOCHS="3"' in plan.script
    assert "( python3 train.py --alpha 0.5\n)" in plan.script
    assert plan.script.rstrip().endswith(f"echo $? > {EXIT_CODE_FILE}")


# --- HTTP side (no SLURM) ----------------------------------------------------------------


def test_base_resource_roles_and_sessions(gateway: UnicoreGateway, client: Client) -> None:
    info = client.access_info()
    assert info["role"] == {"selected": "user", "availableRoles": ["user"]}
    assert info["xlogin"]["UID"] == "alice"
    assert client.server_version_info() == (10, 1, 1)
    props = client.properties
    assert props["server"]["jobSubmission"] == {"enabled": True}
    assert props["_links"]["jobs"]["href"] == f"{gateway.base_url}/jobs"
    assert props["_links"]["storages"]["href"] == f"{gateway.base_url}/storages"

    anonymous = httpx.get(gateway.base_url, headers={"Accept": "application/json"})
    assert anonymous.json()["client"]["role"]["selected"] == "anonymous"
    assert "X-UNICORE-SecuritySession" not in anonymous.headers
    assert httpx.get(f"{gateway.base_url}/jobs").status_code == 403

    # The session id is returned and accepted instead of credentials
    first = httpx.get(gateway.base_url, auth=("alice", USERS["alice"]))
    session = first.headers["X-UNICORE-SecuritySession"]
    assert int(first.headers["X-UNICORE-SecuritySession-Lifetime"]) > 0
    again = httpx.get(gateway.base_url, headers={"X-UNICORE-SecuritySession": session})
    assert again.json()["client"]["xlogin"]["UID"] == "alice"
    assert again.headers["X-UNICORE-SecuritySession"] == session

    bearer = Client(Transport(BearerToken("token-of-bob"), verify=False), gateway.base_url)
    assert bearer.access_info()["xlogin"]["UID"] == "bob"


def test_wrong_password_and_unknown_user_are_refused(gateway: UnicoreGateway) -> None:
    with pytest.raises(httpx.HTTPError, match=r"^403 Server Error: Authentication failed"):
        connect(gateway, password="wrong")
    response = httpx.get(gateway.base_url, auth=("mallory", "x"))
    assert response.status_code == 403
    assert response.json() == {
        "errorMessage": "Authentication failed: invalid credentials",
        "status": 403,
    }
    # pyunicore refuses an anonymous-looking site by itself
    with pytest.raises(httpx.HTTPError, match="403"):
        Client(Transport(BearerToken("nope"), verify=False), gateway.base_url)
    with pytest.raises(AuthenticationFailedException):
        Client(Transport(_NoCredential(), verify=False), gateway.base_url)


class _NoCredential(UsernamePassword):  # type: ignore[misc]
    """A credential that sends nothing (pyunicore's Anonymous skips the role check)."""

    def __init__(self) -> None:
        super().__init__("", "")

    def get_auth_header(self) -> None:
        return None


def test_tls_with_the_gateway_certificate(tmp_path: Path) -> None:
    credential = UsernamePassword("alice", USERS["alice"])
    with UnicoreGateway(users=USERS, work_root=tmp_path / "tls", tls=True) as gateway:
        assert gateway.base_url.startswith("https://127.0.0.1:")
        trusted = Client(Transport(credential, verify=gateway.ssl_context()), gateway.base_url)
        assert trusted.access_info()["xlogin"]["UID"] == "alice"
        job = trusted.new_job(
            {"Executable": "/bin/true", "haveClientStageIn": "true"}, autostart=False
        )
        assert fresh(job).properties["status"] == "READY"
        # pyunicore does not verify by default (notes); with verify=True it refuses
        assert Client(Transport(credential), gateway.base_url).access_info()["xlogin"]
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            Client(Transport(credential, verify=True), gateway.base_url)


def test_submission_disabled_answers_503(gateway: UnicoreGateway, client: Client) -> None:
    gateway.submission_enabled = False
    assert fresh_client(client).properties["server"]["jobSubmission"]["enabled"] is False
    with pytest.raises(httpx.HTTPError, match=r"^503 .*disabled"):
        client.new_job({"Executable": "/bin/true"})
    assert gateway.jobs == {}


def fresh_client(client: Client) -> Client:
    return Client(client.transport, client.resource_url, cache_time=0)


def test_stage_in_job_waits_for_start_and_unknown_ids_are_404(
    gateway: UnicoreGateway, client: Client, tmp_path: Path
) -> None:
    desc = {"Executable": "/bin/true", "haveClientStageIn": "true", "Tags": ["t1"]}
    job = client.new_job(desc, autostart=False)
    props = fresh(job).properties
    assert props["status"] == "READY"
    assert props["batchSystemID"] == "N/A" and props["queue"] == "N/A" and props["name"] == "N/A"
    assert "exitCode" not in props
    assert props["owner"] == client.access_info()["dn"]
    assert props["tags"] == ["t1"]
    assert props["_links"]["workingDirectory"]["href"] == gateway.storage_url(job.job_id)
    for key in ("submissionTime", "terminationTime"):
        time.strptime(props[key], "%Y-%m-%dT%H:%M:%S%z")
    assert [j.job_id for j in client.get_jobs()] == [job.job_id]
    assert [j.job_id for j in client.get_jobs(tags=["t1"])] == [job.job_id]
    assert client.get_jobs(tags=["other"]) == []

    storage = job.working_dir
    assert storage.properties["resourceStatus"] == "READY"
    assert storage.properties["mountPoint"] == str(gateway.job(job.job_id).workdir)

    auth = ("alice", USERS["alice"])
    for url in (
        f"{gateway.base_url}/jobs/no-such-job",
        f"{gateway.base_url}/storages/no-such-job-uspace",
        f"{gateway.base_url}/storages/no-such-job-uspace/files/stdout",
        f"{gateway.base_url}/nothing-here",
    ):
        response = httpx.get(url, auth=auth)
        assert response.status_code == 404, url
        assert response.json()["status"] == 404 and response.json()["errorMessage"]
    # bob cannot see alice's job
    bob = httpx.get(gateway.job_url(job.job_id), auth=("bob", USERS["bob"]))
    assert bob.status_code == 403
    assert connect(gateway, "bob").get_jobs() == []

    # DELETE removes the job and its working directory
    workdir = gateway.job(job.job_id).workdir
    job.delete()
    assert not workdir.exists()
    assert httpx.get(gateway.job_url(job.job_id), auth=auth).status_code == 404


def test_files_upload_listing_ranges_and_traversal(
    gateway: UnicoreGateway, client: Client, tmp_path: Path
) -> None:
    job = client.new_job({"Executable": "/bin/true", "haveClientStageIn": "true"}, autostart=False)
    storage = job.working_dir
    storage.put(b"0123456789", "data/digits.txt")  # parents are created
    workdir = gateway.job(job.job_id).workdir
    assert (workdir / "data" / "digits.txt").read_bytes() == b"0123456789"

    listing = storage.listdir()
    assert set(listing) == {"data"} and listing["data"].isdir()
    props = storage.contents("data")
    assert props["isDirectory"] is True
    assert props["content"]["/data/digits.txt"]["size"] == 10
    stat = storage.stat("data/digits.txt")
    assert stat.isfile() and stat.size() == 10
    assert stat.read() == b"0123456789"
    assert stat.read(offset=3, size=4) == b"3456"
    assert stat.read(offset=7) == b"789"
    with stat.raw(offset=2, size=2) as response:
        assert response.status_code == 206
        assert response.headers["Content-Range"] == "bytes 2-3/10"

    auth = ("alice", USERS["alice"])
    files = f"{storage.resource_url}/files"
    unsatisfiable = httpx.get(f"{files}/data/digits.txt", auth=auth, headers={"Range": "bytes=20-"})
    assert unsatisfiable.status_code == 416
    # Traversal, percent-encoded so that the client does not normalise it away
    (tmp_path / "secret").write_text("secret")
    for path in ("%2e%2e/%2e%2e/secret", "data/%2e%2e/%2e%2e/x"):
        for method in ("GET", "PUT"):
            response = httpx.request(method, f"{files}/{path}", auth=auth, content=b"x")
            assert response.status_code == 403, (method, path)
    (workdir / "escape").symlink_to(tmp_path)
    response = httpx.get(f"{files}/escape/secret", auth=auth)
    assert response.status_code == 403
    assert not (tmp_path / "uspace" / "x").exists()

    # mkdir, rename, rm through pyunicore
    storage.mkdir("out")
    storage.rename("data/digits.txt", "out/d.txt")
    assert (workdir / "out" / "d.txt").exists()
    storage.rm("out/d.txt")
    assert not (workdir / "out" / "d.txt").exists()


def test_expired_session_is_432_and_pyunicore_retries(
    gateway: UnicoreGateway, client: Client, tmp_path: Path
) -> None:
    job = client.new_job({"Executable": "/bin/true", "haveClientStageIn": "true"}, autostart=False)
    live = fresh(job)
    storage = Storage(live.transport, gateway.storage_url(job.job_id), cache_time=0)
    assert live.properties["status"] == "READY"
    assert storage.properties["resourceStatus"] == "READY"
    gateway.expire_sessions()

    # A GET is retried once without the session header and succeeds with the credentials
    seen = len(gateway.exchanges)
    assert live.properties["status"] == "READY"
    tail = [(e.method, e.status, e.had_session) for e in gateway.exchanges[seen:]]
    assert tail == [("GET", 432, True), ("GET", 200, False)]

    # An upload is retried with an already consumed file: pyunicore fails client-side, with
    # h11's own error, not an httpx one (notes: upload without security sessions)
    gateway.expire_sessions()
    with pytest.raises(h11.LocalProtocolError, match="Too little data for declared Content-Length"):
        storage.upload(write(tmp_path, "input.txt", "some input\n"))
    unsessioned = Transport(UsernamePassword("alice", USERS["alice"]), use_security_sessions=False)
    Storage(unsessioned, gateway.storage_url(job.job_id)).upload(str(tmp_path / "input.txt"))
    assert (gateway.job(job.job_id).workdir / "input.txt").read_text() == "some input\n"


def test_resource_errors_fail_after_the_201(gateway: UnicoreGateway, client: Client) -> None:
    for resources, message in (
        ({"CPUs": 2}, "Resource CPUs is not available"),
        ({"Memory": "12GiB"}, "Resource Memory has an invalid value: 12GiB"),
        ({"Memory": "12GB"}, "Resource Memory has an invalid value: 12GB"),
        ({"Runtime": "2.5h"}, "Resource Runtime has an invalid value: 2.5h"),
    ):
        job = client.new_job({"Executable": "/bin/true", "Resources": resources})
        assert gateway.requests[-1][0] == "POST"  # pyunicore still posted action:start
        live = wait_status(job, timeout=5)
        assert live.status == JobStatus.FAILED
        assert live.properties["statusMessage"] == message
        assert live.exit_code is None and live.properties["batchSystemID"] == "N/A"


# --- real jobs on SLURM -------------------------------------------------------------------


@pytest.mark.slurm
def test_job_with_uploaded_script_runs_on_slurm(
    gateway: UnicoreGateway, client: Client, tmp_path: Path
) -> None:
    require_slurm()
    script = write(tmp_path, "job.sh", 'echo "hello $GREETING from $1"; echo warn >&2\n')
    job = client.new_job(
        {
            "Name": "gatewaytest",
            "Executable": "bash",
            "Arguments": ["job.sh", "slurm"],
            "Environment": {"GREETING": "big world"},
            "Resources": {"Queue": "batch", "Runtime": "5m", "Memory": "12G", "TotalCPUs": 1},
        },
        inputs=[script],
    )
    # pyunicore's exact request sequence (notes, "What pyunicore 2.0.2 sends")
    base = "/DEMO-SITE/rest/core"
    assert gateway.requests[:6] == [
        ("GET", base),
        ("POST", f"{base}/jobs"),
        ("GET", f"{base}/jobs/{job.job_id}"),
        ("GET", f"{base}/storages/{job.job_id}-uspace"),
        ("PUT", f"{base}/storages/{job.job_id}-uspace/files/job.sh"),
        ("POST", f"{base}/jobs/{job.job_id}/actions/start"),
    ]
    live = wait_status(job)
    props = live.properties
    assert (props["status"], props["statusMessage"], props["exitCode"]) == ("SUCCESSFUL", "", "0")
    assert live.exit_code == 0  # a string "0" (an integer 0 would read as None; notes)
    assert props["name"] == "gatewaytest" and props["queue"] == "batch"
    view = gateway.job(job.job_id)
    assert view.bss_id is not None and view.bss_id.isdigit()
    assert props["batchSystemID"] == view.bss_id
    assert "--mem=12288" in view.directives and "--partition=batch" in view.directives
    assert "--time=5" in view.directives and "--ntasks=1" in view.directives
    assert squeue_state(view.bss_id) == "COMPLETED"

    storage = live.working_dir
    stdout = storage.stat("stdout")
    assert stdout.read() == b"hello big world from slurm\n"
    assert stdout.read(offset=6, size=3) == b"big"
    assert storage.stat("stderr").read() == b"warn\n"
    assert {"stdout", "stderr", "job.sh", EXIT_CODE_FILE} <= set(storage.listdir())


@pytest.mark.slurm
def test_failing_job_reports_its_exit_code(gateway: UnicoreGateway, client: Client) -> None:
    require_slurm()
    failing = client.new_job({"Executable": "echo broken >&2; exit 3"})
    ignored = client.new_job({"Executable": "exit 3", "IgnoreNonZeroExitCode": "true"})
    live = wait_status(failing)
    assert live.status == JobStatus.FAILED
    assert live.properties["exitCode"] == "3" and live.exit_code == 3
    assert live.properties["statusMessage"] == (
        "User application exited with non-zero exit code: <3>"
    )
    assert live.working_dir.stat("stderr").read() == b"broken\n"
    other = wait_status(ignored)
    assert other.status == JobStatus.SUCCESSFUL and other.properties["exitCode"] == "3"

    first_id = live.properties["batchSystemID"]
    live.restart()  # runs the same job again, as a new batch job
    again = wait_status(live)
    assert again.status == JobStatus.FAILED and again.properties["exitCode"] == "3"
    assert again.properties["batchSystemID"] not in ("N/A", first_id)


@pytest.mark.slurm
def test_abort_cancels_the_slurm_job(gateway: UnicoreGateway, client: Client) -> None:
    require_slurm()
    job = client.new_job({"Executable": "sleep 60", "Resources": {"Runtime": "2m"}})
    live = wait_status(job, [JobStatus.RUNNING], timeout=20)
    bss_id = live.properties["batchSystemID"]
    assert squeue_state(bss_id) == "RUNNING"
    live.abort()
    props = live.properties
    assert (props["status"], props["statusMessage"]) == ("FAILED", ABORT_MESSAGE)
    assert "exitCode" not in props
    deadline = time.monotonic() + 10
    while squeue_state(bss_id) != "CANCELLED":
        assert time.monotonic() < deadline, squeue_state(bss_id)
        time.sleep(0.1)
    live.abort()  # aborting a finished job changes nothing
    assert fresh(live).properties["statusMessage"] == ABORT_MESSAGE


@pytest.mark.slurm
def test_memory_units_on_slurm(gateway: UnicoreGateway, client: Client) -> None:
    require_slurm()
    good = client.new_job({"Executable": "/bin/true", "Resources": {"Memory": "12G"}})
    bad = client.new_job({"Executable": "/bin/true", "Resources": {"Memory": "12GiB"}})
    assert wait_status(good).status == JobStatus.SUCCESSFUL
    assert "--mem=12288" in gateway.job(good.job_id).directives
    refused = wait_status(bad)
    assert refused.status == JobStatus.FAILED
    assert "Memory" in refused.properties["statusMessage"]
    assert gateway.job(bad.job_id).bss_id is None  # never reached SLURM


@pytest.mark.slurm
def test_slurm_refusals_and_ends_are_failures(gateway: UnicoreGateway, client: Client) -> None:
    require_slurm()
    refused = client.new_job({"Executable": "/bin/true", "Resources": {"Queue": "nosuchqueue"}})
    cancelled = client.new_job({"Executable": "sleep 60"})
    live = wait_status(refused)
    message = live.properties["statusMessage"]
    assert live.status == JobStatus.FAILED
    assert message.startswith("Could not submit job: sbatch: error:") and "partition" in message
    # A job cancelled behind UNICORE's back fails with the SLURM state named
    running = wait_status(cancelled, [JobStatus.RUNNING], timeout=20)
    subprocess.run(["scancel", running.properties["batchSystemID"]], check=True)
    ended = wait_status(running)
    assert ended.status == JobStatus.FAILED
    assert "ended in SLURM state CANCELLED" in ended.properties["statusMessage"]


@pytest.mark.slurm
def test_pre_and_post_commands(gateway: UnicoreGateway, client: Client) -> None:
    require_slurm()
    ok = client.new_job(
        {
            "User precommand": "echo prepared > pre.txt",  # on the login node (default)
            "Imports": [{"From": "inline://x", "To": "data/in.txt", "Data": "inline data"}],
            "Executable": "cat pre.txt data/in.txt",
            "User postcommand": "cp stdout post.txt",
        }
    )
    in_script = client.new_job(
        {
            "User precommand": "false",
            "RunUserPrecommandOnLoginNode": "false",
            "Executable": "echo never",
        }
    )
    post_fails = client.new_job({"Executable": "/bin/true", "User postcommand": "exit 2"})
    done = wait_status(ok)
    assert done.status == JobStatus.SUCCESSFUL
    assert (gateway.job(ok.job_id).workdir / "post.txt").read_text() == "prepared\ninline data"
    pre = wait_status(in_script)
    assert (pre.status, pre.properties["statusMessage"]) == (
        JobStatus.FAILED,
        "Pre-command(s) failed: [exit code 1]",
    )
    assert pre.working_dir.stat("stdout").read() == b""
    post = wait_status(post_fails)
    assert (post.status, post.properties["statusMessage"]) == (
        JobStatus.FAILED,
        "Post-command(s) failed: [exit code 2]",
    )


@pytest.mark.slurm
def test_stop_cancels_leftover_jobs(tmp_path: Path) -> None:
    require_slurm()
    with UnicoreGateway(users=USERS, work_root=tmp_path / "g", poll_interval=0.1) as gateway:
        client = connect(gateway)
        job = client.new_job({"Executable": "sleep 120"})
        bss_id = wait_status(job, [JobStatus.RUNNING]).properties["batchSystemID"]
    assert gateway.errors == []
    deadline = time.monotonic() + 10
    while squeue_state(bss_id) != "CANCELLED":
        assert time.monotonic() < deadline
        time.sleep(0.1)
