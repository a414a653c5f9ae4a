"""Turning errors into one clear line on stderr."""

from __future__ import annotations

from typing import NoReturn

from rich.console import Console

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


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
