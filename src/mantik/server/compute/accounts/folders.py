"""Job folders that belong to the job's account.

The platform builds a job folder in its private staging area, then installs it under the
site's work root as the account: as root by moving and handing it over (``lchown``), else
by unpacking it through ``sudo -u ACCOUNT tar``. The work root is the platform's and lists
nothing to accounts: 0711 as root (accounts pass through to their own folder); 3733 under
sudo (accounts create their folder, sticky: nobody removes another's; setgid: everything
inside is in the platform's group). A job folder is 0700 as root; under sudo it is 0750 in
the platform's group, which is how a platform that is not root reads logs, exit codes and
offline snapshots (the wrapper's umask 027 keeps the group's read).
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

from mantik.server.compute.accounts.identity import JobIdentity, command_as, switch_refused
from mantik.server.compute.errors import SiteFailed
from mantik.server.compute.job_folder import TOKEN


def _through_group() -> bool:
    return os.geteuid() != 0


def prepare_root(root: Path, identity: JobIdentity) -> None:
    """Create the site's work root so that ``identity`` can reach its folder inside."""
    for folder in [*reversed(root.parents), root]:
        if not folder.exists():
            folder.mkdir(exist_ok=True)
            folder.chmod(0o711)  # not the umask's: accounts pass through
    if identity.is_platform:
        return
    mode = 0o3733 if _through_group() else 0o711
    if stat.S_IMODE(root.stat().st_mode) != mode:
        root.chmod(mode)
    blocked = unreachable_part(root, identity)
    if blocked is not None:
        raise SiteFailed(
            f"Job folders lie in {root}, which account {identity.login!r} cannot reach: "
            f"it may not pass through {blocked} (mode {stat.S_IMODE(blocked.stat().st_mode):04o}). "
            "The platform admin sets MANTIK_JOBS_DIR (or the site's work_root) to a folder "
            "every job account can pass through."
        )


def unreachable_part(path: Path, identity: JobIdentity) -> Path | None:
    """The first folder on the way to ``path`` that ``identity`` may not pass, if any."""
    for folder in [*reversed(path.parents), path]:
        info = folder.stat()
        if info.st_uid == identity.uid:
            bit = stat.S_IXUSR
        elif info.st_gid == identity.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return folder
    return None


def install(staging: Path, workdir: Path, identity: JobIdentity) -> None:
    """Make the folder ``staging`` the job folder ``workdir``, owned by ``identity``."""
    if identity.is_platform or not _through_group():
        shutil.move(str(staging), workdir)
        if not identity.is_platform:
            for folder, dirs, files in os.walk(workdir, followlinks=False):
                for name in [".", *dirs, *files]:
                    os.lchown(os.path.join(folder, name), identity.uid, identity.gid)
        workdir.chmod(0o700)
        return
    _run(identity, ["mkdir", "-m", "0750", "--", str(workdir)])
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for path in sorted(staging.iterdir()):
            tar.add(path, arcname=path.name, filter=_readable_by_the_group)
    _run(
        identity,
        ["tar", "-x", "--no-same-owner", "-f", "-", "-C", str(workdir)],
        archive.getvalue(),
    )


def _readable_by_the_group(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """The platform (the group) reads and enters everything but the token (0600)."""
    if member.isdir():
        member.mode = 0o750
    elif member.mode & 0o077 == 0 and not member.name.endswith(f"/{TOKEN}"):
        member.mode |= 0o040 | (0o010 if member.mode & 0o100 else 0)
    return member


def remove(workdir: Path, identity: JobIdentity) -> None:
    """Remove a job folder (after a failed hand-over); absent is fine."""
    if identity.is_platform or not _through_group():
        shutil.rmtree(workdir, ignore_errors=True)
    elif workdir.exists():
        _run(identity, ["rm", "-rf", "--", str(workdir)])


def _run(identity: JobIdentity, argv: list[str], data: bytes | None = None) -> None:
    result = subprocess.run(
        command_as(identity, argv),
        input=data,
        capture_output=True,
        timeout=300,
        env=identity.environment(),
        umask=0o027,  # sudo's is the union with this: the platform's group reads
    )
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace")
        raise switch_refused(stderr, identity) or SiteFailed(
            f"Could not prepare the job folder as {identity.login!r}: {stderr.strip()[:500]}"
        )
