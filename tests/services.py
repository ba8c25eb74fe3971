"""Real PostgreSQL and Redis servers for the tests, started once per test session.

Each server runs on 127.0.0.1, on a free port, in its own temporary folder, and is stopped
(and its folder removed) at the end of the session: by the fixture's finalizer, with an
`atexit` hook as a safety net, and, should a session have been killed outright, by the next
session, which reaps what a dead session left behind.

The binaries come from Debian's `postgresql` and `redis-server` packages, which
`scripts/ensure-services.sh` (run by `make test`) installs when they are missing. Without
them the fixtures FAIL rather than skip: a skipped test would hide a missing install step.

PostgreSQL refuses to run as root, so under root `initdb` and the server run as the
`postgres` OS user; otherwise as the current user. The server is this process's own child
(not detached by `pg_ctl start`), so that it is reaped at once when stopped and, on Linux,
dies with the test process even if that is killed outright.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

START_TIMEOUT = 30.0  # seconds for a server to become ready
STOP_TIMEOUT = 15.0
PREFIX = "agentguard-services-"
OWNER_FILE = "owner.pid"
PG_DATABASE = "agentguard_test"
PG_SUPERUSER = "postgres"
INSTALL_HINT = (
    "run `make test`, which installs it, or `scripts/ensure-services.sh` as root "
    "(Debian packages `postgresql` and `redis-server`)"
)
_C_ENV = {"LC_ALL": "C", "LANG": "C"}


class ServiceError(RuntimeError):
    """A test server could not be found or started."""


# --------------------------------------------------------------------------- helpers


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    tail = "\n".join(text.splitlines()[-lines:])
    return tail or "(empty log)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _die_with_parent(sig: signal.Signals) -> Callable[[], None]:
    """Linux: the child gets `sig` when the test process dies, even by SIGKILL."""

    def preexec() -> None:  # pragma: no cover - runs in the child, before exec
        with contextlib.suppress(Exception):
            ctypes.CDLL(None).prctl(1, sig)  # PR_SET_PDEATHSIG, kept across exec

    return preexec


def _traversable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents))


def _temp_parent(for_other_user: bool) -> Path:
    """Where to make the temp folders: one that another OS user can reach, if needed."""
    parent = Path(tempfile.gettempdir()).resolve()
    if for_other_user and not _traversable_by_others(parent):
        parent = Path("/tmp")
    return parent


def _make_tempdir(kind: str, owner: pwd.struct_passwd | None) -> Path:
    parent = _temp_parent(owner is not None)
    _reap_stale(parent)
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-", dir=parent))
    (path / OWNER_FILE).write_text(str(os.getpid()))
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    path.chmod(0o700)
    return path


def _reap_stale(parent: Path) -> None:
    """Stop the servers and remove the folders of sessions that died without cleaning up."""
    for folder in parent.glob(f"{PREFIX}*"):
        try:
            owner = int((folder / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        if _pid_alive(owner):
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((folder / "data" / "postmaster.pid").read_text().splitlines()[0])
            if "postgres" in _cmdline(pid):
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown
        with contextlib.suppress(OSError, ValueError):
            pid = int((folder / "redis.pid").read_text().strip())
            if "redis-server" in _cmdline(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)


def _why_not_ready(proc: subprocess.Popen[bytes] | None, what: str) -> str:
    code = None if proc is None else proc.poll()
    if code is not None:
        return f"exited with code {code} before it could {what}"
    return f"did not {what} within {START_TIMEOUT:.0f} s"


def _wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# ------------------------------------------------------------------------ PostgreSQL


def find_postgres_bindir() -> Path:
    """The newest `/usr/lib/postgresql/<version>/bin` with initdb and postgres."""

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.parent.name)) or (0,)

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    which = shutil.which("initdb")
    if which:
        candidates.append(Path(which).resolve().parent)
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "postgres")):
            return bindir
    raise ServiceError(
        "the PostgreSQL server binaries (initdb, postgres) were not found under "
        f"/usr/lib/postgresql/*/bin: {INSTALL_HINT}."
    )


class PostgresServer:
    """`initdb` then the postmaster itself, as a child of this process.

    Not through `pg_ctl start`, which detaches the server: a child can be waited for (no
    zombie left for init to reap) and dies with the test process, even on SIGKILL.
    """

    def __init__(self) -> None:
        self.bindir = find_postgres_bindir()
        self.run_as: pwd.struct_passwd | None = None
        if os.geteuid() == 0:  # postgres refuses to run as root
            for name in ("postgres", "nobody"):
                with contextlib.suppress(KeyError):
                    self.run_as = pwd.getpwnam(name)
                    break
            if self.run_as is None:
                raise ServiceError("running as root, and there is no `postgres` OS user")
        self.tmp: Path | None = None
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        assert self.tmp is not None
        return self.tmp / "data"

    @property
    def log(self) -> Path:
        assert self.tmp is not None
        return self.tmp / "postgres.log"

    def url(self, database: str = PG_DATABASE) -> str:
        return f"postgresql://{PG_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _as_owner(self) -> dict[str, Any]:
        """Popen arguments that run the command as the server's OS user."""
        if self.run_as is None:
            return {}
        return {"user": self.run_as.pw_uid, "group": self.run_as.pw_gid, "extra_groups": []}

    def start(self) -> None:
        self.tmp = _make_tempdir("pg", self.run_as)
        _register(self)
        initdb = subprocess.run(
            [
                *(str(self.bindir / "initdb"), "-D", str(self.data), "-U", PG_SUPERUSER),
                *("-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"),
            ],
            cwd=self.tmp,
            env={**os.environ, **_C_ENV},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT * 2,
            check=False,
            **self._as_owner(),
        )
        if initdb.returncode != 0:
            raise ServiceError(f"initdb failed:\n{initdb.stdout}\n{initdb.stderr}")
        # Trust, on the private socket folder and on loopback only.
        hba = self.data / "pg_hba.conf"
        hba.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        if self.run_as is not None:
            os.chown(hba, self.run_as.pw_uid, self.run_as.pw_gid)

        for _attempt in range(3):  # a free port may be taken meanwhile: try another
            self.port = _free_port()
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    [
                        *(str(self.bindir / "postgres"), "-D", str(self.data)),
                        *("-k", str(self.tmp), "-p", str(self.port)),
                        *("-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"),
                        *("-c", "synchronous_commit=off", "-c", "full_page_writes=off"),
                    ],
                    cwd=self.tmp,
                    env={**os.environ, **_C_ENV},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent(signal.SIGINT),  # fast shutdown
                    **self._as_owner(),
                )
            if self._create_database():
                return
            problem = _why_not_ready(self.proc, f"accept connections on 127.0.0.1:{self.port}")
            self.stop_server()
            if "could not bind" not in _log_tail(self.log, 10):
                break
        raise ServiceError(f"PostgreSQL {problem}\n--- {self.log} ---\n{_log_tail(self.log)}")

    def _create_database(self) -> bool:
        """Wait for the server, then create the test database; False if the server died."""
        import psycopg

        proc = self.proc
        assert proc is not None

        def ready() -> bool:
            if proc.poll() is not None:
                return True
            try:
                with psycopg.connect(
                    self.url("postgres"), autocommit=True, connect_timeout=2
                ) as conn:
                    conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
            except psycopg.OperationalError:
                return False
            return True

        return _wait_for(ready, START_TIMEOUT) and proc.poll() is None

    def stop_server(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        # fast shutdown, then immediate, then kill
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        try:
            self.stop_server()
        finally:
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
                self.tmp = None
            _unregister(self)


# ----------------------------------------------------------------------------- Redis


def find_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    if os.access("/usr/bin/redis-server", os.X_OK):
        return "/usr/bin/redis-server"
    raise ServiceError(f"`redis-server` was not found: {INSTALL_HINT}.")


class RedisServer:
    def __init__(self) -> None:
        self.binary = find_redis_server()
        self.tmp: Path | None = None
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        assert self.tmp is not None
        return self.tmp / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _exited_or_ready(self) -> bool:
        return self.proc is None or self.proc.poll() is not None or self._ping()

    def start(self) -> None:
        self.tmp = _make_tempdir("redis", None)
        _register(self)
        for _attempt in range(3):  # a free port may be taken meanwhile: try another
            self.port = _free_port()
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    [
                        self.binary,
                        *("--port", str(self.port), "--bind", "127.0.0.1"),
                        *("--save", "", "--appendonly", "no"),
                        *("--dir", str(self.tmp), "--daemonize", "no"),
                    ],
                    cwd=self.tmp,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent(signal.SIGTERM),
                )
            (self.tmp / "redis.pid").write_text(str(self.proc.pid))
            _wait_for(self._exited_or_ready, START_TIMEOUT)
            if self.proc.poll() is None and self._ping():
                return
            problem = _why_not_ready(self.proc, f"answer PING on 127.0.0.1:{self.port}")
            self.stop_server()
            if "Address already in use" not in _log_tail(self.log, 10):
                break
        raise ServiceError(f"redis-server {problem}\n--- {self.log} ---\n{_log_tail(self.log)}")

    def stop_server(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        try:
            self.stop_server()
        finally:
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
                self.tmp = None
            _unregister(self)


# ------------------------------------------------------------------ cleanup, fixtures

_RUNNING: list[PostgresServer | RedisServer] = []


def _register(server: PostgresServer | RedisServer) -> None:
    if server not in _RUNNING:
        _RUNNING.append(server)


def _unregister(server: PostgresServer | RedisServer) -> None:
    with contextlib.suppress(ValueError):
        _RUNNING.remove(server)


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        with contextlib.suppress(Exception):
            server.stop()


_S = TypeVar("_S", PostgresServer, RedisServer)


def _start_or_fail(factory: type[_S], label: str) -> _S:
    """Start a server, or FAIL (never skip) the tests that need it, with a clear message."""
    server: _S | None = None
    try:
        server = factory()
        server.start()
    except Exception as exc:  # whatever it is, stop what started and report it
        detail = str(exc) if isinstance(exc, ServiceError) else f"{type(exc).__name__}: {exc}"
        problem = f"{label}: {detail}"
    else:
        return server
    if server is not None:
        server.stop()
    pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A `postgresql://postgres@127.0.0.1:PORT/agentguard_test` URL of a fresh server."""
    server = _start_or_fail(PostgresServer, "PostgreSQL test server")
    try:
        yield server.url()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A `redis://127.0.0.1:PORT/0` URL of a fresh, empty, non-persistent server."""
    server = _start_or_fail(RedisServer, "Redis test server")
    try:
        yield server.url
    finally:
        server.stop()


@contextlib.contextmanager
def fresh_schema(postgres_url: str, prefix: str) -> Iterator[tuple[str, str]]:
    """(URL whose search_path is a new schema, the schema): tables of one test never collide
    with another's on the shared server; the schema is dropped afterwards."""
    import uuid

    import psycopg
    from psycopg import sql

    schema = f"{prefix}_{uuid.uuid4().hex}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield f"{postgres_url}?options=-csearch_path%3D{schema}", schema
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
