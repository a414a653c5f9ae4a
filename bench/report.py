"""What a part returns, and how results are printed and stored."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"
# A client subprocess reports its measurements as one stdout line: prefix + JSON object.
RESULT_PREFIX = "BENCH_RESULT "


@dataclass(frozen=True)
class Options:
    quick: bool
    workdir: Path  # scratch space of this run, removed afterwards


@dataclass(frozen=True)
class Check:
    """One target: ``value`` compared with ``target`` by ``op`` (``<=``, ``<``, ``>=``)."""

    name: str
    value: float | None  # None: could not be measured (counts as MISS)
    op: str
    target: float
    unit: str = ""

    @property
    def passed(self) -> bool:
        if self.value is None:
            return False
        compare = {"<=": float.__le__, "<": float.__lt__, ">=": float.__ge__, ">": float.__gt__}
        return compare[self.op](float(self.value), float(self.target))

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


@dataclass
class PartResult:
    number: int
    title: str
    header: list[str]
    rows: list[list[str]]
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def emit_result(result: dict[str, Any]) -> None:
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def parse_result(stdout: str) -> dict[str, Any] | None:
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    return None


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        parts = [first.ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def render(result: PartResult) -> str:
    out = [f"== Part {result.number}: {result.title} ==", format_table(result.header, result.rows)]
    if result.checks:
        rows = [
            [
                check.name,
                f"{fmt(check.value)}{check.unit}",
                f"{check.op} {check.target:g}{check.unit}",
                "PASS" if check.passed else "MISS",
            ]
            for check in result.checks
        ]
        out += ["", format_table(["target", "value", "target", "mark"], rows)]
    if result.notes:
        out += ["", *(f"* {note}" for note in result.notes)]
    return "\n".join(out)


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "mlflow": version("mlflow"),
        "kernel": platform.release(),
    }


def write_json(result: PartResult, options: Options) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"part{result.number}.json"
    document = {
        "part": result.number,
        "title": result.title,
        "mode": "quick" if options.quick else "default",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "table": {"header": result.header, "rows": result.rows},
        "checks": [check.as_json() for check in result.checks],
        "notes": result.notes,
        "data": result.data,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
