"""Real servers on 127.0.0.1 for tests: a STAC API (pgstac), a Range file server, faults.

- :class:`PgstacServer`: stac-fastapi-pgstac on a throw-away PostgreSQL + PostGIS.
- :class:`RangeServer`: uvicorn + starlette ``StaticFiles`` (HTTP Range, for GDAL /vsicurl),
  with a :class:`FaultInjector` (500s, bodies cut mid-way, slow responses).
- :class:`ReverseProxy` + :class:`FaultInjector` + :class:`ThreadedServer`: a flaky front for
  any server (e.g. the STAC API answers 500 for the first N requests, then recovers).
- :class:`DownEndpoint`: a URL where nothing listens.

The pytest fixtures built on these live in ``tests/conftest.py``.
"""

from ._net import DownEndpoint, free_port, wait_until
from .asgi import FaultInjector, InjectedDisconnect, RequestRecord, ReverseProxy, ThreadedServer
from .pgstac import PgstacServer, PostgresNotFound, find_pg_bin
from .rangeserver import RangeServer

__all__ = [
    "DownEndpoint",
    "FaultInjector",
    "InjectedDisconnect",
    "PgstacServer",
    "PostgresNotFound",
    "RangeServer",
    "RequestRecord",
    "ReverseProxy",
    "ThreadedServer",
    "find_pg_bin",
    "free_port",
    "wait_until",
]
