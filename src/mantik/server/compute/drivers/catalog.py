"""The kinds of site mantik can drive, and what each can do: the only list of drivers.

A site's ``driver`` (in the sites file) names one of them. The platform asks a site's
capabilities, never its driver's name, when their behaviour differs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Capabilities:
    # The platform reads and writes the job folders itself (local disk or a filesystem it
    # shares with the nodes); else they lie on the site, reached through its API.
    shares_filesystem: bool
    # The site answers only with the user's credentials, which the platform never stores:
    # jobs report themselves, and status requests carry the credentials.
    needs_credentials: bool
    # The site cannot see the platform's image cache: the driver copies images to it.
    stages_images: bool
    # Users may name the site by its API URL (UnicoreApiUrl) instead of its name.
    named_by_url: bool
    # Jobs may run their entry point as one task per SLURM task ("Launcher": "srun").
    launches_tasks: bool


@dataclass(frozen=True)
class DriverKind:
    module: str  # holds ``cls``; imported when a site of this kind is first used
    cls: str
    capabilities: Capabilities


DRIVERS: dict[str, DriverKind] = {
    "local": DriverKind(
        "mantik.server.compute.drivers.local.driver",
        "LocalDriver",
        Capabilities(
            shares_filesystem=True,
            needs_credentials=False,
            stages_images=False,
            named_by_url=False,
            launches_tasks=False,
        ),
    ),
    "slurm": DriverKind(
        "mantik.server.compute.drivers.slurm.driver",
        "SlurmDriver",
        Capabilities(
            shares_filesystem=True,
            needs_credentials=False,
            stages_images=False,
            named_by_url=False,
            launches_tasks=True,
        ),
    ),
    # A site of driver slurm with ``ssh:`` (not a driver name of its own in the sites file).
    "slurm-ssh": DriverKind(
        "mantik.server.compute.drivers.slurm_ssh.driver",
        "SshSlurmDriver",
        Capabilities(
            shares_filesystem=False,
            needs_credentials=True,
            stages_images=True,
            named_by_url=False,
            launches_tasks=True,  # sbatch over SSH: srun in the batch step as anywhere
        ),
    ),
    "unicore": DriverKind(
        "mantik.server.compute.drivers.unicore.driver",
        "UnicoreDriver",
        Capabilities(
            shares_filesystem=False,
            needs_credentials=True,
            stages_images=True,
            named_by_url=True,
            launches_tasks=False,
        ),
    ),
}


# What a sites file may name as ``driver``.
SITE_DRIVERS = ("local", "slurm", "unicore")


def known_driver(name: str) -> str:
    """``name`` if it names a driver (validates the sites file)."""
    if name not in SITE_DRIVERS:
        raise ValueError(f"unknown driver {name!r}; the drivers are: {', '.join(SITE_DRIVERS)}")
    return name


def capabilities(name: str) -> Capabilities:
    return DRIVERS[name].capabilities
