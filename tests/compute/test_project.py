"""MLproject loading, parameter checks and command rendering (MLflow's conventions)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mantik import ConfigurationError
from mantik.compute.project.loading import load_project
from mantik.compute.project.model import EntryPoint, MLProject, Parameter

HOSTILE = [
    "a'; echo foo",
    "a\n0",
    "$HOME",
    "`id`",
    "$(id)",
    'say "hi"; exit 3',
    "it's",
    "back\\slash",
    "{a} {0}",
    "  spaces  ",
    "",
    "-x",
    "*",
    "ünï\tcode",
    "x && touch /tmp/mantik-pwned",
]

ARGV_COMMAND = (
    f"{shlex.quote(sys.executable)} -c "
    "'import sys,json; print(json.dumps(sys.argv[1:]))' {a} --b {b}"
)


def make_project(tmp_path: Path, mlproject: str, filename: str = "MLproject") -> Path:
    root = tmp_path / "proj"
    root.mkdir(exist_ok=True)
    (root / filename).write_text(textwrap.dedent(mlproject))
    return root


def run_argv(line: str) -> list[str]:
    """Run a rendered line as the job wrapper does and return the argv the program saw."""
    done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, check=True)
    result: list[str] = json.loads(done.stdout)
    return result


FULL = """\
name: demo
docker_env:
  image: registry.example.org/demo:1.0
entry_points:
  main:
    parameters:
      alpha: {type: float, default: 0.1}
      epochs: {type: int, default: 10}
      data: path
      tag: {default: none}
      model: {type: uri, default: "s3://bucket/model"}
    command: "python train.py --alpha {alpha} --epochs {epochs} --data {data} --tag {tag}"
  short:
    command: "python short.py"
"""


# -- loading -------------------------------------------------------------------------------


def test_loads_entry_points_parameters_and_docker_image(tmp_path: Path) -> None:
    root = make_project(tmp_path, FULL)
    project = load_project(
        root.relative_to(Path.cwd()) if root.is_relative_to(Path.cwd()) else root
    )
    assert project.name == "demo"
    assert project.path == root.resolve()
    assert project.docker_image == "registry.example.org/demo:1.0"
    assert project.python_env is None and project.conda_env is None
    assert list(project.entry_points) == ["main", "short"]
    main = project.entry_point("main")
    assert main.parameters == {
        "alpha": Parameter("alpha", "float", "0.1"),
        "epochs": Parameter("epochs", "int", "10"),
        "data": Parameter("data", "path", None),
        "tag": Parameter("tag", "string", "none"),
        "model": Parameter("model", "uri", "s3://bucket/model"),
    }
    assert main.parameters["data"].required
    assert project.entry_point("short").parameters == {}


@pytest.mark.parametrize("filename", ["MLProject", "mlproject"])
def test_mlproject_file_name_is_case_insensitive(tmp_path: Path, filename: str) -> None:
    project = load_project(make_project(tmp_path, FULL, filename))
    assert "main" in project.entry_points


def test_two_mlproject_files_are_ambiguous(tmp_path: Path) -> None:
    root = make_project(tmp_path, FULL)
    (root / "MLProject").write_text(FULL)
    if len(list(root.iterdir())) < 2:
        pytest.skip("case-insensitive file system")
    with pytest.raises(ConfigurationError, match="both MLProject and MLproject"):
        load_project(root)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"nowhere does not exist"):
        load_project(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigurationError, match="is not a directory"):
        load_project(tmp_path / "file")


def test_project_without_mlproject_runs_scripts(tmp_path: Path) -> None:
    root = tmp_path / "bare"
    (root / "src").mkdir(parents=True)
    (root / "train.py").write_text("")
    (root / "run job.sh").write_text("")
    (root / "src" / "a{b}.py").write_text("")
    (root / "notes.txt").write_text("")
    project = load_project(root)
    assert project.name == "bare"
    assert project.entry_points == {}
    assert project.entry_point("train.py").render({}) == "python train.py"
    assert project.entry_point("run job.sh").render({}) == "bash 'run job.sh'"
    # A brace in a file name is not a placeholder.
    assert project.entry_point("src/a{b}.py").render({}) == "python 'src/a{b}.py'"
    # Extra parameters are appended, as MLflow does for script entry points.
    assert project.entry_point("train.py").render({"lr": "0.1"}) == "python train.py --lr 0.1"


@pytest.mark.parametrize("name", ["missing.py", "notes.txt", "../outside.py", "/etc/x.py"])
def test_unknown_entry_point_lists_the_available_ones(tmp_path: Path, name: str) -> None:
    (tmp_path / "outside.py").write_text("")
    project = load_project(make_project(tmp_path, FULL))
    with pytest.raises(ConfigurationError) as info:
        project.entry_point(name)
    message = str(info.value)
    assert repr(name) in message
    assert "'main', 'short'" in message
    assert ".py or .sh file" in message


def test_yaml_error_gives_the_line(tmp_path: Path) -> None:
    root = make_project(tmp_path, "name: x\nentry_points:\n  main:\n    command: [unclosed\n")
    with pytest.raises(ConfigurationError, match=r"not valid YAML at line \d+, column \d+"):
        load_project(root)
    root = make_project(tmp_path, "name: x\n\tbad: tab\n")
    with pytest.raises(ConfigurationError, match="line 2"):
        load_project(root)


def test_empty_mlproject_is_a_project_without_entry_points(tmp_path: Path) -> None:
    project = load_project(make_project(tmp_path, ""))
    assert project.entry_points == {} and project.name == "proj"


@pytest.mark.parametrize(
    ("mlproject", "expected"),
    [
        ("- a\n- b\n", "must be a YAML mapping"),
        ("name: [x]\n", "'name' must be a non-empty string"),
        ("entry_points: [main]\n", "'entry_points' must be a mapping"),
        ("entry_points:\n  main: python x.py\n", "entry point 'main': must be a mapping"),
        ("entry_points:\n  main: {}\n", "entry point 'main': 'command' must be"),
        (
            "entry_points:\n  main: {command: x, paramters: {a: int}}\n",
            "entry point 'main': unknown key(s) 'paramters'; valid keys: command, parameters",
        ),
        (
            "entry_points:\n  train: {command: 'x {a}', parameters: {a: double}}\n",
            "entry point 'train': parameter 'a' has unknown type 'double'; use one of: "
            "float, int, string, path, uri",
        ),
        (
            "entry_points:\n  train: {command: x, parameters: {a: {type: bool}}}\n",
            "parameter 'a' has unknown type 'bool'",
        ),
        (
            "entry_points:\n  train: {command: x, parameters: {a: {type: int, default: 1.5}}}\n",
            "entry point 'train': parameter 'a' has type int, but its default '1.5' is not an int",
        ),
        (
            "entry_points:\n  train: {command: x, parameters: {a: {type: uri, default: here}}}\n",
            "its default 'here' is not a URI",
        ),
        (
            "entry_points:\n  train: {command: x, parameters: {a: {default: [1, 2]}}}\n",
            "parameter 'a' has a default [1, 2]; give a single value",
        ),
        (
            "entry_points:\n  train: {command: x, parameters: {a: {type: int, help: n}}}\n",
            "parameter 'a' has unknown key(s) 'help'",
        ),
        ("entry_points:\n  train: {command: x, parameters: [a]}\n", "'parameters' must be"),
        (
            "entry_points:\n  train: {command: 'python x.py {lr}'}\n",
            "uses {lr}, which is not a declared parameter",
        ),
        (
            "entry_points:\n  train: {command: 'python -c \"print({1: 2})\"'}\n",
            "not a declared parameter",
        ),
        ("entry_points:\n  train: {command: 'echo }'}\n", "unbalanced braces"),
        (
            "entry_points:\n  t: {command: 'x {a:d}', parameters: {a: int}}\n",
            "cannot be formatted",
        ),
        ("docker_env: {}\n", "'docker_env.image' must name an image"),
        ("docker_env: {image: x, volumes: /data}\n", "'docker_env.volumes' must be a list"),
        ("docker_env: ubuntu\n", "'docker_env' must be a mapping"),
        ("docker_env: {image: x}\npython_env: p.yaml\n", "only one of docker_env, python_env"),
        ("python_env: env.yaml\n", "'python_env' file 'env.yaml' not found"),
        ("conda_env: ../conda.yaml\n", "is outside the project"),
        ("databricks_spark_job: {python_file: x.py}\n", "not supported"),
    ],
)
def test_structure_errors_name_the_place(tmp_path: Path, mlproject: str, expected: str) -> None:
    (tmp_path / "conda.yaml").write_text("")
    root = make_project(tmp_path, mlproject)
    with pytest.raises(ConfigurationError) as info:
        load_project(root)
    assert expected in str(info.value)
    assert str(root / "MLproject") in str(info.value)


def test_environment_files_follow_mlflow(tmp_path: Path) -> None:
    root = make_project(tmp_path, "python_env: envs/py.yaml\n")
    (root / "envs").mkdir()
    (root / "envs" / "py.yaml").write_text("python: '3.11'\n")
    assert load_project(root).python_env == "envs/py.yaml"

    root = make_project(tmp_path, "name: x\n")
    (root / "conda.yaml").write_text("")
    assert load_project(root).conda_env == "conda.yaml"
    (root / "python_env.yaml").write_text("")  # MLflow prefers python_env.yaml
    project = load_project(root)
    assert (project.python_env, project.conda_env) == ("python_env.yaml", None)


def test_literal_braces_are_escaped_as_in_str_format(tmp_path: Path) -> None:
    mlproject = """\
    entry_points:
      main:
        parameters: {n: int}
        command: "python -c 'print({{1: {n}}})'"
    """
    entry_point = load_project(make_project(tmp_path, mlproject)).entry_point("main")
    assert entry_point.render({"n": 5}) == "python -c 'print({1: 5})'"


# -- parameters ----------------------------------------------------------------------------


def main_entry_point(tmp_path: Path) -> EntryPoint:
    return load_project(make_project(tmp_path, FULL)).entry_point("main")


def test_validate_fills_defaults_and_keeps_extras(tmp_path: Path) -> None:
    values = main_entry_point(tmp_path).validate(
        {"data": "/scratch/d", "seed": 7, "alpha": 0.5}, allow_undeclared=True
    )
    assert values == {
        "alpha": "0.5",
        "epochs": "10",
        "data": "/scratch/d",
        "tag": "none",
        "model": "s3://bucket/model",
        "seed": "7",
    }


def test_an_undeclared_parameter_is_refused_naming_the_closest(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        main_entry_point(tmp_path).validate({"data": "/d", "alhpa": 0.5})
    message = str(info.value)
    assert "parameter 'alhpa' is not declared (did you mean 'alpha'?" in message
    assert "--allow-undeclared-params" in message
    assert "\n" not in message


def test_an_entry_point_without_declared_parameters_takes_any(tmp_path: Path) -> None:
    assert EntryPoint("main", "python t.py").validate({"x": 1}) == {"x": "1"}


def test_missing_parameters_are_listed_in_one_error() -> None:
    entry_point = EntryPoint(
        "main",
        "run {a} {b} {c}",
        {"a": Parameter("a"), "b": Parameter("b", "int"), "c": Parameter("c", default="x")},
    )
    with pytest.raises(ConfigurationError) as info:
        entry_point.validate({})
    assert str(info.value) == (
        "Invalid parameters for entry point 'main': "
        "no value given for required parameter(s) 'a', 'b'."
    )


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("alpha", "fast", "parameter 'alpha' has type float, but 'fast' is not a float"),
        ("alpha", True, "parameter 'alpha' has type float, but 'True' is not a float"),
        ("epochs", "1.5", "parameter 'epochs' has type int, but '1.5' is not an int"),
        ("epochs", 2.0, "parameter 'epochs' has type int, but '2.0' is not an int"),
        ("epochs", "1\n0", "parameter 'epochs' has type int, but '1\\n0' is not an int"),
        ("model", "bucket/model", "parameter 'model' has type uri, but 'bucket/model' is not"),
        ("data", None, "parameter 'data' has value None"),
        ("data", ["a"], "parameter 'data' has value ['a']; give a string, number or path"),
        ("data", "a\0b", "parameter 'data' contains a NUL character"),
    ],
)
def test_bad_values_name_parameter_type_and_value(
    tmp_path: Path, name: str, value: object, expected: str
) -> None:
    params = {"data": "/d", name: value}
    with pytest.raises(ConfigurationError) as info:
        main_entry_point(tmp_path).validate(params)
    assert expected in str(info.value)


def test_all_problems_come_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        main_entry_point(tmp_path).validate({"alpha": "x", "epochs": "y"})
    assert str(info.value).splitlines() == [
        "Invalid parameters for entry point 'main':",
        "  - no value given for required parameter(s) 'data'",
        "  - parameter 'alpha' has type float, but 'x' is not a float",
        "  - parameter 'epochs' has type int, but 'y' is not an int",
    ]


def test_values_of_every_kind_become_text(tmp_path: Path) -> None:
    values = main_entry_point(tmp_path).validate(
        {"alpha": 1, "epochs": " 3 ", "data": tmp_path / "d", "flag": False},
        allow_undeclared=True,
    )
    assert (values["alpha"], values["epochs"], values["data"]) == ("1", " 3 ", str(tmp_path / "d"))
    assert values["flag"] == "False"  # str(), as MLflow


def test_parameter_checks_its_own_type_and_default() -> None:
    with pytest.raises(ConfigurationError, match="unknown type 'double'"):
        Parameter("a", "double")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="its default 'x' is not a float"):
        Parameter("a", "float", "x")


# -- rendering -----------------------------------------------------------------------------


def test_render_quotes_values_and_appends_extras(tmp_path: Path) -> None:
    line = main_entry_point(tmp_path).render(
        {"data": "my data", "tag": "a'b", "x y": "$z"}, allow_undeclared=True
    )
    assert line == (
        "python train.py --alpha 0.1 --epochs 10 --data 'my data' --tag 'a'\"'\"'b' --'x y' '$z'"
    )


def test_render_matches_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same line as MLflow's own (private) renderer, hostile values included."""
    from mlflow.projects import _project_spec

    monkeypatch.setenv("SHELL", "bash")
    root = make_project(tmp_path, FULL)
    (root / "train.py").write_text("")
    ours = load_project(root)
    theirs = _project_spec.load_project(str(root))
    for value in HOSTILE:
        params = {"data": value, "tag": value, "extra": value, "x y": value}
        expected = theirs.get_entry_point("main").compute_command(params, None)
        assert ours.entry_point("main").render(params, allow_undeclared=True) == expected
        expected = theirs.get_entry_point("train.py").compute_command({"v": value}, None)
        assert ours.entry_point("train.py").render({"v": value}) == expected


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_reach_the_program_unchanged(value: str) -> None:
    entry_point = EntryPoint(
        "main", ARGV_COMMAND, {"a": Parameter("a"), "b": Parameter("b", default="d")}
    )
    params = {"a": value, "b": value, "extra": value, value or "e": "v"}
    line = entry_point.render(params, allow_undeclared=True)
    argv = run_argv(line)
    assert argv == [value, "--b", value, "--extra", value, f"--{value or 'e'}", "v"]


def test_hostile_values_do_not_run_commands(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    entry_point = EntryPoint("main", ARGV_COMMAND, {"a": Parameter("a"), "b": Parameter("b")})
    attacks = [f"; touch {marker}", f"$(touch {marker})", f"`touch {marker}`", f"\ntouch {marker}"]
    for attack in attacks:
        assert run_argv(entry_point.render({"a": attack, "b": f"'{attack}"})) == [
            attack,
            "--b",
            f"'{attack}",
        ]
    assert not marker.exists()


def test_project_is_frozen(tmp_path: Path) -> None:
    project = load_project(make_project(tmp_path, FULL))
    assert isinstance(project, MLProject)
    with pytest.raises(AttributeError):
        project.name = "other"  # type: ignore[misc]
