"""``python -m bench [--part N] [--quick] [--strict]``."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import FrameType

from bench.parts import PARTS
from bench.report import Options, render, write_json


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--part", type=int, action="append", choices=sorted(PARTS), help="run only part N"
    )
    parser.add_argument("--quick", action="store_true", help="fewer calls and repetitions")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs)")
    return parser.parse_args(argv)


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    # SystemExit unwinds every ``finally``: the servers a part started are stopped.
    raise SystemExit(128 + signum)


def run_part(number: int, options: Options) -> tuple[bool, int]:
    """Run one part; returns (completed, missed targets)."""
    part = PARTS[number]
    started = time.monotonic()
    print(f"\n### part {number} ({part.name}) …", flush=True)
    try:
        result = part.load()(options)
    except Exception:
        traceback.print_exc()
        print(f"part {number} failed", file=sys.stderr)
        return False, 0
    print(render(result))
    path = write_json(result, options)
    print(f"(part {number}: {time.monotonic() - started:.0f} s; results in {path})", flush=True)
    return True, sum(not check.passed for check in result.checks)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    workdir = Path(tempfile.mkdtemp(prefix="mantik-bench-"))
    failed, missed = 0, 0
    try:
        for number in args.part or sorted(PARTS):
            options = Options(quick=args.quick, workdir=workdir / f"part{number}")
            options.workdir.mkdir()
            completed, misses = run_part(number, options)
            failed += not completed
            missed += misses
    finally:
        if args.keep:
            print(f"scratch folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if failed:
        return 2
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
