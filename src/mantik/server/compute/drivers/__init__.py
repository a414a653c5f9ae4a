"""One module per kind of site; :func:`make_driver` picks it."""

from __future__ import annotations

from mantik.server.compute.drivers.base import Driver, DriverError, TrackedJob
from mantik.server.compute.sites import SiteConfig


def make_driver(site: SiteConfig) -> Driver:
    if site.driver == "local":
        from mantik.server.compute.drivers.local import LocalDriver

        return LocalDriver(site)
    if site.driver == "slurm":
        from mantik.server.compute.drivers.slurm import SlurmDriver

        return SlurmDriver(site)
    raise DriverError(f"Site {site.name!r}: the {site.driver} driver is not available yet.")


__all__ = ["Driver", "DriverError", "TrackedJob", "make_driver"]
