"""One compute site as the platform admin declares it in the sites file (``MANTIK_SITES_FILE``,
YAML); :mod:`mantik.server.compute.sites` holds the configured ones."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from mantik.compute.config.fields import Runtime
from mantik.server.compute.drivers.catalog import Capabilities, capabilities, known_driver


class SshEndpoint(BaseModel):
    """A login node reached over SSH; its host key is pinned by the admin (no trust on
    first use): the ``ssh-keyscan``/``known_hosts`` form, ``<type> <base64>``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=22, ge=1, le=65535)
    host_key: str = Field(
        pattern=r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+$"
    )


# An OS account name as useradd accepts it.
_Account = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_.-]{0,31}$")]


class SiteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    driver: Annotated[str, AfterValidator(known_driver)]
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

    # Who jobs run as (mantik.server.compute.accounts.policy): "account" (each user's OS
    # account, by name or mapped in ``accounts``) or "platform" (the platform's own, for
    # admins and ``submitters``); unset: chosen by driver and whether the platform is root.
    run_as: Literal["account", "platform"] | None = None
    accounts: dict[str, _Account] = {}
    submitters: list[str] = []
    # SLURM through SSH to a login node, as each user's own login (work_root: a folder
    # there, relative to the user's home; default mantik-jobs).
    ssh: SshEndpoint | None = None
    # Folders put first on the jobs' PATH (e.g. a shared Python with MLflow); unset: the
    # platform's MANTIK_JOB_PATH.
    job_path: list[Path] | None = None
    # The longest Runtime a job may ask for here (e.g. the partition's MaxTime); a longer
    # one is refused before the run exists. Unset: 366 days, more than any site grants.
    max_runtime: Runtime | None = None

    @model_validator(mode="after")
    def _run_as_needs_a_shared_filesystem(self) -> SiteConfig:
        chosen = self.run_as or self.accounts or self.submitters
        if chosen and not self.capabilities.shares_filesystem:
            raise ValueError(
                f"site {self.name!r}: run_as, accounts and submitters apply to local and slurm "
                "sites on the platform's host; UNICORE and SSH sites run each job as the "
                "user's own login"
            )
        return self

    @model_validator(mode="after")
    def _ssh_is_for_slurm(self) -> SiteConfig:
        if self.ssh is not None and self.driver != "slurm":
            raise ValueError(f"site {self.name!r}: ssh applies to slurm sites")
        return self

    @property
    def kind(self) -> str:
        """The catalog entry that drives this site (SLURM over SSH is a kind of its own)."""
        return "slurm-ssh" if self.ssh is not None else self.driver

    @property
    def capabilities(self) -> Capabilities:
        return capabilities(self.kind)


class SitesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sites: list[SiteConfig] = []
