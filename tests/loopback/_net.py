"""Small networking helpers for loopback test servers: free ports, waiting, a dead port."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The port is released before returning, so another process could take it in between;
    callers that start a server on it retry with a new port when binding fails.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def bound_socket() -> socket.socket:
    """Return a listening TCP socket on 127.0.0.1 with a free port (no race with others)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((LOOPBACK, 0))
    s.listen(128)
    return s


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``check`` until it returns True.

    Raises:
        TimeoutError: ``check`` stayed false for ``timeout`` seconds; names ``what``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


def http_ok(url: str) -> bool:
    """Return True when GET ``url`` answers 200 (False on any connection error)."""
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


class DownEndpoint:
    """A loopback URL where nothing listens: connecting to it is refused at once.

    The port stays bound (but not listening) by this object, so no other server can grab
    it while a test expects it to be down. Use :attr:`url`; call :meth:`close` at the end.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((LOOPBACK, 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://{LOOPBACK}:{self.port}"

    def close(self) -> None:
        """Release the port."""
        self._sock.close()

    def __repr__(self) -> str:
        return f"DownEndpoint({self.url!r})"
