"""ASGI building blocks for loopback servers: fault injection, a reverse proxy, a threaded uvicorn.

:class:`FaultInjector` wraps any ASGI app (a StaticFiles range server, a reverse proxy in
front of the pgstac API) and, when armed by a test, answers with an HTTP error, cuts the
connection after a number of body bytes, or delays responses. Every request is logged so
tests can assert on what the client really sent (e.g. ``Range`` headers, retries).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass

import httpx
import uvicorn

from ._net import LOOPBACK, bound_socket, wait_until

Scope = dict
Message = dict


class InjectedDisconnect(Exception):  # noqa: N818 - reads better in server logs
    """Raised inside the ASGI app to make uvicorn drop the connection mid-body."""


class _HideInjectedDisconnect(logging.Filter):
    """Keep uvicorn from logging a traceback for a connection we cut on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, InjectedDisconnect)


logging.getLogger("uvicorn.error").addFilter(_HideInjectedDisconnect())


@dataclass
class RequestRecord:
    """One request seen by a :class:`FaultInjector`.

    Attributes:
        method: HTTP method.
        path: URL path (without query string).
        query: Raw query string.
        range: The ``Range`` request header, if any.
        status: Status code sent (None if the app never answered).
        fault: Injected fault: ``"error"``, ``"truncate"``, ``"slow"`` or None.
    """

    method: str
    path: str
    query: str
    range: str | None
    status: int | None = None
    fault: str | None = None


@dataclass
class _Armed:
    count: int
    value: float
    match: str | None


class FaultInjector:
    """ASGI middleware that injects HTTP faults on demand (thread-safe controls).

    Args:
        app: The wrapped ASGI app.

    Example:
        >>> faults.fail_next(2)                 # next 2 requests -> 500
        >>> faults.truncate_next(1, after_bytes=1000)  # next body cut after 1000 bytes
        >>> faults.slow(0.5)                    # every response delayed 0.5 s until reset()
        >>> faults.reset()
    """

    def __init__(self, app) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._fail: list[_Armed] = []
        self._truncate: list[_Armed] = []
        self._slow: list[_Armed] = []
        self._log: list[RequestRecord] = []

    # -- controls (called from test code, any thread) --------------------------------------
    def fail_next(self, n: int = 1, status: int = 500, match: str | None = None) -> None:
        """Answer the next ``n`` requests (whose path contains ``match``) with ``status``."""
        with self._lock:
            self._fail.append(_Armed(n, status, match))

    def truncate_next(self, n: int = 1, after_bytes: int = 100, match: str | None = None) -> None:
        """Drop the connection after ``after_bytes`` body bytes for the next ``n`` responses.

        Headers (including the full ``Content-Length``) are sent unchanged, so the client sees
        a short body: an incomplete read / "peer closed connection" error. A body not longer
        than ``after_bytes`` is cut before its last byte, so the response is always broken.
        """
        with self._lock:
            self._truncate.append(_Armed(n, after_bytes, match))

    def slow(self, seconds: float, n: int | None = None, match: str | None = None) -> None:
        """Delay the next ``n`` responses (all, until :meth:`reset`, if None) by ``seconds``."""
        with self._lock:
            self._slow.append(_Armed(-1 if n is None else n, seconds, match))

    def reset(self) -> None:
        """Disarm every fault and clear the request log."""
        with self._lock:
            self._fail.clear()
            self._truncate.clear()
            self._slow.clear()
            self._log.clear()

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the requests seen since the last :meth:`reset`."""
        with self._lock:
            return list(self._log)

    # -- ASGI ---------------------------------------------------------------------------------
    @staticmethod
    def _take(armed: list[_Armed], path: str) -> float | None:
        for a in armed:
            if a.count != 0 and (a.match is None or a.match in path):
                if a.count > 0:
                    a.count -= 1
                return a.value
        return None

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        record = RequestRecord(
            method=scope.get("method", ""),
            path=path,
            query=scope.get("query_string", b"").decode("latin-1"),
            range=headers.get("range"),
        )
        with self._lock:
            status = self._take(self._fail, path)
            cut = self._take(self._truncate, path) if status is None else None
            delay = self._take(self._slow, path)
            self._log.append(record)

        if delay:
            record.fault = "slow"
            await asyncio.sleep(delay)
        if status is not None:
            record.fault, record.status = "error", int(status)
            body = f"injected fault: HTTP {int(status)}\n".encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": int(status),
                    "headers": [
                        (b"content-type", b"text/plain"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return

        sent = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal sent
            if message["type"] == "http.response.start":
                record.status = message["status"]
            elif message["type"] == "http.response.body" and cut is not None:
                body = message.get("body", b"")
                limit = int(cut) - sent
                if len(body) > limit:
                    await send(
                        {"type": "http.response.body", "body": body[:limit], "more_body": True}
                    )
                    raise InjectedDisconnect(f"cut {path} after {int(cut)} body bytes")
                if not message.get("more_body", False) and len(body) > 0:
                    await send({"type": "http.response.body", "body": body[:-1], "more_body": True})
                    raise InjectedDisconnect(f"cut {path} before its last body byte")
                sent += len(body)
            await send(message)

        if cut is not None:
            record.fault = "truncate"
        await self.app(scope, receive, send_wrapper)


_HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"te", b"trailer"}


class ReverseProxy:
    """Minimal streaming HTTP reverse proxy (ASGI) to an upstream base URL.

    The ``Host`` header is passed through unchanged, so an upstream STAC API builds its
    links (``next`` pages, ``self``) with the proxy's address and clients keep talking to
    the proxy. Upstream connection errors become 502.

    Args:
        upstream: Base URL, e.g. ``http://127.0.0.1:8081``.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        url = self.upstream + scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP_BY_HOP]
        async with httpx.AsyncClient(timeout=60.0) as client:
            request = client.build_request(scope["method"], url, headers=headers, content=body)
            try:
                response = await client.send(request, stream=True)
            except httpx.TransportError as exc:
                msg = f"bad gateway: upstream {self.upstream} failed: {exc!r}\n".encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 502,
                        "headers": [(b"content-type", b"text/plain")],
                    }
                )
                await send({"type": "http.response.body", "body": msg})
                return
            try:
                out_headers = [
                    (k, v) for k, v in response.headers.raw if k.lower() not in _HOP_BY_HOP
                ]
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status_code,
                        "headers": out_headers,
                    }
                )
                async for chunk in response.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            finally:
                await response.aclose()


class ThreadedServer:
    """Run an ASGI app with uvicorn in a daemon thread on 127.0.0.1 and a free port.

    Args:
        app: The ASGI application.
        name: Used in error messages and the thread name.
    """

    def __init__(self, app, name: str = "asgi") -> None:
        self.app = app
        self.name = name
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:40123``."""
        if self.port is None:
            raise RuntimeError(f"{self.name} server is not started")
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 10.0) -> ThreadedServer:
        """Start serving; return once uvicorn accepts connections."""
        sock = bound_socket()
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            http="h11",
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=self.name, daemon=True
        )
        self._thread.start()
        server = self._server
        wait_until(lambda: server.started, timeout, f"{self.name} server on port {self.port}")
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit and wait (briefly) for the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
