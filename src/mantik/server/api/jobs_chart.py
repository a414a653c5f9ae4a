"""A small inline SVG: the user's jobs per day over the last two weeks, by how they ended."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from html import escape

RUN_STATUSES = ("SCHEDULED", "RUNNING", "FINISHED", "FAILED", "KILLED")
_COLOURS = {
    "SCHEDULED": "#e6c84f",
    "RUNNING": "#4d8fe0",
    "FINISHED": "#3fa65a",
    "FAILED": "#d9534f",
    "KILLED": "#8e6cc4",
}
DAYS = 14
_WIDTH, _HEIGHT, _BOTTOM = 700, 110, 16


def per_day(jobs: list[tuple[datetime, str]], today: date) -> list[tuple[date, Counter[str]]]:
    """(submitted at, run status) → one count per status for each of the last :data:`DAYS`."""
    days = [today - timedelta(days=n) for n in range(DAYS - 1, -1, -1)]
    counts: dict[date, Counter[str]] = {day: Counter() for day in days}
    for submitted, status in jobs:
        if submitted.date() in counts:
            counts[submitted.date()][status] += 1
    return [(day, counts[day]) for day in days]


def chart(jobs: list[tuple[datetime, str]], today: date) -> str:
    """The SVG, or nothing when no job was submitted in the last :data:`DAYS` days."""
    days = per_day(jobs, today)
    most = max(sum(c.values()) for _, c in days)
    if most == 0:
        return ""
    slot = _WIDTH / DAYS
    scale = (_HEIGHT - _BOTTOM - 4) / most
    parts = []
    for i, (day, counts) in enumerate(days):
        x, top = i * slot + 4, float(_HEIGHT - _BOTTOM)
        for status in RUN_STATUSES:
            if not counts[status]:
                continue
            height = counts[status] * scale
            top -= height
            parts.append(
                f"<rect x={x:.1f} y={top:.1f} width={slot - 8:.1f} height={height:.1f} "
                f"fill='{_COLOURS[status]}'><title>{day:%d %b}: {counts[status]} "
                f"{status.lower()}</title></rect>"
            )
        parts.append(f"<text x={x:.1f} y={_HEIGHT - 3}>{day:%d %b}</text>")
    legend = " ".join(
        f"<span style='color:{_COLOURS[s]}'>■</span> {escape(s.lower())}" for s in RUN_STATUSES
    )
    return (
        f"<figure style='margin:0 0 1rem'><svg role=img aria-label='Jobs per day' "
        f"viewBox='0 0 {_WIDTH} {_HEIGHT}' width={_WIDTH} style='max-width:100%;height:auto'>"
        f"{''.join(parts)}</svg>"
        f"<figcaption class=hint>Jobs submitted per day, last {DAYS} days: {legend}"
        "</figcaption></figure>"
    )
