"""One module per kind of site; :func:`make_driver` picks it."""

from __future__ import annotations

from mantik.server.compute.drivers.base import Driver, DriverError, SiteCredentials, TrackedJob
from mantik.server.compute.sites import SiteConfig


def make_driver(site: SiteConfig) -> Driver:
    if site.driver == "local":
        from mantik.server.compute.drivers.local import LocalDriver

        return LocalDriver(site)
    if site.driver == "slurm":
        from mantik.server.compute.drivers.slurm import SlurmDriver

        return SlurmDriver(site)
    if site.driver == "unicore":
        from mantik.server.compute.drivers.unicore import UnicoreDriver

        return UnicoreDriver(site)
    raise DriverError(f"Site {site.name!r}: the {site.driver} driver is not available yet.")


__all__ = ["Driver", "DriverError", "SiteCredentials", "TrackedJob", "make_driver"]
