"""Compute sites the platform admin allows: ``local`` always, ``slurm`` when sbatch is here,
and whatever the sites file (``MANTIK_SITES_FILE``, YAML) declares."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from mantik.server.config import ServerSettings


class SiteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    driver: Literal["local", "slurm", "unicore"]
    # Where job folders live; for SLURM a filesystem the platform and the nodes share.
    work_root: Path | None = None
    # Where the site's Apptainer images are cached (one file per sha256); for SLURM a
    # filesystem the nodes see. Default: next to the job folders.
    image_cache: Path | None = None
    # The URL compute nodes use to reach the platform (default: the platform's base URL).
    tracking_uri: str | None = None
    # SLURM: default partition, extra sbatch arguments fixed by the admin.
    partition: str | None = None
    sbatch_args: list[str] = []
    # UNICORE: the REST base URL users name with UnicoreApiUrl.
    url: str | None = None
    ca_bundle: Path | None = None
    verify_tls: bool = True
    # UNICORE: a storage (e.g. SCRATCH) where each user's images are kept, one copy per
    # digest in mantik-images/, and linked into jobs. Unset: every job gets its own copy.
    image_storage: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SitesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sites: list[SiteConfig] = []


def configured_sites(settings: ServerSettings) -> dict[str, SiteConfig]:
    sites = {"local": SiteConfig(name="local", driver="local")}
    if shutil.which("sbatch") is not None:
        sites["slurm"] = SiteConfig(name="slurm", driver="slurm")
    if settings.sites_file is not None:
        data = yaml.safe_load(settings.sites_file.read_text()) or {}
        for site in SitesFile.model_validate(data).sites:
            sites[site.name] = site
    return sites


def work_root(settings: ServerSettings, site: SiteConfig) -> Path:
    return site.work_root or (settings.data_dir / "jobs" / site.name)


def image_cache_dir(settings: ServerSettings, site: SiteConfig) -> Path:
    """The site's image cache. UNICORE sites cache on the platform (images go to the site
    with each job); local and SLURM sites run the cached file in place."""
    if site.image_cache is not None:
        return site.image_cache
    if site.work_root is not None and site.driver != "unicore":
        return site.work_root / ".images"  # run ids are hex: no job folder is called that
    return settings.data_dir / "images" / site.name
