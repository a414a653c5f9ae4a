"""The catalog is the one list of drivers: each entry loads, and sites name only those."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mantik.server.compute.drivers.base import Driver
from mantik.server.compute.drivers.catalog import DRIVERS
from mantik.server.compute.drivers.site_config import SiteConfig
from mantik.server.compute.sites import Sites
from mantik.server.settings import ServerSettings

_SSH = {"host": "login.example", "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA"}


def _site(kind: str) -> SiteConfig:
    if kind == "slurm-ssh":  # a slurm site with ssh:
        return SiteConfig(name="a-slurm-ssh", driver="slurm", ssh=_SSH)  # type: ignore[arg-type]
    return SiteConfig(name=f"a-{kind}", driver=kind, url="https://site.example/rest")


@pytest.mark.parametrize("name", sorted(DRIVERS))
def test_every_driver_loads_for_its_site(name: str) -> None:
    site = _site(name)
    assert site.kind == name
    sites = Sites(ServerSettings(), {site.name: site})
    driver = sites.driver(site.name)
    assert isinstance(driver, Driver) and driver.site is site
    assert sites.driver(site.name) is driver  # one per site
    assert driver.needs_credentials == site.capabilities.needs_credentials


def test_an_unknown_driver_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValidationError, match="the drivers are: local, slurm, unicore"):
        SiteConfig(name="s", driver="pbs")


def test_only_sites_named_by_url_answer_to_one() -> None:
    sites = Sites(
        ServerSettings(),
        {
            "hpc": SiteConfig(name="hpc", driver="unicore", url="https://a.example"),
            "cluster": SiteConfig(name="cluster", driver="slurm", url="https://b.example"),
        },
    )
    assert [site.name for site in sites.named_by_url()] == ["hpc"]


def test_only_slurm_sites_launch_tasks() -> None:
    # "Launcher": "srun" is refused (400) on every site without the capability.
    launching = [name for name, kind in DRIVERS.items() if kind.capabilities.launches_tasks]
    assert launching == ["slurm", "slurm-ssh"]
