"""Which Apptainer image a job runs: a path on the site, a file uploaded with the project,
or an image from the site's cache (copied to the site by drivers that stage images)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from mantik.compute.config.model import BackendConfig
from mantik.compute.states import JobState
from mantik.server.compute.drivers.site_config import SiteConfig
from mantik.server.compute.errors import InvalidSubmission
from mantik.server.compute.images import ImageCache, check_digest
from mantik.server.compute.job_folder import IMAGE_DIGEST, STAGED_IMAGE, JobFolder
from mantik.server.compute.submission import inside
from mantik.server.db import Database
from mantik.server.models import ComputeJob


@dataclass(frozen=True)
class Image:
    """The image a job runs: its path on the site, and where it comes from."""

    path: str
    in_project: bool = False  # relative to the uploaded project (mantik 0.1.x clients)
    digest: str | None = None  # from the site's image cache
    stage_from: Path | None = None  # platform file the driver copies to the site


def choose_image(
    config: BackendConfig,
    project_dir: Path,
    site: SiteConfig,
    digest: str | None,
    cache: ImageCache,
) -> Image | None:
    if digest is not None:
        return _cached_image(config, site, digest, cache)
    if config.remote_image:
        # Only a site that shares the platform's filesystem can be checked from here.
        if site.capabilities.shares_filesystem and not Path(config.remote_image).is_file():
            raise InvalidSubmission(
                f"RemoteImage {config.remote_image!r} does not exist on site {site.name!r}. "
                "Copy the image there first, or set SingularityImage to a local image "
                "file to have it uploaded."
            )
        return Image(config.remote_image)
    if config.singularity_image:
        local = inside(project_dir, config.singularity_image, "SingularityImage")
        if not local.is_file():
            raise InvalidSubmission(
                f"SingularityImage {config.singularity_image!r} was not uploaded with the "
                "project. Put it in the project folder, or set RemoteImage to a path on "
                "the site."
            )
        return Image(str(local.relative_to(project_dir)), in_project=True)
    return None


def _cached_image(config: BackendConfig, site: SiteConfig, digest: str, cache: ImageCache) -> Image:
    check_digest(digest)
    if config.remote_image:
        raise InvalidSubmission(
            "image_digest and RemoteImage exclude each other: send only one of them."
        )
    path = cache.use(digest)
    if path is None:
        raise InvalidSubmission(
            f"The platform holds no image with sha256 {digest} for site {site.name!r}: "
            f"upload it first (PUT /compute-backend/images/{digest}?site={site.name}); "
            "mantik's client does this by itself."
        )
    if site.capabilities.stages_images:  # the site cannot see the cache: the driver copies it
        return Image(f"../{STAGED_IMAGE}", digest=digest, stage_from=path)
    return Image(str(path), digest=digest)


def images_in_use(db: Database, site: str) -> set[str]:
    """Digests of the cached images that unfinished jobs of ``site`` run."""
    waiting = [state.value for state in JobState if not state.terminal]
    with db.session() as session:
        folders = session.scalars(
            select(ComputeJob.workdir).where(ComputeJob.site == site, ComputeJob.state.in_(waiting))
        ).all()
    digests = set()
    for folder in folders:
        try:
            digests.add((JobFolder(Path(folder)).mantik / IMAGE_DIGEST).read_text().strip())
        except OSError:
            continue
    return digests
