"""`make bench` imports mantik lazily, inside functions; a rename must not break it unseen."""

import ast
import importlib
from pathlib import Path

BENCH = Path(__file__).parents[1] / "bench"


def _unresolved(source: str) -> list[str]:
    missing = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
            continue
        if not node.module.startswith(("mantik", "bench")):
            continue
        try:
            module = importlib.import_module(node.module)
        except ImportError:
            missing.append(node.module)
            continue
        for alias in node.names:
            if hasattr(module, alias.name):
                continue
            try:
                importlib.import_module(f"{node.module}.{alias.name}")
            except ImportError:
                missing.append(f"{node.module}.{alias.name}")
    return missing


def test_every_mantik_import_in_the_benchmarks_resolves() -> None:
    files = sorted(BENCH.glob("*.py"))
    assert len(files) > 5
    missing = {p.name: m for p in files if (m := _unresolved(p.read_text()))}
    assert missing == {}


def test_the_check_sees_an_import_inside_a_function() -> None:
    source = "def f():\n    from mantik.server.config import ServerSettings\n"
    assert _unresolved(source) == ["mantik.server.config"]
