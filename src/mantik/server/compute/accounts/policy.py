"""Who a user's job on a site runs as (the site's ``run_as`` in the sites file).

- ``account``: the OS account of the user's name, or the one the site maps it to
  (``accounts: {alice: asmith}``); a user without one is refused.
- ``platform``: the platform's own account; only admins and the site's ``submitters``.
- not set: ``platform`` where the platform cannot switch identity (not root). As root,
  ``account`` for SLURM (which needs real accounts), and for ``local`` the same-name account
  or else a uid of the user's own from MANTIK_JOB_UID_RANGE, as systemd's DynamicUser does.

Never root, never the platform's own user under another mode, never two users on one uid.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from mantik.server.compute.accounts.identity import JobIdentity
from mantik.server.compute.errors import NotAJobAccount, SiteFailed
from mantik.server.db import Database
from mantik.server.models import JobUid

Mode = Literal["account", "platform", "own-uid"]


class SiteRules(Protocol):
    """What the policy reads of a site (a SiteConfig of the sites file)."""

    @property
    def name(self) -> str: ...
    @property
    def driver(self) -> str: ...
    @property
    def run_as(self) -> Literal["account", "platform"] | None: ...
    @property
    def accounts(self) -> Mapping[str, str]: ...
    @property
    def submitters(self) -> Sequence[str]: ...


def mode_of(site: SiteRules, *, root: bool | None = None) -> Mode:
    root = os.geteuid() == 0 if root is None else root
    if site.run_as is not None:
        return site.run_as
    if not root:
        return "platform"
    return "own-uid" if site.driver == "local" else "account"


class RunAs:
    def __init__(self, db: Database, uids: range) -> None:
        self.db = db
        self.uids = uids

    def identity(self, site: SiteRules, username: str, *, is_admin: bool) -> JobIdentity:
        """The identity ``username``'s jobs on ``site`` run as, or NotAJobAccount."""
        mode = mode_of(site)
        if mode == "platform":
            if is_admin or username in site.submitters:
                return JobIdentity.platform()
            raise NotAJobAccount(
                f"Site {site.name!r} runs jobs as the platform's own account, so only admins "
                "and the users the site lists may submit there. Ask the platform admin to add "
                f"you to `submitters` of site {site.name!r} in the sites file."
            )
        account = site.accounts.get(username, username)
        identity = JobIdentity.of_account(account)
        if identity is None and mode == "own-uid" and username not in site.accounts:
            identity = self._own_uid(username)
        if identity is None:
            raise NotAJobAccount(
                f"You have no OS account on site {site.name!r} (the platform looked for "
                f"{account!r}). The platform admin maps platform users to accounts under "
                f"`accounts:` of site {site.name!r} in the sites file, e.g. "
                f"`accounts: {{{username}: <account>}}`."
            )
        if identity.uid == 0 or identity.is_platform:
            raise NotAJobAccount(
                f"Site {site.name!r} maps you to account {identity.login!r}, which is "
                "root or the platform's own; jobs never run as either. Ask the platform admin."
            )
        return identity

    def _own_uid(self, username: str) -> JobIdentity:
        """The user's uid from the reserved range, allocated once (kept in the database)."""
        for _ in range(5):
            with self.db.session() as session:
                known = session.get(JobUid, username)
                if known is not None:
                    return JobIdentity(int(known.uid), int(known.uid))
                highest = session.scalar(select(func.max(JobUid.uid)))
            uid = self._next_free(int(highest) + 1 if highest is not None else self.uids.start)
            try:
                with self.db.session() as session:
                    session.add(JobUid(username=username, uid=uid))
            except IntegrityError:  # another worker took this uid or this user: look again
                continue
        raise SiteFailed("could not allocate a uid for the job; try again")

    def _next_free(self, start: int) -> int:
        for uid in range(max(start, self.uids.start), self.uids.stop):
            try:
                pwd.getpwuid(uid)
            except KeyError:
                return uid
        raise SiteFailed(
            "the uid range for jobs (MANTIK_JOB_UID_RANGE) is used up; the admin widens it"
        )
