"""mantik's own log lines (``mantik.*`` loggers: poller leases, hand-overs, sweeps) on the
worker's stderr, beside uvicorn's and MLflow's; without a handler Python drops INFO."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


def install(level: str = "info") -> None:
    logger = logging.getLogger("mantik")
    if any(getattr(h, "mantik", False) for h in logger.handlers):
        return  # a second app in the same process (tests)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT, datefmt="%Y/%m/%d %H:%M:%S"))
    handler.mantik = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
