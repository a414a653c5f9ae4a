"""The registry of benchmark parts: adding a part is one line here plus its module.

A part is a module with ``run(options: Options) -> PartResult``. Modules are imported only
when their part runs, so one part's missing dependency does not break the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from bench.report import Options, PartResult

PartFunction = Callable[[Options], PartResult]


@dataclass(frozen=True)
class Part:
    number: int
    name: str
    target: str  # "module:function"

    def load(self) -> PartFunction:
        module_name, _, function_name = self.target.partition(":")
        function: PartFunction = getattr(importlib.import_module(module_name), function_name)
        return function


PARTS: dict[int, Part] = {
    part.number: part
    for part in (
        Part(1, "tracking", "bench.tracking:run"),
        Part(2, "compute", "bench.compute:run"),
        Part(3, "images", "bench.images:run"),
        Part(4, "offline", "bench.offline:run"),
        Part(5, "ssh", "bench.ssh:run"),
        Part(6, "load", "bench.load:run"),
    )
}
