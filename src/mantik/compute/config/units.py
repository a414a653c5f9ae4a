"""Units of a backend config: runtimes and memory sizes as users write them, parsed once
(``runtime`` in seconds, ``memory`` in bytes), and rendered as UNICORE wants them (also shown
by ``mantik config``)."""

from __future__ import annotations

import math
import re
from fractions import Fraction

from mantik._bounded import shown

KIB = 1024
MIB = 1024**2
GIB = 1024**3
TIB = 1024**4

_MINUTE, _HOUR, _DAY = 60, 3600, 86400
# No batch system grants more (SLURM's own ceiling is a year); a site may set less.
MAX_RUNTIME_SECONDS = 366 * _DAY


_NUM = r"[0-9]+(?:\.[0-9]+)?"
_DURATION = re.compile(
    rf"(?:(?P<d>{_NUM})\s*d(?:ays?)?)?\s*"
    rf"(?:(?P<h>{_NUM})\s*h(?:ours?|rs?)?)?\s*"
    rf"(?:(?P<m>{_NUM})\s*m(?:in(?:utes?|s)?)?)?\s*"
    rf"(?:(?P<s>{_NUM})\s*s(?:ec(?:onds?|s)?)?)?",
    re.IGNORECASE,
)
_DURATION_UNITS = {"d": _DAY, "h": _HOUR, "m": _MINUTE, "s": 1}
_CLOCK_PART = re.compile(r"[0-9]+")
# "GB" is taken as 1024**3 on purpose: on HPC systems (SLURM, UNICORE) G means GiB, and so
# do users who write "12GB" in a batch job.
_MEMORY = re.compile(rf"(?P<n>{_NUM})\s*(?:(?P<unit>[KMGTP])(?:i?B)?|B)?", re.IGNORECASE)
_MEMORY_UNITS = {"K": KIB, "M": MIB, "G": GIB, "T": TIB, "P": 1024**5}

_RUNTIME_FORMS = (
    'write seconds as a number (3600) or e.g. "30s", "30m", "12h", "1d", "1h30m", '
    'or SLURM\'s "MM:SS", "HH:MM:SS", "D-HH:MM:SS"'
)
_MEMORY_FORMS = (
    'write bytes as a number (1073741824) or e.g. "500M", "500MiB", "12G", "12GiB", '
    '"12GB", "1T", "2048K" (K/M/G/T are multiples of 1024)'
)


def _number(value: object, what: str, forms: str) -> Fraction | None:
    """A plain number (int or float, not bool) as a Fraction; None for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"cannot read {value!r} as {what}; {forms}")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot read {value!r} as {what}; {forms}")
        return Fraction(value)
    return None


def _positive(amount: Fraction, value: object, what: str) -> int:
    if amount <= 0:
        raise ValueError(f"{what} must be positive, got {value!r}")
    return math.ceil(amount)


def _clock_seconds(text: str) -> int | None:
    """SLURM's forms: MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS; None for anything else."""
    days, _, clock = text.rpartition("-")
    parts = clock.split(":")
    if not days and len(parts) == 1:
        return None  # a plain number or a suffixed duration
    numbers = [int(p) for p in [days or "0", *parts] if _CLOCK_PART.fullmatch(p)]
    if len(numbers) != 1 + len(parts) or len(parts) > 3 or any(n >= 60 for n in numbers[2:]):
        return None
    # With days, or with three parts, the first part is hours; "MM:SS" otherwise.
    weights = [_MINUTE, 1] if not days and len(parts) == 2 else [_HOUR, _MINUTE, 1]
    return numbers[0] * _DAY + sum(n * w for n, w in zip(numbers[1:], weights, strict=False))


def parse_runtime(value: object) -> int:
    """Seconds from ``3600``, ``"30m"``, ``"12h"``, ``"1d"``, ``"1h30m"``, ``"HH:MM:SS"``, …

    Fractions of a second are rounded up. Raises ``ValueError`` with the valid forms.
    """
    amount = _number(value, "a run time", _RUNTIME_FORMS)
    if amount is None:
        if not isinstance(value, str):
            raise ValueError(f"cannot read {value!r} as a run time; {_RUNTIME_FORMS}")
        text = value.strip()
        if _CLOCK_PART.fullmatch(text):
            amount = Fraction(int(text))
        elif (clock := _clock_seconds(text)) is not None:
            amount = Fraction(clock)
        else:
            match = _DURATION.fullmatch(text)
            if not text or match is None or not any(match.groupdict().values()):
                raise ValueError(f"cannot read {value!r} as a run time; {_RUNTIME_FORMS}")
            amount = sum(
                (Fraction(n) * _DURATION_UNITS[unit] for unit, n in match.groupdict().items() if n),
                Fraction(0),
            )
    seconds = _positive(amount, value, "Runtime")
    if seconds > MAX_RUNTIME_SECONDS:
        raise ValueError(
            f"Runtime {shown(value, 40)} is longer than any site grants: at most 366 days "
            f"({MAX_RUNTIME_SECONDS} seconds)"
        )
    return seconds


def parse_memory(value: object) -> int:
    """Bytes from ``1073741824``, ``"500M"``, ``"12G"``, ``"12GiB"``, ``"12GB"``, ``"1T"``, …

    K, M, G, T (with or without ``iB``/``B``) are powers of 1024. Raises ``ValueError``.
    """
    amount = _number(value, "a memory size", _MEMORY_FORMS)
    if amount is None:
        match = _MEMORY.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f"cannot read {value!r} as a memory size; {_MEMORY_FORMS}")
        unit = match["unit"]
        amount = Fraction(match["n"]) * (_MEMORY_UNITS[unit.upper()] if unit else 1)
    return _positive(amount, value, "Memory")


def _require_positive(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")


def unicore_runtime(seconds: int) -> str:
    """UNICORE ``Runtime``: an integer in the largest exact unit (``"12h"``, ``"90m"``)."""
    _require_positive(seconds, "seconds")
    for unit, size in (("d", _DAY), ("h", _HOUR), ("m", _MINUTE)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def unicore_memory(size: int) -> str:
    """UNICORE ``Memory``: ``"12G"``, else ``"M"``, else ``"K"`` (rounded up); never ``GiB``.

    UNICORE refuses ``"12GiB"`` and ``"12GB"``, which is what users (and the guide) write.
    """
    _require_positive(size, "size")
    for unit, factor in (("G", GIB), ("M", MIB)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{-(-size // KIB)}K"
