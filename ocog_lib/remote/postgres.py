"""A local PostgreSQL server for concurrent Dagster runs and shared optuna studies.

Why: the default sqlite instance and the optuna journal file are right for one user on
one machine, but several processes writing runs or trials at once want a real database
server. This runs Debian's PostgreSQL (`apt-get install postgresql`, or `make postgres`)
as a child process we own: a cluster under `<data_dir>/postgres/` (initdb'd when missing),
listening on 127.0.0.1 only (no Unix socket), on a free port (another one when the port
is taken), trust authentication (no password exists, so none can leak into a URL, a log
or an error), stopped by PID (fast shutdown, then SIGKILL of its process group).

PostgreSQL refuses to run as root: as root, the server runs as the `postgres` OS user
(Debian's package creates it), who must be able to reach the data folder.

`python -m ocog_lib.remote.postgres run --data-dir data -- CMD...` starts it, runs CMD
with DAGSTER_HOME (a Postgres instance), OCOG_DAGSTER_PG_URL and OCOG_OPTUNA_STORAGE set,
and stops it when CMD ends (`make dev-pg`).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ocog_lib.errors import InputError
from ocog_lib.remote.child import FreePortServer, run_command

DEFAULT_USER = "ocog"  # the cluster's superuser (trust auth on 127.0.0.1 only)
DEFAULT_DATABASE = "ocog"
SERVER_OS_USER = "postgres"  # who runs the server when we are root
DAGSTER_URL_ENV = "OCOG_DAGSTER_PG_URL"
OPTUNA_STORAGE_ENV = "OCOG_OPTUNA_STORAGE"  # read by ocog_lib.search.bayes
INSTALL_HINT = "install Debian's package (apt-get install postgresql) or run `make postgres`"
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True)
class PgBinaries:
    """The server programs we run: `initdb` and `postgres` from one installation."""

    initdb: Path
    postgres: Path


def find_binaries(bin_dir: str | Path | None = None) -> PgBinaries:
    """initdb + postgres from `bin_dir`, $OCOG_PG_BIN, PATH, or the newest
    /usr/lib/postgresql/<major>/bin (Debian keeps them off PATH)."""
    explicit = bin_dir or os.environ.get("OCOG_PG_BIN")
    candidates = [str(explicit)] if explicit else [
        *os.environ.get("PATH", "").split(os.pathsep),
        *sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major, reverse=True),
    ]  # fmt: skip
    for d in candidates:
        initdb, postgres = Path(d, "initdb"), Path(d, "postgres")
        if all(p.is_file() and os.access(p, os.X_OK) for p in (initdb, postgres)):
            return PgBinaries(initdb.resolve(), postgres.resolve())
    where = explicit or "PATH or /usr/lib/postgresql/*/bin"
    raise InputError("PostgreSQL server (initdb, postgres)", f"not found in {where}: "
                     f"{INSTALL_HINT}")  # fmt: skip


def _major(path: str) -> int:
    m = re.search(r"/postgresql/(\d+)/", path)
    return int(m.group(1)) if m else 0


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the server may still lose a race for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def server_os_user() -> pwd.struct_passwd | None:
    """Whom the server runs as: ourselves (None), or `postgres` when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_OS_USER)
    except KeyError:
        raise InputError("PostgreSQL as root", f"refuses to run as root and there is no "
                         f"'{SERVER_OS_USER}' user: {INSTALL_HINT}") from None  # fmt: skip


class EmbeddedPostgres(FreePortServer):
    """A PostgreSQL server on 127.0.0.1 for as long as the object (or `with`) lives."""

    LABEL = "EmbeddedPostgres"
    CHILD = "EmbeddedPostgres (postgres)"
    ANNOUNCEMENT = r"PORT (\d+)"
    PORT_TAKEN_LOG = ("Address already in use", "could not create any TCP/IP sockets")

    def __init__(
        self,
        root: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        user: str = DEFAULT_USER,
        database: str = DEFAULT_DATABASE,
        settings: dict[str, str] | None = None,
        bin_dir: str | Path | None = None,
        startup_timeout_s: float = 60.0,
    ):
        super().__init__(host, startup_timeout_s)
        self.root = Path(root).absolute()
        self.requested_port = port
        self.user = _checked_name(user, "user")
        self.database = _checked_name(database, "database")
        self.settings = dict(settings or {})  # extra `-c name=value` (e.g. fsync=off)
        self.bin_dir = bin_dir
        self._os_user: pwd.struct_passwd | None = None

    @classmethod
    def for_data_dir(cls, data_dir: str | Path, **kw) -> EmbeddedPostgres:
        """The project's server: its cluster under `<data_dir>/postgres/`."""
        return cls(Path(data_dir) / "postgres", **kw)

    @property
    def cluster_dir(self) -> Path:
        return self.root / "cluster"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self.port else "not started"
        return f"EmbeddedPostgres({str(self.root)!r}, {where}, pid={self.pid})"

    # -- URLs (no password: trust auth on loopback)
    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str, driver: str = "postgresql") -> str:
        """`postgresql://user@127.0.0.1:port/db`; driver `postgresql+psycopg` for SQLAlchemy."""
        if self.port is None:
            raise InputError(self.LABEL, "not started: call start() first")
        return f"{driver}://{self.user}@{self.host}:{self.port}/{_checked_name(database)}"

    def optuna_url(self, database: str | None = None) -> str:
        return self.url_for(database or self.database, "postgresql+psycopg")

    def dagster_url(self, database: str = "dagster") -> str:
        """Created when missing. psycopg2 named: SQLAlchemy 2.1 defaults `postgresql://` to
        psycopg 3, whose server-side parameters break dagster-postgres' `NOTIFY ..., %s`."""
        self.ensure_database(database)
        return self.url_for(database, "postgresql+psycopg2")

    # -- lifecycle
    def stop(self) -> None:
        """Fast shutdown by PID (SIGINT), wait; then SIGKILL its process group."""
        proc, self._proc = self._proc, None
        self.port = None
        if proc is not None:
            _stop_postmaster(proc)

    def _spawn(self) -> subprocess.Popen:
        binaries = find_binaries(self.bin_dir)
        self._os_user = server_os_user()
        self._init_cluster(binaries)
        port = self.requested_port or free_port(self.host)
        args = [str(binaries.postgres), "-D", str(self.cluster_dir), "-p", str(port),
                "-c", f"listen_addresses={self.host}", "-c", "unix_socket_directories=",
                "-c", "logging_collector=off"]  # fmt: skip
        for k, v in self.settings.items():
            args += ["-c", f"{k}={v}"]
        # the shell announces the port, then *is* the postmaster (same PID)
        cmd = ["/bin/sh", "-c", f'echo "PORT {port}"; exec "$@"', "sh", *args]
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child holds it)
        try:
            return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    env=_server_env(), **self._as_user())  # fmt: skip
        finally:
            log.close()

    def _started(self, announcement: re.Match) -> None:
        self._wait_ready()
        self.ensure_database(self.database)

    def _why_exited(self) -> str:
        return self._log_tail()

    # -- helpers
    def _as_user(self) -> dict:
        u = self._os_user
        return {"user": u.pw_uid, "group": u.pw_gid, "extra_groups": []} if u else {}

    def _init_cluster(self, binaries: PgBinaries) -> None:
        """initdb once (UTF-8, C locale, trust auth, our superuser); readable by the server."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self._os_user is not None:
            _check_reachable(self.root, self._os_user)
            os.chown(self.root, self._os_user.pw_uid, self._os_user.pw_gid)
        if (self.cluster_dir / "PG_VERSION").is_file():
            return
        if self.cluster_dir.exists():
            shutil.rmtree(self.cluster_dir)  # a half-made cluster from a failed initdb
        cmd = [str(binaries.initdb), "-D", str(self.cluster_dir), "-U", self.user,
               "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions"]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, env=_server_env(),
                              stdin=subprocess.DEVNULL, **self._as_user())  # fmt: skip
        if done.returncode != 0:
            raise InputError(f"initdb {self.cluster_dir}", (done.stderr or done.stdout)[-800:])

    def _wait_ready(self) -> None:
        """Until a connection succeeds."""
        import psycopg

        def refused() -> str | None:
            try:
                psycopg.connect(self.url_for("postgres"), connect_timeout=2).close()
                return None
            except psycopg.OperationalError as exc:
                return str(exc)

        self._wait_ready_by(refused, 0.1)

    def ensure_database(self, name: str) -> str:
        """Create database `name` unless it exists; its URL."""
        import psycopg

        name = _checked_name(name)
        with psycopg.connect(self.url_for("postgres"), autocommit=True) as con:
            if con.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                return self.url_for(name)
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # a racing creator
                con.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)


def _checked_name(name: str, what: str = "database") -> str:
    """Role and database names we put in SQL and URLs: lowercase identifiers only."""
    if not _NAME.fullmatch(name):
        raise InputError(f"{what} '{name}'", "use lowercase letters, digits and _")
    return name


def _server_env() -> dict[str, str]:
    """A plain environment for the server: C locale, no PG* variables of the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C")
    return env


def _check_reachable(path: Path, user: pwd.struct_passwd) -> None:
    """The server's OS user must traverse every folder above its data (no sudo here)."""
    for parent in path.parents:
        st = parent.stat()
        if st.st_uid == user.pw_uid or st.st_mode & 0o001:
            continue
        if st.st_gid == user.pw_gid and st.st_mode & 0o010:
            continue
        raise InputError(str(path), f"the '{user.pw_name}' user (PostgreSQL does not run as "
                         f"root) cannot reach it: {parent} is closed (chmod o+x {parent})")


def _stop_postmaster(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGINT = fast shutdown (clients disconnected, clean checkpoint); if it lingers,
    SIGKILL the whole process group (the postmaster and its backends)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # backends left behind by a killed postmaster
    if proc.stdout is not None:
        proc.stdout.close()


# ------------------------------------------------------------------ `make dev-pg`


def dagster_home_for(home: Path, template: Path) -> Path:
    """A DAGSTER_HOME whose dagster.yaml is `template` (storage from $OCOG_DAGSTER_PG_URL)."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, home / "dagster.yaml")
    return home


def run_with_postgres(args: argparse.Namespace) -> int:
    """Start the server, run the command against it, stop the server whatever happens."""
    server = EmbeddedPostgres.for_data_dir(args.data_dir, port=args.port)
    with server:
        home = dagster_home_for(Path(args.dagster_home), Path(args.template))
        server.ensure_database("optuna")
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home.absolute()),
            DAGSTER_URL_ENV: server.dagster_url("dagster"),
            OPTUNA_STORAGE_ENV: server.optuna_url("optuna"),
        }
        print(f"postgres pid {server.pid} at {server.url}; "
              f"DAGSTER_HOME={home}", flush=True)  # fmt: skip
        if not args.cmd:
            return 0
        return run_command(args.cmd, env)


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parents[2]
    p = argparse.ArgumentParser(prog="python -m ocog_lib.remote.postgres",
                                description="A local PostgreSQL around a command.")
    sub = p.add_subparsers(dest="cmd_name", required=True)
    r = sub.add_parser("run", help="start Postgres, run CMD against it, stop Postgres")
    r.add_argument("--data-dir", default=os.environ.get("OCOG_DATA_DIR", "data"))
    r.add_argument("--port", type=int, default=0, help="0 = a free port")
    r.add_argument("--dagster-home", default=None, help="default: <data dir>/dagster_home_pg")
    r.add_argument("--template", default=str(here / "dagster_home/dagster-pg.yaml.template"))
    r.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the command (none: just check)")
    args = p.parse_args(argv)
    args.cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    args.dagster_home = args.dagster_home or str(Path(args.data_dir) / "dagster_home_pg")
    try:
        return run_with_postgres(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
