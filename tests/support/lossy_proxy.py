"""A TCP proxy on loopback that loses the answer to chosen requests: the request reaches the
platform whole and is served, then the connection closes before the client reads a byte of
the answer — what a client sees when a balancer or network drops a connection mid-reply.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field


@dataclass
class LossyProxy:
    url: str
    losses_left: int  # answers still to lose
    marker: bytes  # a request whose bytes hold this loses its answer
    lost: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take_loss(self) -> bool:
        with self._lock:
            if self.losses_left <= 0:
                return False
            self.losses_left -= 1
            self.lost += 1
            return True


def _pump(
    proxy: LossyProxy, source: socket.socket, sink: socket.socket, armed: threading.Event
) -> None:
    """Client → platform: copy, and arm the loss when the marked request goes by."""
    tail = b""
    try:
        while chunk := source.recv(65536):
            window = tail + chunk
            if not armed.is_set() and proxy.marker in window and proxy.take_loss():
                armed.set()
            tail = window[-len(proxy.marker) :]
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        _close(sink)


def _answer(source: socket.socket, sink: socket.socket, armed: threading.Event) -> None:
    """Platform → client: copy, unless the request was marked: then the first bytes of its
    answer end both connections (the platform has served it; the client never hears)."""
    try:
        while chunk := source.recv(65536):
            if armed.is_set():
                break
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        _close(sink)
        _close(source)


def _close(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@contextmanager
def lossy_proxy(target_port: int, marker: bytes, losses: int = 1) -> Iterator[LossyProxy]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    proxy = LossyProxy(f"http://127.0.0.1:{port}", losses, marker)

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", target_port))
            armed = threading.Event()
            threading.Thread(
                target=_pump, args=(proxy, client, upstream, armed), daemon=True
            ).start()
            threading.Thread(target=_answer, args=(upstream, client, armed), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield proxy
    finally:
        listener.close()
