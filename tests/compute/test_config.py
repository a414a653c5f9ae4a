"""The backend configuration: keys, units, renderers, error messages, loading and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mantik._exceptions import ConfigurationError
from mantik.compute.config.loading import (
    load_backend_config,
    parse_backend_config,
    validate_backend_config,
)
from mantik.compute.config.model import BackendConfig, Resources
from mantik.compute.config.units import (
    GIB,
    KIB,
    MIB,
    parse_memory,
    parse_runtime,
    unicore_memory,
    unicore_runtime,
)
from mantik.server.compute.drivers.slurm.render import slurm_memory, slurm_time

# The user guide's example, verbatim (section "Backend configuration").
GUIDE_EXAMPLE = """\
{
  "SingularityImage": "<absolute path to Singularity image>",
  "UnicoreApiUrl": "https://zam2125.zam.kfa-juelich.de:9112/JUWELS/rest/core",
  "Environment": {
    "TEST_ENV_VAR": "variable value"
  },
  "Resources": {
    "Runtime": "12h",
    "Queue": "batch",
    "Nodes": 1,
    "CPUs": 1,
    "CPUsPerNode": 1,
    "Memory": "12GiB",
    "Reservation": "<batch system reservation ID>",
    "NodeConstraints": "<node constraints>",
    "QoS": "<batch system QoS>"
  }
}
"""

EVERY_KEY: dict[str, Any] = {
    "SingularityImage": "images/train.sif",
    "UnicoreApiUrl": "http://localhost:8080/DEMO-SITE/rest/core",
    "Environment": {"A": "x", "_B2": 3, "C": 0.5, "D": True, "E": False},
    "Resources": {
        "Runtime": "1h30m",
        "Queue": "gpus",
        "Nodes": 2,
        "CPUs": 96,
        "CPUsPerNode": 48,
        "CPUsPerTask": 12,
        "GPUsPerNode": 4,
        "Memory": "500MiB",
        "Reservation": 12345,
        "NodeConstraints": "gpu&mem192",
        "QoS": "normal",
    },
    "ComputeSite": "slurm",
    "ApptainerOptions": ["--nv", "-B", "/p/scratch:/scratch"],
    "Modules": ["Stages/2024", "CUDA"],
    "PreRunCommands": ["echo start", "export X=$HOME"],
    "PostRunCommands": ["echo done"],
    "Exclude": ["*.ckpt", "data/**"],
    "Tracking": "offline",
    "Launcher": "srun",
}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(data: object) -> str:
    with pytest.raises(ConfigurationError) as info:
        validate_backend_config(data, source="compute-backend-config.json")
    return str(info.value)


# ---------------------------------------------------------------------- the guide


def test_guide_example_loads_and_renders(tmp_path: Path) -> None:
    config = load_backend_config(write(tmp_path, "compute-backend-config.json", GUIDE_EXAMPLE))
    r = config.resources
    assert config.singularity_image == "<absolute path to Singularity image>"
    assert config.unicore_api_url == "https://zam2125.zam.kfa-juelich.de:9112/JUWELS/rest/core"
    assert config.environment == {"TEST_ENV_VAR": "variable value"}
    assert (r.runtime, r.memory) == (12 * 3600, 12 * GIB)
    assert (r.queue, r.nodes, r.cpus, r.cpus_per_node) == ("batch", 1, 1, 1)
    assert r.reservation == "<batch system reservation ID>"
    assert r.node_constraints == "<node constraints>"
    assert r.qos == "<batch system QoS>"
    assert r.gpus_per_node is None
    assert (unicore_runtime(r.runtime), unicore_memory(r.memory)) == ("12h", "12G")
    assert (slurm_time(r.runtime), slurm_memory(r.memory)) == ("12:00:00", "12G")
    assert config.tracking == "auto"


def test_guide_example_round_trips_through_the_wire(tmp_path: Path) -> None:
    config = parse_backend_config(GUIDE_EXAMPLE, suffix=".json")
    wire = config.to_wire()
    assert wire["Resources"]["Memory"] == 12 * GIB
    assert wire["Resources"]["Runtime"] == 43200
    assert "ComputeSite" not in wire and "Venv" not in wire  # exclude_none
    assert json.loads(json.dumps(wire)) == wire
    assert BackendConfig.model_validate(wire) == config


# ---------------------------------------------------------------------- every key


def test_every_key() -> None:
    config = validate_backend_config(EVERY_KEY)
    r = config.resources
    assert config.singularity_image == "images/train.sif"
    assert config.unicore_api_url == "http://localhost:8080/DEMO-SITE/rest/core"
    assert config.environment == {"A": "x", "_B2": "3", "C": "0.5", "D": "true", "E": "false"}
    assert r == Resources(
        runtime=5400,
        queue="gpus",
        nodes=2,
        cpus=96,
        cpus_per_node=48,
        cpus_per_task=12,
        gpus_per_node=4,
        memory=500 * MIB,
        reservation="12345",
        node_constraints="gpu&mem192",
        qos="normal",
    )
    assert config.compute_site == "slurm"
    assert config.apptainer_options == ["--nv", "-B", "/p/scratch:/scratch"]
    assert config.modules == ["Stages/2024", "CUDA"]
    assert config.pre_run_commands == ["echo start", "export X=$HOME"]
    assert config.post_run_commands == ["echo done"]
    assert config.exclude == ["*.ckpt", "data/**"]
    assert config.tracking == "offline"
    assert config.launcher == "srun"
    assert BackendConfig.model_validate(config.to_wire()) == config
    assert set(config.to_wire()) == set(EVERY_KEY)


def test_extension_keys_for_remote_images_and_venvs() -> None:
    remote = validate_backend_config({"RemoteImage": "/p/images/x.sif", "ComputeSite": "local"})
    assert remote.remote_image == "/p/images/x.sif"
    venv = validate_backend_config({"Venv": "/p/home/me/venv", "Modules": ["Python"]})
    assert (venv.venv, venv.singularity_image, venv.remote_image) == ("/p/home/me/venv", None, None)


def test_snake_case_names_work_too() -> None:
    config = BackendConfig(
        singularity_image="a.sif", resources=Resources(runtime=60, memory=GIB), tracking="online"
    )
    assert config.to_wire()["Resources"] == {"Runtime": 60, "Memory": GIB}
    loaded = validate_backend_config({"singularity_image": "a.sif", "resources": {"cpus": 2}})
    assert (loaded.singularity_image, loaded.resources.cpus) == ("a.sif", 2)


def test_empty_config_is_valid() -> None:
    config = validate_backend_config({})
    assert config.resources == Resources()
    assert config.environment == {} and config.modules == []


def test_model_is_frozen() -> None:
    config = validate_backend_config({})
    with pytest.raises(ValueError):
        config.venv = "/x"  # type: ignore[misc]


# ---------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (3600, 3600),
        (1, 1),
        ("45", 45),
        ("30s", 30),
        ("30m", 1800),
        ("30min", 1800),
        ("12h", 43200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("1d 2h 3m 4s", 93784),
        ("2 hours", 7200),
        ("90 minutes", 5400),
        ("1.5h", 5400),
        ("12H", 43200),
        ("30:00", 1800),  # MM:SS
        ("02:00:00", 7200),  # HH:MM:SS
        ("1-00:00:00", 86400),  # D-HH:MM:SS
        ("1-12", 129600),  # D-HH
        ("1-12:30", 131400),  # D-HH:MM
        (1.2, 2),  # rounded up to whole seconds
    ],
)
def test_runtime_forms(value: object, seconds: int) -> None:
    assert parse_runtime(value) == seconds
    assert validate_backend_config({"Resources": {"Runtime": value}}).resources.runtime == seconds


@pytest.mark.parametrize(
    "value",
    ["", "soon", "12 hours please", "1m30h", "30ms", "h", "1:60", "1:2:3:4", "-1h", "2.5.1h", "²"],
)
def test_runtime_bad_forms(value: object) -> None:
    message = error_of({"Resources": {"Runtime": value}})
    assert message.startswith("Bad value for 'Resources.Runtime' in compute-backend-config.json")
    assert '"12h"' in message and '"1h30m"' in message and "HH:MM:SS" in message


@pytest.mark.parametrize("value", [0, -5, "0s", "0:00"])
def test_runtime_must_be_positive(value: object) -> None:
    assert "must be positive" in error_of({"Resources": {"Runtime": value}})


@pytest.mark.parametrize("value", [True, None, [1], {"h": 1}, float("inf")])
def test_runtime_wrong_types(value: object) -> None:
    if value is None:  # null means "not set"
        assert validate_backend_config({"Resources": {"Runtime": None}}).resources.runtime is None
        return
    assert "Resources.Runtime" in error_of({"Resources": {"Runtime": value}})


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (1024, 1024),
        ("1024", 1024),
        ("100B", 100),
        ("12GiB", 12 * GIB),
        ("12G", 12 * GIB),
        ("12GB", 12 * GIB),  # GB taken as GiB, as on HPC systems
        ("12gb", 12 * GIB),
        ("12 GiB", 12 * GIB),
        ("500M", 500 * MIB),
        ("500MiB", 500 * MIB),
        ("500MB", 500 * MIB),
        ("1T", 1024 * GIB),
        ("1TiB", 1024 * GIB),
        ("2048K", 2048 * KIB),
        ("2048KiB", 2048 * KIB),
        ("1.5G", 1536 * MIB),
    ],
)
def test_memory_forms(value: object, size: int) -> None:
    assert parse_memory(value) == size
    assert validate_backend_config({"Resources": {"Memory": value}}).resources.memory == size


@pytest.mark.parametrize(
    "value", ["", "lots", "12 Gigs", "G", "-1G", "1.2.3G", "12X", "\u0661G", True, [1]]
)
def test_memory_bad_forms(value: object) -> None:
    message = error_of({"Resources": {"Memory": value}})
    assert message.startswith("Bad value for 'Resources.Memory' in compute-backend-config.json")
    assert '"12G"' in message and '"500M"' in message and "1024" in message


def test_memory_must_be_positive() -> None:
    assert "must be positive" in error_of({"Resources": {"Memory": 0}})


# ---------------------------------------------------------------------- renderers


@pytest.mark.parametrize(
    ("seconds", "slurm", "unicore"),
    [
        (1, "00:01:00", "1s"),  # SLURM needs at least a minute
        (59, "00:01:00", "59s"),
        (60, "00:01:00", "1m"),
        (90, "00:01:30", "90s"),
        (1800, "00:30:00", "30m"),
        (5400, "01:30:00", "90m"),
        (43200, "12:00:00", "12h"),
        (86400, "1-00:00:00", "1d"),
        (90061, "1-01:01:01", "90061s"),
        (3 * 86400 + 7200, "3-02:00:00", "74h"),
    ],
)
def test_time_renderers(seconds: int, slurm: str, unicore: str) -> None:
    assert slurm_time(seconds) == slurm
    assert unicore_runtime(seconds) == unicore


@pytest.mark.parametrize(
    ("size", "slurm", "unicore"),
    [
        (12 * GIB, "12G", "12G"),
        (1024 * GIB, "1024G", "1024G"),
        (500 * MIB, "500M", "500M"),
        (1536 * MIB, "1536M", "1536M"),
        (2048 * KIB, "2M", "2M"),
        (2049 * KIB, "3M", "2049K"),  # sbatch: rounded up to MiB
        (1, "1M", "1K"),
        (1000, "1M", "1K"),
    ],
)
def test_memory_renderers(size: int, slurm: str, unicore: str) -> None:
    assert slurm_memory(size) == slurm
    assert unicore_memory(size) == unicore
    assert "i" not in unicore and "B" not in unicore


@pytest.mark.parametrize("render", [slurm_time, slurm_memory, unicore_runtime, unicore_memory])
@pytest.mark.parametrize("value", [0, -1, True])
def test_renderers_refuse_non_positive(render: Any, value: int) -> None:
    with pytest.raises(ValueError):
        render(value)


# ---------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        ({"UnicoreApiUrl": "ftp://host/x"}, "UnicoreApiUrl", "not an http(s) URL"),
        ({"UnicoreApiUrl": "zam2125:9112/JUWELS"}, "UnicoreApiUrl", "https://"),
        ({"SingularityImage": "docker://python:3.12"}, "SingularityImage", "RemoteImage"),
        ({"SingularityImage": ""}, "SingularityImage", "must not be empty"),
        ({"RemoteImage": "images/x.sif"}, "RemoteImage", "absolute path"),
        ({"Environment": {"MLFLOW_TRACKING_URI": "x"}}, "Environment", "platform sets"),
        ({"Environment": {"MANTIK_X": "x"}}, "Environment", "platform sets"),
        ({"Environment": {"1ABC": "x"}}, "Environment", "not a valid variable name"),
        ({"Environment": {"A-B": "x"}}, "Environment", "not a valid variable name"),
        ({"Environment": {"A": None}}, "Environment.A", "must be a string"),
        ({"Environment": {"A": [1]}}, "Environment.A", "must be a string"),
        ({"Environment": ["A=1"]}, "Environment", "must be a mapping"),
        ({"Resources": {"Nodes": 0}}, "Resources.Nodes", "positive whole number"),
        ({"Resources": {"Nodes": 1.5}}, "Resources.Nodes", "whole number"),
        ({"Resources": {"CPUs": True}}, "Resources.CPUs", "whole number"),
        ({"Resources": {"CPUsPerNode": "many"}}, "Resources.CPUsPerNode", "whole number"),
        ({"Resources": {"GPUsPerNode": -1}}, "Resources.GPUsPerNode", "at least 0"),
        ({"Resources": {"Queue": "batch\n#SBATCH --x"}}, "Resources.Queue", "one line"),
        ({"Resources": {"Queue": ""}}, "Resources.Queue", "must not be empty"),
        ({"Resources": "big"}, "Resources", "must be a mapping"),
        ({"ComputeSite": "my site"}, "ComputeSite", "not a site name"),
        ({"Modules": "GCC OpenMPI"}, "Modules", "must be a list"),
        ({"Modules": ["GCC OpenMPI"]}, "Modules[0]", "one module per list item"),
        ({"ApptainerOptions": "--nv"}, "ApptainerOptions", "must be a list"),
        ({"Exclude": [1]}, "Exclude[0]", "must be a string"),
        ({"Tracking": "on"}, "Tracking", "'online', 'offline' or 'auto'"),
        ({"Launcher": "mpirun"}, "Launcher", "must be one of 'srun'"),
        ({"Launcher": True}, "Launcher", "must be one of 'srun'"),
        ({"Resources": {"TasksPerNode": 0}}, "Resources.TasksPerNode", "positive whole number"),
        ({"Resources": {"CPUsPerTask": "many"}}, "Resources.CPUsPerTask", "whole number"),
    ],
)
def test_bad_values(data: dict[str, Any], key: str, fragment: str) -> None:
    message = error_of(data)
    assert f"'{key}' in compute-backend-config.json: " in message
    assert fragment in message


def test_allowed_environment_names_and_values() -> None:
    config = validate_backend_config({"Environment": {"mlflow_lower": "", "X_MLFLOW_": "a\nb"}})
    assert config.environment == {"mlflow_lower": "", "X_MLFLOW_": "a\nb"}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (
            {"SingularityImage": "a.sif", "RemoteImage": "/a.sif"},
            "SingularityImage and RemoteImage",
        ),
        ({"SingularityImage": "a.sif", "Venv": "/v"}, "Venv and SingularityImage"),
        ({"RemoteImage": "/a.sif", "Venv": "/v"}, "Venv and RemoteImage"),
        ({"Venv": "/v", "ApptainerOptions": ["--nv"]}, "ApptainerOptions apply to images"),
        ({"Resources": {"TasksPerNode": 2}}, 'shape the tasks of "Launcher": "srun"'),
        ({"Resources": {"CPUsPerTask": 2}}, 'shape the tasks of "Launcher": "srun"'),
        (
            {"Launcher": "srun", "Resources": {"TasksPerNode": 2, "CPUsPerNode": 2}},
            "TasksPerNode and CPUsPerNode both set the tasks per node",
        ),
    ],
)
def test_conflicting_keys(data: dict[str, Any], fragment: str) -> None:
    message = error_of(data)
    assert message.startswith("Conflicting keys in compute-backend-config.json: ")
    assert fragment in message


def test_all_problems_in_one_message() -> None:
    message = error_of(
        {
            "Resources": {"Runtime": "soon", "Memory": "lots", "Memmory": "1G"},
            "Environment": {"MLFLOW_X": "1"},
            "Tracking": "sometimes",
        }
    )
    assert message.startswith("5 problems in compute-backend-config.json: ")
    for key in ("Resources.Runtime", "Resources.Memory", "Resources.Memmory", "Tracking"):
        assert f"'{key}'" in message
    assert "MLFLOW_X" in message
    assert "\n" not in message


# ---------------------------------------------------------------------- misspelled keys


RESOURCE_KEYS = (
    "CPUs, CPUsPerNode, CPUsPerTask, GPUsPerNode, Memory, NodeConstraints, Nodes, QoS, "
    "Queue, Reservation, Runtime, TasksPerNode"
)
TOP_KEYS = (
    "ApptainerOptions, ComputeSite, Environment, Exclude, Launcher, Modules, PostRunCommands, "
    "PreRunCommands, RemoteImage, Resources, SingularityImage, SystemMetrics, Tracking, "
    "UnicoreApiUrl, Venv"
)


def test_misspelled_resource_key() -> None:
    assert error_of({"Resources": {"Memmory": "12GiB"}}) == (
        "Unknown key 'Resources.Memmory' in compute-backend-config.json: "
        f"did you mean 'Memory'? Valid keys: {RESOURCE_KEYS}"
    )


def test_misspelled_top_level_key() -> None:
    assert error_of({"Resource": {"Memory": "12GiB"}}) == (
        "Unknown key 'Resource' in compute-backend-config.json: "
        f"did you mean 'Resources'? Valid keys: {TOP_KEYS}"
    )


@pytest.mark.parametrize(
    ("data", "suggestion"),
    [
        ({"SingularityImg": "a"}, "SingularityImage"),
        ({"UnicoreURL": "a"}, "UnicoreApiUrl"),
        ({"Partition": "a"}, None),
        ({"Enviroment": {}}, "Environment"),
        ({"Resources": {"CPUS": 1}}, "CPUs"),
        ({"Resources": {"cpu_per_node": 1}}, "CPUsPerNode"),
        ({"Resources": {"Qos": "x"}}, "QoS"),
        ({"Resources": {"RunTime": "1h"}}, "Runtime"),
        ({"Launch": "srun"}, "Launcher"),
        ({"Resources": {"TaskPerNode": 2}}, "TasksPerNode"),
        ({"Resources": {"cpus_per_tasks": 2}}, "CPUsPerTask"),
    ],
)
def test_suggestions(data: dict[str, Any], suggestion: str | None) -> None:
    message = error_of(data)
    assert message.startswith("Unknown key '")
    if suggestion:
        assert f"did you mean '{suggestion}'?" in message
    else:
        assert "did you mean" not in message
    assert "Valid keys: " in message


def test_resource_key_at_top_level() -> None:
    message = error_of({"Memory": "12GiB"})
    assert "did you mean 'Resources.Memory'? It belongs inside Resources." in message


def test_top_level_key_inside_resources() -> None:
    message = error_of({"Resources": {"Environment": {}}})
    assert "'Environment' belongs at the top level, not inside Resources." in message
    message = error_of({"Resources": {"Launcher": "srun"}})
    assert "'Launcher' belongs at the top level, not inside Resources." in message


def test_launcher_with_the_shape_of_its_tasks() -> None:
    config = validate_backend_config(
        {"Launcher": "srun", "Resources": {"Nodes": 2, "TasksPerNode": 4, "CPUsPerTask": 8}}
    )
    r = config.resources
    assert (config.launcher, r.nodes, r.tasks_per_node, r.cpus_per_task) == ("srun", 2, 4, 8)
    assert BackendConfig.model_validate(config.to_wire()) == config
    assert validate_backend_config({}).launcher is None


# ---------------------------------------------------------------------- loading


def test_yaml_variant(tmp_path: Path) -> None:
    text = """\
SingularityImage: image.sif
Environment:
  TEST_ENV_VAR: variable value
  DEBUG: yes
Resources:
  Runtime: 12:00:00   # YAML 1.1 reads this as 43200 (base 60): the same seconds
  Queue: batch
  Memory: 12GiB
  Reservation: 4711
ApptainerOptions: [--nv, -B, "/p/scratch:/scratch"]
"""
    for suffix in (".yaml", ".yml"):
        config = load_backend_config(write(tmp_path, f"config{suffix}", text))
        assert config.resources.runtime == 43200
        assert config.resources.memory == 12 * GIB
        assert config.resources.reservation == "4711"
        assert config.environment == {"TEST_ENV_VAR": "variable value", "DEBUG": "true"}
        assert config.apptainer_options == ["--nv", "-B", "/p/scratch:/scratch"]


def test_other_suffix_tries_json_then_yaml(tmp_path: Path) -> None:
    as_json = load_backend_config(write(tmp_path, "config", GUIDE_EXAMPLE))
    assert as_json.resources.memory == 12 * GIB
    as_yaml = load_backend_config(write(tmp_path, "config.txt", "Resources:\n  Memory: 1G\n"))
    assert as_yaml.resources.memory == GIB
    with pytest.raises(
        ConfigurationError, match=r"not valid YAML \(line \d+.*; nor JSON \(line 1, column 1\): "
    ):
        load_backend_config(write(tmp_path, "config.cfg", "a: [\nb: 1\n"))


def test_json_parse_error_has_line(tmp_path: Path) -> None:
    path = write(tmp_path, "c.json", '{\n  "Resources": {\n    "Memory": "1G",\n  }\n}\n')
    with pytest.raises(ConfigurationError) as info:
        load_backend_config(path)
    assert str(info.value).startswith(f"{path} is not valid JSON (line 4, column 3): ")


def test_json_suffix_is_not_read_as_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        load_backend_config(write(tmp_path, "c.json", "Resources:\n  Memory: 1G\n"))


def test_yaml_parse_error_has_line(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "Resources:\n  Memory: 1G\n   Queue: [batch\n")
    with pytest.raises(ConfigurationError, match=r"c\.yaml is not valid YAML \(line \d+"):
        load_backend_config(path)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("c.json", '{"Resources": {"Memory": "1G"}, "Resources": {}}'),
        ("c.yaml", "Resources:\n  Memory: 1G\nResources:\n  Nodes: 1\n"),
    ],
)
def test_duplicate_keys_are_refused(tmp_path: Path, name: str, text: str) -> None:
    with pytest.raises(ConfigurationError, match="duplicate key 'Resources'"):
        load_backend_config(write(tmp_path, name, text))


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(ConfigurationError, match=f"{path} does not exist"):
        load_backend_config(path)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="is a directory"):
        load_backend_config(tmp_path)


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("c.json", "[1, 2]", "got a list"),
        ("c.yaml", "just a string", 'got "just a string"'),
        ("c.json", "42", "got the number 42"),
        ("c.json", "  \n", "is empty"),
        ("c.yaml", "# only a comment\n", "got null"),
    ],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, name: str, text: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        load_backend_config(write(tmp_path, name, text))


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(b'{"Queue": "\xff"}')
    with pytest.raises(ConfigurationError, match="not UTF-8"):
        load_backend_config(path)


def test_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(b"\xef\xbb\xbf" + GUIDE_EXAMPLE.encode())
    assert load_backend_config(path).resources.queue == "batch"


def test_error_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "my-config.json", '{"Resources": {"Memory": "lots"}}')
    with pytest.raises(ConfigurationError, match=f"'Resources.Memory' in {path}: "):
        load_backend_config(path)


# ---------------------------------------------------------------------- JSON schema


def test_schema_uses_the_user_facing_keys() -> None:
    schema = BackendConfig.model_json_schema(by_alias=True)
    assert schema["additionalProperties"] is False
    assert "SingularityImage" in schema["properties"]
    resources = schema["$defs"]["Resources"]
    assert resources["additionalProperties"] is False
    assert set(resources["properties"]) == set(RESOURCE_KEYS.split(", "))
    memory = resources["properties"]["Memory"]["anyOf"][0]
    assert {"type": "string"} in memory["anyOf"]


# ---------------------------------------------------------------------- CLI


def mantik(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mantik.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_cli_check_valid(tmp_path: Path) -> None:
    write(tmp_path, "compute-backend-config.json", GUIDE_EXAMPLE)
    result = mantik("config", "check", "compute-backend-config.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "compute-backend-config.json is valid"
    assert len(lines) == 2
    assert "zam2125" in lines[1] and "runtime: 12h" in lines[1] and "memory: 12G" in lines[1]
    assert result.stderr == ""


def test_cli_check_json(tmp_path: Path) -> None:
    write(tmp_path, "compute-backend-config.json", GUIDE_EXAMPLE)
    result = mantik("config", "check", "compute-backend-config.json", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    checked = json.loads(result.stdout)
    assert checked["valid"] is True
    assert checked["config"]["UnicoreApiUrl"].startswith("https://zam2125")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"Resources": {"Memmory": "12GiB"}}', "did you mean 'Memory'?"),
        ('{"Resources": {"Memory": "[/x] [bold]"}}', "cannot read '[/x] [bold]'"),
        ("{", "not valid JSON (line 1"),
    ],
)
def test_cli_check_invalid(tmp_path: Path, text: str, fragment: str) -> None:
    write(tmp_path, "compute-backend-config.json", text)
    result = mantik("config", "check", "compute-backend-config.json", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("Error: ")
    assert fragment in result.stderr


def test_cli_check_missing_file(tmp_path: Path) -> None:
    result = mantik("config", "check", "nope.json", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: Backend config file nope.json does not exist"


def test_cli_schema(tmp_path: Path) -> None:
    result = mantik("config", "schema", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert "SingularityImage" in schema["properties"]
    assert "Resources" in schema["$defs"]


def test_system_metrics_go_with_the_srun_launcher() -> None:
    assert "SystemMetrics applies with" in error_of({"SystemMetrics": 5})
    config = validate_backend_config(
        {"ComputeSite": "slurm", "Launcher": "srun", "SystemMetrics": 0}, source="x"
    )
    assert config.system_metrics == 0
