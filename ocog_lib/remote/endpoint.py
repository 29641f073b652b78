"""Which S3 endpoint ocog talks to: the configured one, or a long-lived embedded one.

A configured endpoint wins: `OCOG_S3_ENDPOINT`, else `AWS_ENDPOINT_URL_S3`, else
`AWS_ENDPOINT_URL` (for AWS itself: https://s3.<region>.amazonaws.com). With none set,
ocog uses its *default endpoint*: moto's S3 server (see `s3server`) on 127.0.0.1,
started detached so it outlives the command or Dagster run that started it and is
shared by every later one. Its PID and port live in `$OCOG_DATA_DIR/s3/endpoint.json`
(written atomically, under a file lock, so two runs starting at once start one
server); it is reused while that PID is the embedded server and answers a HEAD, started
when it is not, and stopped by `stop_embedded` (`ocog s3 stop`).

The embedded server keeps objects in memory: once it stops (or the machine reboots) a
new one starts empty, and whatever consumers need must be uploaded again. Uploads
(`upload.upload_dir`) skip objects that are already there, so a consumer simply
re-uploads before it reads; on loopback that costs about a hash per file.

Bucket: `OCOG_S3_BUCKET` (default "ocog"); ocog creates it on the embedded server, never
on a configured store. Port: `OCOG_S3_PORT` (default: any free one). Credentials: moto
accepts any; ocog's own clients get dummy ones only when no AWS credentials are
configured (environment, shared credentials or config file, AWS_PROFILE), and never
puts them in os.environ, a state file or a log line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ocog_lib.atomic import atomic_write_text
from ocog_lib.errors import InputError
from ocog_lib.remote.s3server import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, REGION
from ocog_lib.secrets import redact_uri
from ocog_lib.settings import Settings

ENDPOINT_VARS = ("OCOG_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
BUCKET_VAR = "OCOG_S3_BUCKET"
PORT_VAR = "OCOG_S3_PORT"
DEFAULT_BUCKET = "ocog"
HOST = "127.0.0.1"
_SERVER_MODULE = "ocog_lib.remote.s3server"
_LOG_VAR = "OCOG_S3_LOG"  # in the server's environment: tells our server from another's
# credential variables the embedded server's own process must not inherit
_AWS_CREDENTIAL_VARS = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
)  # fmt: skip


@dataclass(frozen=True)
class Endpoint:
    """An S3 endpoint and the bucket ocog uses there. `url` may carry no secret (it is
    printed and stored as is); credentials come from the standard AWS chain."""

    url: str
    bucket: str
    embedded: bool
    region: str | None = None
    pid: int | None = None  # the embedded server's process
    started_at: float | None = None  # when the embedded server started (its objects since)

    @property
    def display_url(self) -> str:
        return redact_uri(self.url)

    def uri(self, key: str) -> str:
        """`s3://bucket/key` for a key in this endpoint's bucket."""
        return f"s3://{self.bucket}/{key.lstrip('/')}"

    def client_opts(self) -> dict[str, Any]:
        """boto3.client keywords for ocog's clients (e.g. `upload.upload_dir`)."""
        opts: dict[str, Any] = {"endpoint_url": self.url}
        if self.region:
            opts["region_name"] = self.region
        if self.embedded and not aws_credentials_configured():
            opts.update(aws_access_key_id=DUMMY_ACCESS_KEY, aws_secret_access_key=DUMMY_SECRET_KEY)
        return opts

    def client(self, max_connections: int = 16) -> Any:
        from ocog_lib.remote.upload import s3_client

        return s3_client(self.client_opts(), max_connections=max_connections)

    def env(self) -> dict[str, str]:
        """Variables that point ocog's readers (`storage.S3Object`), GDAL's /vsis3/ and child
        processes here; pass them to a subprocess or a scoped environment, not os.environ
        for good. Dummy credentials are included on the same terms as `client_opts`."""
        env = {
            "AWS_ENDPOINT_URL_S3": self.url,
            "AWS_S3_ENDPOINT": self.url.split("://", 1)[-1].rstrip("/"),
            "AWS_HTTPS": "YES" if self.url.startswith("https") else "NO",
            "AWS_VIRTUAL_HOSTING": "FALSE",
        }
        if self.region:
            env["AWS_REGION"] = self.region
        opts = self.client_opts()
        if "aws_access_key_id" in opts:
            env["AWS_ACCESS_KEY_ID"] = opts["aws_access_key_id"]
            env["AWS_SECRET_ACCESS_KEY"] = opts["aws_secret_access_key"]
        return env


def aws_credentials_configured() -> bool:
    """Whether the AWS chain finds credentials without asking the network: environment
    keys, the shared credentials / config files, or a named profile (AWS_PROFILE)."""
    if os.environ.get("AWS_PROFILE") or os.environ.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
        return True
    import botocore.session

    resolver = botocore.session.Session().get_component("credential_provider")
    for name in ("assume-role", "assume-role-with-web-identity", "sso", "custom-process",
                 "container-role", "iam-role"):  # fmt: skip
        with contextlib.suppress(Exception):
            resolver.remove(name)  # these may call out (STS, SSO, a process, IMDS)
    try:
        return resolver.load_credentials() is not None
    except Exception:  # noqa: BLE001 - an unreadable config means: nothing usable here
        return False


def configured_endpoint() -> tuple[str, str] | None:
    """(variable, url) of the first endpoint variable that is set, or None."""
    for var in ENDPOINT_VARS:
        value = os.environ.get(var, "").strip()
        if value:
            return var, value
    return None


def _checked_url(what: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(what, f"not an http(s)://host[:port] endpoint: {redact_uri(url)!r}")
    return url.rstrip("/")


def bucket_from_env() -> str:
    bucket = os.environ.get(BUCKET_VAR, "").strip() or DEFAULT_BUCKET
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise InputError(BUCKET_VAR, f"{bucket!r} is not a valid S3 bucket name")
    return bucket


def resolve_endpoint(
    settings: Settings | None = None,
    *,
    url: str | None = None,
    bucket: str | None = None,
    start: bool = True,
) -> Endpoint:
    """The endpoint to use: `url`, else the configured one, else the embedded one (started
    when it is not running, unless `start=False`: then InputError)."""
    bucket = bucket or bucket_from_env()
    if url:
        return Endpoint(_checked_url("endpoint_url", url), bucket, False, _region_from_env())
    configured = configured_endpoint()
    if configured is not None:
        var, value = configured
        return Endpoint(_checked_url(var, value), bucket, False, _region_from_env())
    return embedded_endpoint(settings or Settings.from_env(), bucket=bucket, start=start)


def embedded_endpoint(
    settings: Settings, *, bucket: str | None = None, start: bool = True
) -> Endpoint:
    """The embedded endpoint whatever is configured, with its bucket created."""
    state = start_embedded(settings) if start else embedded_status(settings)
    if state is None:
        raise InputError(state_path(settings), "the embedded S3 endpoint is not running")
    endpoint = Endpoint(
        state.url, bucket or bucket_from_env(), True, REGION, state.pid, state.started_at
    )
    _ensure_bucket(endpoint)
    return endpoint


def _region_from_env() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def _ensure_bucket(endpoint: Endpoint) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    client = endpoint.client(max_connections=2)
    try:
        client.create_bucket(Bucket=endpoint.bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise InputError(endpoint.uri(""), f"cannot create bucket ({code})") from None
    except BotoCoreError as exc:
        raise InputError(endpoint.display_url, f"embedded S3 endpoint unreachable: {exc}") from None


# ------------------------------------------------------------------ the embedded server


@dataclass(frozen=True)
class EmbeddedState:
    """What endpoint.json holds: enough to find, check and stop the server; no secret."""

    pid: int
    host: str
    port: int
    started_at: float
    log: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def state_path(settings: Settings) -> Path:
    return settings.data_dir / "s3" / "endpoint.json"


def _read_state(path: Path) -> EmbeddedState | None:
    try:
        raw = json.loads(path.read_text())
        return EmbeddedState(
            pid=int(raw["pid"]),
            host=str(raw["host"]),
            port=int(raw["port"]),
            started_at=float(raw["started_at"]),
            log=str(raw["log"]),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable: treated as no server (a new one replaces the file)


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    """One process at a time checks, starts or stops the embedded server."""
    folder = state_path(settings).parent
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".endpoint.lock", "a+b") as lock:
        try:
            import fcntl
        except ImportError:  # not POSIX: no cross-process lock
            yield
            return
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _process_info(pid: int) -> tuple[str, str] | None:
    """(state letter, command line) of a live process, or None when there is none."""
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self").exists():
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return None
        return stat.rsplit(")", 1)[-1].split()[0], cmdline
    ps = shutil.which("ps")
    if ps is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "?", ""
    out = subprocess.run(
        [ps, "-o", "stat=", "-o", "command=", "-p", str(pid)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if not out:
        return None
    state, _, command = out.partition(" ")
    return state[:1], command


def _is_server(pid: int, log: str | None = None) -> bool:
    """The PID is a live (not zombie) embedded S3 server, and where the system shows a
    process's environment, the one writing to `log` (ours, not another data folder's
    that got a recycled PID): never signal anything else."""
    info = _process_info(pid)
    if info is None or info[0] in ("Z", "X") or (info[1] and _SERVER_MODULE not in info[1]):
        return False
    if log:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return True  # no /proc (or not ours to read): the command line must do
        return f"{_LOG_VAR}={log}".encode() in environ
    return True


def _answers(url: str, timeout_s: float = 2.0) -> bool:
    import urllib3

    http = urllib3.PoolManager(retries=False, timeout=timeout_s)
    try:
        return http.request("HEAD", f"{url}/moto-api/").status == 200
    except urllib3.exceptions.HTTPError:
        return False
    finally:
        http.clear()


def _answers_patiently(url: str, attempts: int = 3, timeout_s: float = 5.0) -> bool:
    """A server busy with a benchmark may answer late: only a server silent for several
    tries counts as hung (and gets replaced, losing its objects)."""
    return any(_answers(url, timeout_s) for _ in range(attempts))


def embedded_status(settings: Settings) -> EmbeddedState | None:
    """The running embedded server (its PID is the server and it answers), or None.
    Starts and changes nothing."""
    state = _read_state(state_path(settings))
    if state is None or not _is_server(state.pid, state.log):
        return None
    if not _answers_patiently(state.url):
        return None
    return state


def start_embedded(settings: Settings, *, startup_timeout_s: float = 30.0) -> EmbeddedState:
    """The running embedded server, or a new one started detached (own session, no parent
    watch): it lives until `stop_embedded`, a reboot, or a kill."""
    with _locked(settings):
        path = state_path(settings)
        state = _read_state(path)
        if state is not None and _is_server(state.pid, state.log):
            if _answers_patiently(state.url):
                return state
            _terminate(state.pid)  # alive but not answering: replace it
        path.unlink(missing_ok=True)
        state = _launch(settings, startup_timeout_s)
        atomic_write_text(path, json.dumps(asdict(state), indent=2) + "\n")
        return state


def stop_embedded(settings: Settings, *, timeout_s: float = 10.0) -> int | None:
    """Stop the embedded server by its PID (SIGTERM, then SIGKILL after `timeout_s`) and
    remove its state; returns the PID stopped, or None when none was running. A state
    file whose PID now belongs to another process is removed without signalling it."""
    with _locked(settings):
        path = state_path(settings)
        state = _read_state(path)
        stopped = None
        if state is not None and _is_server(state.pid, state.log):
            _terminate(state.pid, timeout_s)
            stopped = state.pid
        path.unlink(missing_ok=True)
        return stopped


def _terminate(pid: int, timeout_s: float = 10.0) -> None:
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            _reap(pid)
            if not _is_server(pid):
                return
            time.sleep(0.05)
    raise InputError(f"embedded S3 server (pid {pid})", "did not stop after SIGKILL")


def _reap(pid: int) -> None:
    """Collect the exit status if the server is our own child (it is not, normally)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _port_from_env() -> int:
    text = os.environ.get(PORT_VAR, "").strip()
    if not text:
        return 0
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InputError(PORT_VAR, f"{text!r} is not a TCP port")
    port = int(text)
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InputError(PORT_VAR, f"port {port} on {HOST} is in use") from None
            raise InputError(PORT_VAR, f"cannot listen on {HOST}:{port}: {exc}") from None
    return port


def _launch(settings: Settings, startup_timeout_s: float) -> EmbeddedState:
    """Start the server as a grandchild (sh backgrounds it and exits), so no process of
    ours is its parent: it never turns into a zombie of a long-lived Dagster process."""
    port = _port_from_env()
    log = state_path(settings).parent / "server.log"
    log.write_bytes(b"")
    env = {k: v for k, v in os.environ.items() if k not in _AWS_CREDENTIAL_VARS}
    env.update(AWS_ACCESS_KEY_ID=DUMMY_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=DUMMY_SECRET_KEY,
               AWS_DEFAULT_REGION=REGION, **{_LOG_VAR: str(log)})  # fmt: skip
    cmd = [sys.executable, "-m", _SERVER_MODULE, "--host", HOST, "--port", str(port)]
    script = f'"$@" </dev/null >>"${_LOG_VAR}" 2>&1 & echo $!'
    launcher = subprocess.run(
        [shutil.which("sh") or "/bin/sh", "-c", script, "sh", *cmd],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        start_new_session=True,
        check=False,
    )
    if launcher.returncode != 0 or not launcher.stdout.strip().isdigit():
        raise InputError("embedded S3 server", f"could not launch: {launcher.stderr.strip()}")
    pid = int(launcher.stdout.strip())
    deadline = time.monotonic() + startup_timeout_s
    while True:
        text = log.read_text(errors="replace")
        m = re.search(r"^PORT (\d+)", text, re.MULTILINE)
        if m and _answers(f"http://{HOST}:{m.group(1)}", timeout_s=1.0):
            return EmbeddedState(pid, HOST, int(m.group(1)), time.time(), str(log))
        problem = None
        if not _is_server(pid):
            problem = "exited at start"
        elif time.monotonic() > deadline:
            problem = f"not ready after {startup_timeout_s:g} s"
        if problem:
            if _is_server(pid):
                _terminate(pid, 5.0)
            tail = log.read_text(errors="replace")[-800:].strip()
            raise InputError("embedded S3 server", f"{problem}: {tail or 'no output'}")
        time.sleep(0.05)
