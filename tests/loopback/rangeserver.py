"""An HTTP file server with Range support and switchable faults, for GDAL ``/vsicurl``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from .asgi import FaultInjector, RequestRecord, ThreadedServer


class RangeServer:
    """Serve local directories over HTTP on 127.0.0.1 (uvicorn + starlette ``StaticFiles``).

    ``StaticFiles`` answers single and multi-range requests with 206, which is what GDAL
    needs to read COG windows over ``/vsicurl``. Faults (500s, cut bodies, delays) are
    switched on per test through :attr:`faults`.

    Args:
        mounts: URL prefix (no slashes, e.g. ``"senegal"``) -> directory to serve.

    Example:
        >>> with RangeServer({"data": tmp_path}) as srv:
        ...     srv.url_for("data", "a/b.tif")
        'http://127.0.0.1:40123/data/a/b.tif'
    """

    def __init__(self, mounts: Mapping[str, str | Path]) -> None:
        self.mounts = {k.strip("/"): Path(v) for k, v in mounts.items()}
        for prefix, root in self.mounts.items():
            if not root.is_dir():
                raise FileNotFoundError(f"range server mount {prefix!r}: {root} is not a dir")
        routes = [
            Mount(f"/{prefix}", app=StaticFiles(directory=root, follow_symlink=True), name=prefix)
            for prefix, root in self.mounts.items()
        ]
        self.faults = FaultInjector(Starlette(routes=routes))
        self._server = ThreadedServer(self.faults, name="range-server")

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (no trailing slash)."""
        return self._server.url

    def url_for(self, prefix: str, relpath: str | Path = "") -> str:
        """URL of ``relpath`` under the mount ``prefix``."""
        if prefix not in self.mounts:
            raise KeyError(f"no mount {prefix!r}; mounts are {sorted(self.mounts)}")
        rel = str(relpath).lstrip("/")
        return f"{self.url}/{prefix}/{rel}" if rel else f"{self.url}/{prefix}"

    @property
    def requests(self) -> list[RequestRecord]:
        """Requests seen since the last ``faults.reset()``."""
        return self.faults.requests

    def start(self) -> RangeServer:
        """Start serving in a background thread."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop the server."""
        self._server.stop()

    def __enter__(self) -> RangeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
