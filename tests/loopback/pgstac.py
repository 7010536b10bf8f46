"""A real STAC API on loopback: stac-fastapi-pgstac on a throw-away PostgreSQL + PostGIS.

Start-up (about 2 s): ``initdb`` a fresh cluster in a private temporary directory, start it
with ``pg_ctl`` on 127.0.0.1 and a free port (fsync off), ``pypgstac`` migrate and load the
collections and items, then run ``uvicorn stac_fastapi.pgstac.app:create_app --factory`` in a
subprocess with the ``PG*`` environment variables. :meth:`PgstacServer.stop` kills the API,
stops PostgreSQL and deletes the directory.

PostgreSQL refuses to run as root, so as root every PostgreSQL command goes through
``runuser -u postgres --`` and the cluster directory is owned by ``postgres``. The directory
is made with :func:`tempfile.mkdtemp` directly under the system temp dir rather than in
pytest's ``tmp_path``: pytest keeps ``/tmp/pytest-of-<user>`` at mode 0700 (and resets it when
another session starts), which the ``postgres`` user could then not traverse.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from ._net import LOOPBACK, free_port, http_ok, wait_until

INSTALL_HINT = (
    "install them with `sudo scripts/install-test-services.sh` "
    "(Debian: apt-get install -y postgresql-15-postgis-3)"
)


class PostgresNotFound(RuntimeError):  # noqa: N818 - mirrors FileNotFoundError
    """PostgreSQL server binaries (initdb, pg_ctl, postgres) or PostGIS are not installed."""


def find_pg_bin() -> Path:
    """Return the directory holding ``initdb``/``pg_ctl``/``postgres``.

    Looks at ``$PG_BIN``, then the newest ``/usr/lib/postgresql/*/bin`` (Debian), then PATH.

    Raises:
        PostgresNotFound: No PostgreSQL server binaries, or the PostGIS extension is missing.
    """
    candidates: list[Path] = []
    if os.environ.get("PG_BIN"):
        candidates.append(Path(os.environ["PG_BIN"]))
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    candidates += [Path(p) for p in reversed(debian)]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for c in candidates:
        if all((c / exe).exists() for exe in ("initdb", "pg_ctl", "postgres")):
            sharedir = _pg_sharedir(c)
            if sharedir is not None and not list(sharedir.glob("extension/postgis.control")):
                raise PostgresNotFound(
                    f"PostgreSQL found in {c} but not the PostGIS extension "
                    f"(no {sharedir}/extension/postgis.control); {INSTALL_HINT}"
                )
            return c
    raise PostgresNotFound(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in $PG_BIN, "
        f"/usr/lib/postgresql/*/bin or PATH; {INSTALL_HINT}"
    )


def _pg_sharedir(bindir: Path) -> Path | None:
    try:
        out = subprocess.run(
            [str(bindir / "pg_config"), "--sharedir"], capture_output=True, text=True, check=True
        ).stdout.strip()
        return Path(out)
    except (OSError, subprocess.CalledProcessError):
        version = bindir.parent.name
        guess = Path(f"/usr/share/postgresql/{version}")
        return guess if guess.is_dir() else None


class PgstacServer:
    """stac-fastapi-pgstac + PostgreSQL/PostGIS on 127.0.0.1, for one test session.

    Args:
        collections: STAC Collection dicts to load.
        items: STAC Item dicts to load (their collections must be in ``collections``).
        startup_timeout: Seconds to wait for PostgreSQL and for the API.

    Attributes:
        url: The STAC API root, e.g. ``http://127.0.0.1:41234`` (after :meth:`start`).
        dsn: The PostgreSQL connection string.
    """

    def __init__(
        self,
        collections: Sequence[dict] = (),
        items: Iterable[dict] = (),
        startup_timeout: float = 60.0,
    ) -> None:
        self.collections = list(collections)
        self.items = list(items)
        self.startup_timeout = startup_timeout
        self.url: str = ""
        self.dsn: str = ""
        self.workdir: Path | None = None
        self._pg_bin: Path | None = None
        self._pg_started = False
        self._api: subprocess.Popen | None = None
        self._api_log: Path | None = None
        self.timings: dict[str, float] = {}

    # -- helpers ------------------------------------------------------------------------------
    def _as_postgres(self, args: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *args]
        return args

    def _run_pg(self, exe: str, *args: str, timeout: float = 120) -> None:
        assert self._pg_bin is not None
        cmd = self._as_postgres([str(self._pg_bin / exe), *args])
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            log = ""
            if self.workdir is not None and (self.workdir / "postgres.log").exists():
                log = (self.workdir / "postgres.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{log}"
            )

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> PgstacServer:
        """Create the database, load the data and start the API.

        Raises:
            PostgresNotFound: PostgreSQL/PostGIS are not installed.
            RuntimeError: A step failed; the message carries its output.
        """
        self.start_database()
        self.load(self.collections, self.items)
        self.start_api()
        return self

    def start_database(self) -> PgstacServer:
        """Start PostgreSQL and run the pgstac migrations (can overlap other set-up work)."""
        self._pg_bin = find_pg_bin()
        atexit.register(self.stop)
        try:
            self._start_postgres()
            self._migrate()
        except BaseException:
            self.stop()
            raise
        return self

    def load(self, collections: Sequence[dict], items: Iterable[dict]) -> None:
        """Load collections, then items (``insert_ignore``: loading twice is harmless)."""
        from pypgstac.db import PgstacDB
        from pypgstac.load import Loader, Methods

        t0 = time.perf_counter()
        self.collections, self.items = list(collections), list(items)
        try:
            with PgstacDB(dsn=self.dsn) as db:
                loader = Loader(db)
                loader.load_collections(iter(self.collections), Methods.insert_ignore)
                if self.items:
                    loader.load_items(iter(self.items), Methods.insert_ignore)
        except BaseException:
            self.stop()
            raise
        self.timings["load"] = time.perf_counter() - t0

    def start_api(self) -> PgstacServer:
        """Start the stac-fastapi-pgstac subprocess; set :attr:`url`."""
        try:
            self._start_api()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_postgres(self) -> None:
        t0 = time.perf_counter()
        self.workdir = Path(tempfile.mkdtemp(prefix="senland-pgstac-"))
        data, sock = self.workdir / "data", self.workdir / "sock"
        sock.mkdir()
        if os.geteuid() == 0:
            for p in (self.workdir, sock):
                shutil.chown(p, "postgres", "postgres")
        self.workdir.chmod(0o700)
        self._run_pg(
            "initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync",
            "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        self.timings["initdb"] = time.perf_counter() - t0
        for attempt in range(3):
            port = free_port()
            opts = (
                f"-p {port} -k {sock} -c listen_addresses={LOOPBACK} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50"
            )
            try:
                self._run_pg(
                    "pg_ctl", "-D", str(data), "-l", str(self.workdir / "postgres.log"),
                    "-w", "-t", str(int(self.startup_timeout)), "-o", opts, "start",
                )  # fmt: skip
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        self._pg_started = True
        self.pg_port = port
        self.dsn = f"postgresql://postgres@{LOOPBACK}:{port}/postgres"
        self.timings["postgres"] = time.perf_counter() - t0

    def _migrate(self) -> None:
        from pypgstac.db import PgstacDB
        from pypgstac.migrate import Migrate

        t0 = time.perf_counter()
        with PgstacDB(dsn=self.dsn) as db:
            Migrate(db).run_migration()
        self.timings["migrate"] = time.perf_counter() - t0

    def _start_api(self) -> None:
        t0 = time.perf_counter()
        assert self.workdir is not None
        env = {
            **os.environ,
            "PGHOST": LOOPBACK,
            "PGPORT": str(self.pg_port),
            "PGUSER": "postgres",
            "PGPASSWORD": "unused",
            "PGDATABASE": "postgres",
            "DB_MIN_CONN_SIZE": "1",
            "DB_MAX_CONN_SIZE": "4",
        }
        self._api_log = self.workdir / "api.log"
        for attempt in range(3):
            port = free_port()
            cmd = [
                sys.executable, "-m", "uvicorn", "stac_fastapi.pgstac.app:create_app",
                "--factory", "--host", LOOPBACK, "--port", str(port),
                "--log-level", "warning", "--no-access-log",
            ]  # fmt: skip
            with open(self._api_log, "wb") as log:
                self._api = subprocess.Popen(
                    cmd, env=env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
                )
            url = f"http://{LOOPBACK}:{port}"
            api = self._api
            try:
                wait_until(
                    lambda: api.poll() is not None or http_ok(url + "/collections"),  # noqa: B023
                    self.startup_timeout,
                    f"stac-fastapi-pgstac on {url}",
                )
            except TimeoutError:
                raise RuntimeError(
                    f"stac-fastapi-pgstac did not answer on {url}:\n{self.api_log_text()}"
                ) from None
            if api.poll() is None:
                self.url = url
                self.timings["api"] = time.perf_counter() - t0
                return
            if attempt == 2 or "address already in use" not in self.api_log_text().lower():
                raise RuntimeError(
                    f"stac-fastapi-pgstac exited with {api.returncode}:\n{self.api_log_text()}"
                )

    def api_log_text(self) -> str:
        """The API subprocess's output so far (for error messages)."""
        if self._api_log is None or not self._api_log.exists():
            return ""
        return self._api_log.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        """Stop the API and PostgreSQL, then delete the cluster directory (idempotent)."""
        if self._api is not None:
            if self._api.poll() is None:
                self._api.terminate()
                try:
                    self._api.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._api.kill()
                    self._api.wait(timeout=5)
            self._api = None
        if self._pg_started and self.workdir is not None:
            try:
                self._run_pg("pg_ctl", "-D", str(self.workdir / "data"), "-m", "immediate",
                             "-w", "stop", timeout=30)  # fmt: skip
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
            self._pg_started = False
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> PgstacServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
