"""The hostile-input corpus: what an attacker sends, and what the platform must answer.

Each case is one request; the test sends it to a real platform and expects a 4xx (or 507)
with a short message naming the problem in the user's terms.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.hostile_zips import (
    MLPROJECT,
    UTF8_FLAG,
    GiB,
    MiB,
    RawZip,
    deflate_bomb,
    deflated,
    project_zip,
)

LOCAL = json.dumps({"ComputeSite": "local"})


@dataclass
class Submit:
    """A multipart submission; ``archive`` is built lazily (some are megabytes)."""

    archive: Any  # bytes, or a callable returning bytes
    form: dict[str, str] = field(default_factory=lambda: {"backend_config": LOCAL})
    experiment: str | None = None  # None: the test user's experiment

    def zip_bytes(self) -> bytes:
        return self.archive() if callable(self.archive) else self.archive


@dataclass
class Call:
    """Any other request: JSON body (``json``), raw body (``content``) or form (``form``)."""

    method: str
    path: str
    json: Any = None
    content: bytes | None = None
    form: dict[str, str] | None = None
    signed_in: bool = False


@dataclass
class Case:
    id: str
    request: Submit | Call
    status: int | tuple[int, ...]
    says: str  # a fragment of the message (case-insensitive)


def _zip(**files: bytes | str) -> bytes:
    return project_zip({"MLproject": MLPROJECT, **files})


def _raw(*members: tuple[bytes | str, dict[str, Any]], project: bool = True) -> bytes:
    archive = RawZip()
    if project:
        archive.add("MLproject", MLPROJECT.encode())
    for name, options in members:
        archive.add(name, **options)
    return archive.build()


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _nested_objects(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


ALIAS_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]\n"
    for prev, cur in zip("abcdef", "bcdefg", strict=True)
)


def zip_cases() -> Iterator[Case]:
    refused = "The uploaded project was refused"
    yield Case("not-a-zip", Submit(b"hello, I am not a zip" * 10), 400, "not a readable zip")
    yield Case("empty-upload", Submit(b""), 400, "not a readable zip")
    yield Case("truncated-zip", Submit(_zip()[:-30]), 400, "not a readable zip")
    yield Case("end-record-only", Submit(RawZip().build()), 400, "MLproject")
    for label, name in [
        ("ff", b"\xff\xfe.txt"),
        ("lone-continuation", b"a\x80b"),
        ("truncated-sequence", b"caf\xc3"),
        ("overlong-slash", b"\xc0\xaf"),
        ("surrogate", b"\xed\xa0\x80.py"),
    ]:
        member = (name, {"data": b"x", "flags": UTF8_FLAG})
        yield Case(f"utf8-name-{label}", Submit(_raw(member)), 400, "not valid UTF-8")
    local_only = ("ok.txt", {"data": b"x", "local_name": b"\xff", "local_flags": UTF8_FLAG})
    yield Case("utf8-local-header", Submit(_raw(local_only)), 400, refused)
    for size in (256, 1000, 65_000):
        member = ("d/" + "a" * size, {"data": b"x"})
        yield Case(f"name-part-{size}-bytes", Submit(_raw(member)), 400, "bytes")
    yield Case("name-part-multibyte", Submit(_raw(("é" * 200, {"data": b"x"}))), 400, "255 bytes")
    for size in (4096, 20_000, 65_000):
        member = ("/".join(["abcdefghij"] * (size // 11 + 1)), {"data": b"x"})
        yield Case(f"path-{size}-bytes", Submit(_raw(member)), 400, "bytes long")
    for label, name, says in [
        ("absolute", "/tmp/mantik-hostile-escape", "absolute"),
        ("dotdot", "../../../tmp/mantik-hostile-escape", "leaves the extraction"),
        ("dotdot-inner", "a/../../mantik-hostile-escape", "leaves the extraction"),
        ("backslash", "..\\..\\mantik-hostile-escape", "backslash"),
        ("drive", "C:/windows/x", "drive letter"),
        ("nul", "MLproject\0../../x", "twice"),  # zipfile ends the name at the NUL
        ("newline", "a\nb", "control characters"),
        ("empty", "", "empty name"),
        ("dot-only", "./", "empty name"),
    ]:
        yield Case(f"name-{label}", Submit(_raw((name, {"data": b"x"}))), 400, says)
    for label, mode, says in [
        ("symlink", 0o120777, "symbolic link"),
        ("fifo", 0o010644, "FIFO"),
        ("char-device", 0o020644, "device"),
        ("block-device", 0o060644, "device"),
        ("socket", 0o140644, "socket"),
    ]:
        member = ("thing", {"data": b"/etc/passwd", "mode": mode})
        yield Case(f"member-{label}", Submit(_raw(member)), 400, says)
    yield Case(
        "setuid-is-harmless-but-encrypted-is-not",
        Submit(_raw(("secret", {"data": b"x", "flags": 0x1}))),
        400,
        "encrypted",
    )
    yield Case("method-99", Submit(_raw(("x", {"data": b"x", "method": 99}))), 400, "compression")
    yield Case("method-zstd", Submit(_raw(("x", {"data": b"x", "method": 93}))), 400, "compression")
    yield Case(
        "duplicate-member", Submit(_raw(("a", {"data": b"1"}), ("a", {"data": b"2"}))), 400, "twice"
    )
    yield Case(
        "file-then-child",
        Submit(_raw(("a", {"data": b"1"}), ("a/b", {"data": b"2"}))),
        400,
        "which is a file",
    )
    yield Case(
        "two-mlprojects",
        Submit(_raw(("mlproject", {"data": MLPROJECT.encode()}))),
        400,
        "keep only one",
    )
    for method, label in [
        (zipfile.ZIP_DEFLATED, "deflate"),
        (zipfile.ZIP_BZIP2, "bzip2"),
        (zipfile.ZIP_LZMA, "lzma"),
    ]:
        corrupt = RawZip().add("MLproject", MLPROJECT.encode())
        corrupt.packed("data.txt", b"some data " * 5000, method, cut=16)
        yield Case(f"corrupt-{label}", Submit(corrupt.build()), 400, "corrupt")
        corrupt_project = RawZip().packed("MLproject", MLPROJECT.encode() * 40, method, cut=8)
        yield Case(f"corrupt-{label}-mlproject", Submit(corrupt_project.build()), 400, "corrupt")
    short_lzma = ("data.txt", {"data": b"\x09\x04", "method": zipfile.ZIP_LZMA, "size": 10})
    yield Case("lzma-short-header", Submit(_raw(short_lzma)), 400, "corrupt")
    bad_crc = ("data.txt", {"data": b"hello", "crc": 1234})
    yield Case("bad-crc", Submit(_raw(bad_crc)), 400, "corrupt")
    longer = ("data.txt", {"data": deflated(bytes(MiB)), "method": 8, "size": 10, "crc": 0})
    yield Case("larger-than-declared", Submit(_raw(longer)), 400, refused)
    overlap = RawZip().add("MLproject", MLPROJECT.encode()).add("a", b"x" * 100)
    built = bytearray(overlap.build())
    yield Case("overlapping-members", Submit(_overlapping(bytes(built))), 400, "overlaps")
    yield Case("many-members", Submit(_many_members), 400, "members")
    yield Case("deflate-bomb-10GiB", Submit(deflate_bomb), 400, "more than")
    yield Case(
        "deflate-bomb-lying-sizes",
        Submit(lambda: deflate_bomb(2 * GiB, 2, declared=MiB)),
        400,
        refused,
    )
    yield Case("no-mlproject-main", Submit(project_zip({"x.txt": "x"})), 400, "entry point 'main'")
    yield Case(
        "unknown-entry-point",
        Submit(_zip(), {"backend_config": LOCAL, "entry_point": "nope"}),
        400,
        "entry point 'nope'",
    )
    yield Case(
        "entry-point-escapes",
        Submit(_zip(), {"backend_config": LOCAL, "entry_point": "../../../etc/x.sh"}),
        400,
        "entry point",
    )
    yield Case(
        "entry-point-nul",
        Submit(_zip(), {"backend_config": LOCAL, "entry_point": "ma\0in"}),
        400,
        "entry point",
    )
    yield Case("mlproject-directory", Submit(project_zip({"MLproject/x": "x"})), 400, "entry point")
    yield Case(
        "mlproject-not-utf8", Submit(project_zip({"MLproject": b"name: \xff\xfe"})), 400, "UTF-8"
    )
    yield Case(
        "mlproject-huge",
        Submit(lambda: project_zip({"MLproject": "# " + "x" * (3 * MiB)})),
        400,
        "MLproject",
    )
    yield Case(
        "experiment-nul",
        Submit(_zip(), experiment="1\0"),
        (400, 404, 422),
        "experiment",
    )
    yield Case(
        "experiment-huge", Submit(_zip(), experiment="9" * 5000), (400, 404, 422), "experiment"
    )


def _overlapping(archive: bytes) -> bytes:
    # Point the second member's central entry at the first member's local header.
    at = archive.rfind(b"PK\x01\x02")
    offset_at = at + 42
    return archive[:offset_at] + (0).to_bytes(4, "little") + archive[offset_at + 4 :]


def _many_members() -> bytes:
    archive = RawZip().add("MLproject", MLPROJECT.encode())
    for i in range(20_001):
        archive.add(f"f{i}", b"")
    return archive.build()


def _config_zip(name: str, text: str | bytes) -> Submit:
    return Submit(_zip(**{name: text}), {"unicore_backend_config_path": name})


def config_cases() -> Iterator[Case]:
    inline: list[tuple[str, str, str]] = [
        ("not-json", "{nope", "not valid JSON"),
        ("deep-list", '{"Modules": ' + _nested(100_000) + "}", "nested"),
        ("deep-objects", '{"Environment": ' + _nested_objects(50_000) + "}", "nested"),
        ("deep-moderate", '{"Environment": ' + _nested_objects(500) + "}", "nested"),
        ("nul-env-value", '{"ComputeSite": "local", "Environment": {"A": "x\\u0000"}}', "NUL"),
        (
            "nul-env-name",
            '{"ComputeSite": "local", "Environment": {"A\\u0000": "x"}}',
            "Environment",
        ),
        ("nul-site", '{"ComputeSite": "lo\\u0000cal"}', "ComputeSite"),
        ("nul-pre-run", '{"ComputeSite": "local", "PreRunCommands": ["a\\u0000"]}', "NUL"),
        ("unknown-site-huge", json.dumps({"ComputeSite": "s" * 100_000}), "ComputeSite"),
        ("url-huge", json.dumps({"UnicoreApiUrl": "https://x/" + "a" * 100_000}), "UnicoreApiUrl"),
        ("url-not-allowed", json.dumps({"UnicoreApiUrl": "http://169.254.169.254/"}), "may use"),
        ("image-huge", json.dumps({"SingularityImage": "/" + "i" * 200_000}), "SingularityImage"),
        ("runtime-huge", json.dumps({"Resources": {"Runtime": "9" * 100_000}}), "Runtime"),
        ("memory-huge", json.dumps({"Resources": {"Memory": "x" * 100_000}}), "Memory"),
        ("nodes-huge-number", '{"Resources": {"Nodes": 1' + "0" * 4000 + "}}", "Nodes"),
        ("nodes-bool", '{"Resources": {"Nodes": true}}', "Nodes"),
        ("nodes-float", '{"Resources": {"Nodes": 1.5}}', "Nodes"),
        ("nodes-nan", '{"Resources": {"Nodes": NaN}}', "Nodes"),
        ("cpus-negative", '{"Resources": {"CPUs": -1}}', "CPUs"),
        ("unknown-keys-many", json.dumps({f"Key{i}": i for i in range(5000)}), "Unknown key"),
        ("unknown-key-huge", json.dumps({"K" * 100_000: 1}), "Unknown key"),
        ("tracking-list", json.dumps({"Tracking": ["x" * 100] * 1000}), "Tracking"),
        ("modules-spaces-huge", json.dumps({"Modules": ["a b" * 50_000]}), "Modules"),
        ("duplicate-keys", '{"ComputeSite": "local", "ComputeSite": "x"}', "twice"),
        ("launcher-on-local", '{"ComputeSite": "local", "Launcher": "srun"}', "Launcher"),
    ]
    for label, text, says in inline:
        yield Case(f"inline-config-{label}", Submit(_zip(), {"backend_config": text}), 400, says)
    yield Case("inline-config-array", Submit(_zip(), {"backend_config": "[1]"}), 400, "JSON object")
    bomb = ALIAS_BOMB.replace("a: &a", "_a: &a")
    files: list[tuple[str, str, str | bytes, str]] = [
        ("yaml-alias-bomb-runtime", "c.yaml", bomb + "Resources: {Runtime: *g}\n", "Runtime"),
        ("yaml-alias-bomb-memory", "c.yaml", bomb + "Resources: {Memory: *g}\n", "Memory"),
        ("yaml-alias-bomb-tracking", "c.yaml", bomb + "Tracking: *g\n", "Tracking"),
        ("yaml-deep-flow", "c.yaml", "Modules: " + _nested(100_000), "nested"),
        ("yaml-deep-block", "c.yaml", "".join(" " * i + "a:\n" for i in range(1200)), "nested"),
        ("yaml-python-tag", "c.yaml", "x: !!python/object/apply:os.system ['id']", "YAML"),
        ("yaml-nul", "c.yaml", "ComputeSite: lo\0cal", "YAML"),
        ("yaml-not-utf8", "c.yaml", b"ComputeSite: \xff\xfe", "UTF-8"),
        ("json-deep", "c.json", '{"Modules": ' + _nested(100_000) + "}", "nested"),
        ("json-empty", "c.json", "", "empty"),
        ("json-bom-array", "c.json", "\ufeff[]", "mapping"),
    ]
    for label, name, text, says in files:
        yield Case(f"file-config-{label}", _config_zip(name, text), 400, says)
    for label, path, says in [
        ("missing", "nope.json", "does not exist"),
        ("etc-passwd", "/etc/passwd", "outside"),
        ("dotdot", "../../../../etc/passwd", "outside"),
        ("nul", "c\0.json", "backend config"),
        ("huge", "c" * 4000 + ".json", "backend config"),
        ("directory", "sub", "directory"),
        ("mlproject-as-config", "MLproject", "backend config"),
    ]:
        archive = _zip(**{"sub/x": "x"})
        submit = Submit(archive, {"unicore_backend_config_path": path})
        yield Case(f"config-path-{label}", submit, 400, says)
    yield Case("no-config", Submit(_zip(), {}), 400, "No backend configuration")


def mlproject_cases() -> Iterator[Case]:
    bomb = ALIAS_BOMB
    projects: list[tuple[str, str | bytes, str]] = [
        ("alias-bomb-name", bomb + "name: *g\n", "name"),
        ("alias-bomb-parameter", bomb + _main("parameters: {p: *g}"), "parameter"),
        ("alias-bomb-type", bomb + _main("parameters: {p: {type: *g}}"), "type"),
        ("alias-bomb-default", bomb + _main("parameters: {p: {default: *g}}"), "default"),
        ("alias-bomb-entry-name", bomb + "entry_points: {*g : {command: x}}\n", "YAML"),
        ("alias-bomb-docker", bomb + "docker_env: {image: *g}\n" + _main(""), "docker_env"),
        ("deep-flow", "entry_points: " + _nested(100_000), "nested"),
        ("deep-block", "".join(" " * i + "a:\n" for i in range(1200)), "nested"),
        ("python-tag", "name: !!python/object/apply:os.system ['id']\n", "YAML"),
        ("not-mapping", "- a\n- b\n", "mapping"),
        ("nul-char", "name: a\0b\n", "YAML"),
        ("unknown-keys-many", _main(", ".join(f"k{i}: 1" for i in range(3000))), "unknown key"),
        ("unknown-type-huge", _main("parameters: {p: " + "t" * 100_000 + "}"), "unknown type"),
        ("command-not-string", "entry_points: {main: {command: [1, 2]}}\n", "command"),
        ("command-bad-brace", "entry_points: {main: {command: 'echo {'}}\n", "command"),
        ("command-undeclared", "entry_points: {main: {command: 'echo {x}'}}\n", "command"),
        ("env-file-outside", "python_env: ../../etc/passwd\n" + _main(""), "outside"),
        ("env-file-missing", "python_env: nope.yaml\n" + _main(""), "not found"),
        ("two-envs", "python_env: a\nconda_env: b\n" + _main(""), "only one"),
        ("databricks", "databricks_spark_job: {}\n" + _main(""), "databricks"),
    ]
    for label, text, says in projects:
        yield Case(f"mlproject-{label}", Submit(project_zip({"MLproject": text})), 400, says)


def _main(extra: str) -> str:
    more = f", {extra}" if extra else ""
    return "entry_points: {main: {command: 'true'" + more + "}}\n"


def parameter_cases() -> Iterator[Case]:
    mine = [
        ("not-json", "{", "not valid JSON"),
        ("array", "[1, 2]", "JSON object"),
        ("deep", '{"a": ' + _nested(100_000) + "}", "nested"),
        ("deep-objects", _nested_objects(100_000), "nested"),
    ]
    for label, raw, says in mine:
        submit = Submit(_zip(), {"backend_config": LOCAL, "mlflow_parameters": raw})
        yield Case(f"parameters-{label}", submit, 400, says)
    refused = [  # MLflow would refuse (or cut) these: refused before a run exists
        ("name-shell", {"$(id)": "1"}),
        ("name-newline", {"a\nb": "1"}),
        ("name-300", {"p" * 300: "1"}),
        ("value-nul", {"a": "x\0y"}),
        ("name-nul", {"a\0": "x"}),
        ("too-many", {f"p{i}": i for i in range(1500)}),
        ("value-huge", {"a": "v" * 100_000}),
    ]
    for label, parameters in refused:
        raw = json.dumps(parameters)
        submit = Submit(_zip(), {"backend_config": LOCAL, "mlflow_parameters": raw})
        yield Case(f"parameters-{label}", submit, 400, "parameter")


def identity_cases() -> Iterator[Case]:
    paths = {
        "create": ("/api/mantik/tokens/create", ("username", "password")),
        "refresh": ("/api/mantik/tokens/refresh", ("username", "refresh_token")),
        "revoke": ("/api/mantik/tokens/revoke", ("username", "refresh_token")),
        "password": ("/api/mantik/password", ("username", "password", "new_password")),
    }
    for route, (path, keys) in paths.items():
        good = {key: "Pw-something-1!" for key in keys}
        for key in keys:
            body = {**good, key: "al\u0000ice"}
            yield Case(f"identity-{route}-nul-{key}", Call("POST", path, json=body), 422, "NUL")
        yield Case(
            f"identity-{route}-deep",
            Call("POST", path, content=_nested(20_000).encode()),
            (400, 422),
            "",
        )
        yield Case(
            f"identity-{route}-not-utf8",
            Call("POST", path, content=b'{"username": "\xff\xfe"}'),
            (400, 422),
            "",
        )
        yield Case(
            f"identity-{route}-huge-username",
            Call("POST", path, json={**good, "username": "u" * 10_000}),
            422,
            "username",
        )
        yield Case(
            f"identity-{route}-wrong-types",
            Call("POST", path, json={key: [1] for key in keys}),
            422,
            "string",
        )
    yield Case(
        "login-page-nul",
        Call("POST", "/login", form={"username": "al\0ice", "password": "x", "next": "/"}),
        (400, 401, 422),
        "",
    )
    for label, path in [
        ("run-nul", "/compute-backend/runs/abc%00def"),
        ("run-huge", "/compute-backend/runs/" + "r" * 5000),
        ("logs-nul", "/compute-backend/runs/abc%00/logs"),
        ("list-nul-experiment", "/compute-backend/runs?experiment_id=1%00"),
        ("list-nul-state", "/compute-backend/runs?state=RUN%00NING"),
    ]:
        yield Case(f"compute-{label}", Call("GET", path, signed_in=True), (400, 404, 422), "")
    yield Case(
        "compute-cancel-nul",
        Call("POST", "/compute-backend/runs/abc%00/cancel", signed_in=True),
        (400, 404, 422),
        "",
    )


def all_cases() -> list[Any]:
    cases = [
        *zip_cases(),
        *config_cases(),
        *mlproject_cases(),
        *identity_cases(),
        *parameter_cases(),
    ]
    return [pytest.param(case, id=case.id) for case in cases]
