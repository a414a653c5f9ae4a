"""Files of a new project (`mantik project init NAME`): a working, tracked MLflow project."""

from __future__ import annotations

MLPROJECT = """\
name: {name}

# Without a container the code runs with the site's Python (the `local` site uses the
# platform's). To run in a container, build the Dockerfile and uncomment this (mantik turns
# the Docker image into an Apptainer image), or set SingularityImage in the backend config:
# docker_env:
#   image: {name}:latest

entry_points:
  main:
    parameters:
      learning_rate: {{type: float, default: 0.1}}
      epochs: {{type: int, default: 5}}
    command: "python train.py --learning-rate {{learning_rate}} --epochs {{epochs}}"
"""

TRAIN = '''\
"""Training script: tracked to the mantik platform, on a laptop or in a batch job."""

import argparse
import math

import mlflow

import mantik


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    # On a laptop: signs in with MANTIK_USERNAME/MANTIK_PASSWORD. In a mantik job: uses
    # the job's token, so the metrics land in the run that submit_run created.
    mantik.init_tracking()
    with mlflow.start_run():
        loss = 1.0
        for epoch in range(args.epochs):
            loss *= math.exp(-args.learning_rate)
            mlflow.log_metric("loss", loss, step=epoch)
        print(f"final loss {{loss:.4f}}")


if __name__ == "__main__":
    main()
'''

CONFIG_JSON = """\
{{
  "ComputeSite": "local",
  "Resources": {{
    "Runtime": "30m",
    "CPUs": 1,
    "Memory": "2GiB"
  }}
}}
"""

CONFIG_YAML = """\
# Backend configuration of {name}: every key, with what it does. Check it with
#   mantik config check compute-backend-config.yaml
# Submit with
#   mantik runs submit . --backend-config compute-backend-config.yaml --experiment-name {name}

# The site to run on: `local`, `slurm`, or a site your platform admin configured.
ComputeSite: local
# For a UNICORE site (e.g. JUWELS), name its REST URL instead of ComputeSite:
# UnicoreApiUrl: https://zam2125.zam.kfa-juelich.de:9112/JUWELS/rest/core

# The container: a local Apptainer image, uploaded once and cached on the site ...
# SingularityImage: image.sif
# ... or an image that already exists on the site (nothing is uploaded):
# RemoteImage: /p/project/myproject/images/{name}.sif
# Extra `apptainer run` options, e.g. GPUs and bind mounts:
# ApptainerOptions: ["--nv", "-B", "/p/scratch:/scratch"]
# Or no container, but a Python venv that exists on the site:
# Venv: /p/project/myproject/venvs/{name}

# Environment modules to load, and shell commands before and after the run:
# Modules: ["Stages/2024", "CUDA"]
# PreRunCommands: ["echo starting"]
# PostRunCommands: ["echo done"]

# Variables for the run (MLFLOW_* and MANTIK_* are set by mantik):
Environment:
  GREETING: hello

# Files not to upload with the project (globs, like .gitignore):
Exclude: ["*.sif", "data/**", "checkpoints/"]

# How the job tracks: online, offline (compute nodes without internet) or auto.
Tracking: auto

# SLURM sites: run the entry point once per task with srun (RANK, WORLD_SIZE, MASTER_ADDR,
# … set as torchrun sets them); rank 0 tracks the run.
# Launcher: srun

Resources:
  Runtime: 30m          # 30s, 30m, 12h, 1d, or HH:MM:SS
  # Queue: batch        # the partition
  # Nodes: 1
  CPUs: 1               # total tasks (UNICORE's TotalCPUs, sbatch --ntasks)
  # CPUsPerNode: 1
  # TasksPerNode: 4     # with Launcher: srun (sbatch --ntasks-per-node)
  # CPUsPerTask: 8      # with Launcher: srun (sbatch --cpus-per-task)
  # GPUsPerNode: 1
  Memory: 2GiB          # per node: 500M, 12G, 12GiB
  # Reservation: my-reservation
  # NodeConstraints: largemem
  # QoS: normal
"""

DOCKERFILE = """\
# Build with `docker build -t {name}:latest .`; mantik turns it into an Apptainer image
# (apptainer build … docker-daemon://{name}:latest) when no SingularityImage is set.
FROM python:3.11-slim
RUN pip install --no-cache-dir mantik
WORKDIR /project
"""

APPTAINER_DEF = """\
# Build with `apptainer build image.sif image.def`, then set SingularityImage: image.sif.
Bootstrap: docker
From: python:3.11-slim

%post
    pip install --no-cache-dir mantik

%runscript
    exec "$@"
"""

FILES = {
    "MLproject": MLPROJECT,
    "train.py": TRAIN,
    "compute-backend-config.json": CONFIG_JSON,
    "compute-backend-config.yaml": CONFIG_YAML,
    "Dockerfile": DOCKERFILE,
    "image.def": APPTAINER_DEF,
}
