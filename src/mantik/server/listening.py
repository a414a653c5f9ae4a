"""Whether the platform can listen where it is told to, asked before its slow start."""

from __future__ import annotations

import errno
import socket


def cannot_listen(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (in use, not this host's), or None.

    Binds as uvicorn will (``SO_REUSEADDR``), so a port left in TIME_WAIT counts as free.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"port {port} on {host} is in use (another platform or program listens "
                    "there): stop it, or choose another with --port"
                )
            reason = exc.strerror or str(exc)
            return f"cannot listen on port {port} of {host}: {reason} (check --host and --port)"
    return None
