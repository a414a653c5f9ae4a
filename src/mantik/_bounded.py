"""Keeping what users send in bounds: values quoted in messages are cut short, and nested
data (JSON, YAML) has a depth limit.

A 276-byte YAML alias bomb expands to tens of megabytes when printed, and a deeply nested
document overflows Python's stack; both must end as short, clear messages.
"""

from __future__ import annotations

import reprlib
from typing import Final

MAX_SHOWN: Final = 200  # characters of a user's value a message quotes
# Backend configs and MLprojects are 3 or 4 levels deep; parameters are flat.
MAX_DEPTH: Final = 32

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6
_REPR.maxstring = _REPR.maxother = MAX_SHOWN
_REPR.maxlong = 40


def shown(value: object, limit: int = MAX_SHOWN) -> str:
    """``value`` quoted for a message, at most about ``limit`` characters, with bounded work
    whatever its size (reprlib looks at a few items of each level only)."""
    text = repr(value[: limit + 1]) if isinstance(value, str) else _REPR.repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def too_deep(data: object, limit: int = MAX_DEPTH) -> bool:
    """Whether lists and mappings in ``data`` nest more than ``limit`` levels. Shared
    objects (YAML aliases) are walked again only when reached deeper than before."""
    deepest: dict[int, int] = {}
    stack: list[tuple[object, int]] = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list | tuple):
            continue
        if depth >= limit:
            return True
        if deepest.get(id(item), -1) >= depth:
            continue
        deepest[id(item)] = depth
        children = list(item.keys()) + list(item.values()) if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)
    return False


def nesting_message(what: str, limit: int = MAX_DEPTH) -> str:
    return f"{what} is nested too deeply (more than {limit} levels of lists or mappings)"
