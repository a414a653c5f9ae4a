"""Turning errors into one clear line on stderr; data as JSON or for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from rich.console import Console

if TYPE_CHECKING:
    from rich.table import Table

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def emit(data: object, as_json: bool, human: Callable[[], str | Table]) -> None:
    """``data`` as JSON for scripts, else the text or table ``human()`` makes."""
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        sys.stdout.flush()
        return
    shown = human()
    if isinstance(shown, str):
        out.print(shown, soft_wrap=True, markup=False)
    else:
        out.print(shown)


def fail(exc: BaseException | str, code: int = 1) -> NoReturn:
    from rich.markup import escape

    message = exc if isinstance(exc, str) else _describe(exc)
    err.print(f"[bold red]Error:[/] {escape(message)}", soft_wrap=True)
    raise SystemExit(code)


def _describe(exc: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" if e["loc"] else str(e["msg"])
            for e in exc.errors()
        )
    text = str(exc) or type(exc).__name__
    from mantik._exceptions import MantikError

    return text if isinstance(exc, MantikError) else f"{text} ({type(exc).__name__})"
