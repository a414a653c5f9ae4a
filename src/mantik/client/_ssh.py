"""An SSH site's login as the client sends it: with each request, over TLS, for it only."""

from __future__ import annotations

import base64
from pathlib import Path

from mantik._exceptions import ConfigurationError


def login_fields(user: str | None, key_file: str | None, password: str | None) -> dict[str, str]:
    """The login as submit form fields (the key file is read now, for this request)."""
    if not user:
        return {}
    fields = {"ssh_user": user}
    if key_file:
        try:
            fields["ssh_private_key"] = Path(key_file).expanduser().read_text()
        except OSError as exc:
            raise ConfigurationError(
                f"MANTIK_SSH_KEY_FILE {key_file!r} cannot be read: {exc.strerror}"
            ) from exc
    if password:
        fields["ssh_password"] = password
    return fields


def as_headers(fields: dict[str, str]) -> dict[str, str]:
    """The same as X-Ssh-User, X-Ssh-Password, X-Ssh-Private-Key (base64: a key has lines)."""
    headers = {}
    for name, value in fields.items():
        header = "X-Ssh-" + name.removeprefix("ssh_").replace("_", "-").title()
        headers[header] = base64.b64encode(value.encode()).decode() if "key" in name else value
    return headers
