"""`make demo`: start the platform with embedded defaults, run the demo project through
`ComputeBackendClient.submit_run`, print where to look. Ctrl-C stops the platform.

Set MANTIK_DEMO_EXIT=1 to stop the platform right after the run (for scripts and tests),
MANTIK_DEMO_PORT to choose the port (default: 5000, or a free one when 5000 is taken) and
MANTIK_DEMO_DATA_DIR the data folder (default: ./mantik-data).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from mantik.server.listening import cannot_listen

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MANTIK_DEMO_DATA_DIR", ROOT / "mantik-data"))
USER = "demo"


def free_port() -> int:
    """MANTIK_DEMO_PORT, or 5000, or (5000 being taken) a port nobody listens on.

    A busy port is never used: the server there would answer the health check and the
    demo would talk to another platform (health is not identity)."""
    chosen = os.environ.get("MANTIK_DEMO_PORT")
    if chosen is not None:
        if not chosen.isdigit() or not 0 < int(chosen) < 65536:
            sys.exit(f"MANTIK_DEMO_PORT={chosen!r} is not a port number (1-65535).")
        refusal = cannot_listen("127.0.0.1", int(chosen))
        if refusal is not None:
            sys.exit(f"The demo cannot use MANTIK_DEMO_PORT={chosen}: {refusal.split(':')[0]}; "
                     "set MANTIK_DEMO_PORT to a free port, or unset it to pick one.")
        return int(chosen)
    if cannot_listen("127.0.0.1", 5000) is None:
        return 5000
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    print(f"port 5000 is in use; the demo uses port {port} (set MANTIK_DEMO_PORT to choose)")
    return port


PORT = 5000
URL = ""


def mantik(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mantik.cli", *args, "--data-dir", str(DATA)],
        capture_output=True, text=True, check=True,
    )


def wait_until_up(process: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if process.poll() is not None:
            sys.exit(f"the platform stopped (is port {PORT} taken? set MANTIK_DEMO_PORT); "
                     f"see {DATA / 'platform.log'}")
        try:
            up = httpx.get(f"{URL}/api/mantik/health", timeout=1).status_code == 200
            # Ours refuses a taken port at once: alive after an answer, the answer was ours.
            if up and process.poll() is None:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit("the platform did not start within 60 s")


def demo_user() -> str:
    """(Re)create the demo account and replace its temporary password, as a user would."""
    temporary = f"Temp-{secrets.token_urlsafe(8)}-1!"
    listed = mantik("admin", "users", "list", "--json").stdout
    if f'"username": "{USER}"' in listed:
        mantik("admin", "users", "reset-password", USER, "--temporary-password", temporary)
    else:
        mantik("admin", "users", "create", USER, "--temporary-password", temporary)
    password = f"Demo-{secrets.token_urlsafe(8)}-9?"
    response = httpx.post(
        f"{URL}/api/mantik/password",
        json={"username": USER, "password": temporary, "new_password": password},
    )
    if response.status_code != 204:  # the account made in DATA is unknown there
        sys.exit(f"the platform at {URL} is not the demo's own (it answered "
                 f"{response.status_code} for the demo account); set MANTIK_DEMO_PORT to a "
                 "free port")
    return password


def main() -> None:
    global PORT, URL
    PORT = free_port()
    URL = f"http://127.0.0.1:{PORT}"
    DATA.mkdir(parents=True, exist_ok=True)
    log = (DATA / "platform.log").open("wb")
    # One person's platform: the demo's jobs run as the platform's own account, as root too.
    sites = DATA / "sites.yaml"
    own = {"run_as": "platform", "submitters": [USER]}
    sites.write_text(json.dumps({"sites": [
        {"name": "local", "driver": "local", **own},
        *([{"name": "slurm", "driver": "slurm", **own}] if shutil.which("sbatch") else []),
    ]}))
    process = subprocess.Popen(
        [sys.executable, "-m", "mantik.cli", "server", "start", "--data-dir", str(DATA),
         "--port", str(PORT)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MANTIK_SITES_FILE": str(sites)},
    )
    try:
        wait_until_up(process)
        password = demo_user()
        os.environ.update(
            MANTIK_USERNAME=USER, MANTIK_PASSWORD=password, MLFLOW_TRACKING_URI=URL
        )
        import mlflow

        import mantik as client_lib

        client_lib.init_tracking()
        experiment = mlflow.set_experiment("mantik-demo").experiment_id
        slurm = shutil.which("sinfo") is not None and subprocess.run(
            ["sinfo", "-h"], capture_output=True, timeout=10
        ).returncode == 0
        config = "compute-backend-config-slurm.json" if slurm else "compute-backend-config.json"
        compute = client_lib.ComputeBackendClient.from_env()
        submitted = compute.submit_run(
            experiment_id=experiment,
            mlflow_parameters={"alpha": 0.5, "l1_ratio": 0.1},
            mlproject_path=ROOT / "examples" / "demo-project",
            backend_config_path=config,
        )
        print(f"submitted run {submitted.run_id} to site {submitted.site!r} "
              f"(job {submitted.job_id}); waiting …")
        from rich.console import Console

        from mantik.cli._waiting import watching

        with watching(Console(highlight=False), show=True) as watch:
            info = compute.wait(submitted.run_id, timeout=600, interval=1, on_status=watch)
        run = mlflow.get_run(submitted.run_id)
        print(f"\nrun finished: {info.run_status}")
        for key, value in sorted(run.data.metrics.items()):
            print(f"  {key} = {value:.4f}")
        print(f"\nMLflow UI: {URL}/#/experiments/{experiment}/runs/{submitted.run_id}")
        print(f"sign in as {USER!r} with password {password!r} (valid until the next demo)")
        if info.run_status != "FINISHED":
            print(compute.get_logs(submitted.run_id))
            sys.exit(1)
        if os.environ.get("MANTIK_DEMO_EXIT") == "1":
            return
        print("\nThe platform keeps running; press Ctrl-C to stop it.")
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
