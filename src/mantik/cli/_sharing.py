"""What ``mantik experiments share``, ``models share`` and ``prompts share`` have in common."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from mantik.cli._output import out

if TYPE_CHECKING:
    from mantik.client._sharing import Kind


class Permission(StrEnum):
    READ = "READ"
    USE = "USE"
    EDIT = "EDIT"
    MANAGE = "MANAGE"


User = Annotated[str, typer.Argument(help="The user to share with.")]
PermissionOption = Annotated[
    Permission, typer.Option(case_sensitive=False, help="What the user may do.")
]


def share(kind: Kind, name: str, user: str, permission: Permission) -> None:
    from mantik.client._sharing import share as grant

    done = grant(kind, name, user, permission.value)
    replacing = ", replacing the earlier permission" if done.replaced else ""
    out.print(f"Shared {done.what} with {user!r} ({done.permission}{replacing}).", soft_wrap=True)
