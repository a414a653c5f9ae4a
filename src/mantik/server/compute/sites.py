"""The compute sites the platform admin allows: ``local`` always, ``slurm`` when sbatch is
here, and whatever the sites file (``MANTIK_SITES_FILE``) declares; each with its driver."""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import yaml

from mantik.server.compute.drivers.base import Driver
from mantik.server.compute.drivers.catalog import DRIVERS
from mantik.server.compute.drivers.site_config import SiteConfig, SitesFile
from mantik.server.settings import ServerSettings


class Sites(Mapping[str, SiteConfig]):
    """The configured sites by name, and one driver per site (made when first used)."""

    def __init__(self, settings: ServerSettings, sites: Mapping[str, SiteConfig]) -> None:
        self.settings = settings
        self._sites = dict(sites)
        self._drivers: dict[str, Driver] = {}

    @classmethod
    def configured(cls, settings: ServerSettings) -> Sites:
        sites = {"local": SiteConfig(name="local", driver="local")}
        if shutil.which("sbatch") is not None:
            sites["slurm"] = SiteConfig(name="slurm", driver="slurm")
        if settings.sites_file is not None:
            data = yaml.safe_load(settings.sites_file.read_text()) or {}
            for site in SitesFile.model_validate(data).sites:
                sites[site.name] = site
        return cls(settings, sites)

    def __getitem__(self, name: str) -> SiteConfig:
        return self._sites[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._sites)

    def __len__(self) -> int:
        return len(self._sites)

    def driver(self, name: str) -> Driver:
        if name not in self._drivers:
            site = self._sites[name]
            kind = DRIVERS[site.kind]
            cls: type[Driver] = getattr(importlib.import_module(kind.module), kind.cls)
            self._drivers[name] = cls(site)
        return self._drivers[name]

    def named_by_url(self) -> list[SiteConfig]:
        """The sites users may name by their API URL (UnicoreApiUrl)."""
        return [site for site in self._sites.values() if site.capabilities.named_by_url]

    def work_root(self, site: SiteConfig) -> Path:
        """Where the site's job folders live: never in the data dir, which jobs cannot enter."""
        return site.work_root or (self.settings.resolved_jobs_dir / site.name)

    def image_cache_dir(self, site: SiteConfig) -> Path:
        """The site's image cache. Sites that cannot see it get images with each job (the
        cache lies on the platform); the others run the cached file in place."""
        if site.image_cache is not None:
            return site.image_cache
        if not site.capabilities.stages_images:  # jobs read it: next to their folders
            return self.work_root(site) / ".images"  # run ids are hex: no job is called that
        return self.settings.data_dir / "images" / site.name
