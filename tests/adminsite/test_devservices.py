"""The embedded PostgreSQL and Redis (`python -m adminsite.devservices`), run as a subprocess
with ADMINSITE_DEVDATA pointing at a directory of the test's own, as `make run` uses them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

from adminsite import devservices

BASE_DIR = Path(__file__).resolve().parent.parent.parent

# The child `run` starts in these tests: it proves both URLs work, then prints them.
CHILD = """
import os, sys, time, psycopg, redis
with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
    assert conn.execute("SELECT current_database()").fetchone()[0] == "adminsite"
assert redis.Redis.from_url(os.environ["REDIS_URL"]).ping()
print(os.environ["DATABASE_URL"], os.environ["REDIS_URL"], flush=True)
if sys.argv[1:] == ["wait"]:
    time.sleep(120)
sys.exit(3)
"""


@pytest.fixture(scope="module")
def devdata(tmp_path_factory):
    """One data directory for the module: initdb runs once, each test starts and stops."""
    path = tmp_path_factory.mktemp("devdata")
    yield path
    cli(path, "stop")


def cli(devdata: Path, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adminsite.devservices", *args],
        cwd=BASE_DIR,
        env=environment(devdata, **variables),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def environment(devdata: Path, **variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(ADMINSITE_DEVDATA=str(devdata), **variables)
    return env


def pids(devdata: Path) -> tuple[int, int]:
    postgres = int((devdata / "postgres" / "postmaster.pid").read_text().splitlines()[0])
    redis_pid = int((devdata / "redis" / "redis.pid").read_text())
    return postgres, redis_pid


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def leftovers(devdata: Path, redis_port: int) -> list[str]:
    """Every process still serving this data directory: postgres and its backends name it on
    their command line; Redis is found by its port."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["status"] != psutil.STATUS_ZOMBIE and str(devdata) in cmdline:
            found.append(f"{proc.info['pid']}: {cmdline}")
    if devservices.redis_answers(redis_port):
        found.append(f"a Redis still answers on port {redis_port}")
    return found


def urls(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines())


def test_start_reuses_running_servers_and_stop_leaves_no_process(devdata):
    first = cli(devdata, "start")
    assert first.returncode == 0, first.stderr
    started = urls(first.stdout)
    assert (
        started["DATABASE_URL"] == f"postgresql://postgres@/adminsite?host={devdata / 'postgres'}"
    )
    assert started["REDIS_URL"].startswith("redis://127.0.0.1:")
    assert "PostgreSQL started" in first.stderr
    assert "Redis started" in first.stderr
    pg_pid, redis_pid = pids(devdata)
    with psycopg.connect(started["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("adminsite",)
    assert redis.Redis.from_url(started["REDIS_URL"]).ping()

    second = cli(devdata, "start")
    assert second.returncode == 0, second.stderr
    assert urls(second.stdout) == started
    assert second.stderr == ""
    assert pids(devdata) == (pg_pid, redis_pid)

    status = cli(devdata, "status")
    assert f"postgres: running (pid {pg_pid})" in status.stdout
    assert f"(pid {redis_pid})" in status.stdout

    exported = cli(devdata, "env")
    assert f"export DATABASE_URL='{started['DATABASE_URL']}'" in exported.stdout

    stopped = cli(devdata, "stop")
    assert stopped.stdout.splitlines() == ["redis: stopped", "postgres: stopped"]
    assert not alive(pg_pid)
    assert not alive(redis_pid)
    assert leftovers(devdata, int(started["REDIS_URL"].rsplit(":", 1)[1].split("/")[0])) == []
    assert "postgres: stopped" in cli(devdata, "status").stdout
    assert cli(devdata, "stop").stdout.splitlines() == [
        "redis: was not running",
        "postgres: was not running",
    ]


def test_run_passes_the_urls_and_stops_what_it_started(devdata):
    result = cli(devdata, "run", "--", sys.executable, "-c", CHILD)

    assert result.returncode == 3, result.stderr  # the command's own exit status
    database_url, redis_url = result.stdout.split()
    assert database_url == f"postgresql://postgres@/adminsite?host={devdata / 'postgres'}"
    assert "PostgreSQL stopped" in result.stderr
    assert "Redis stopped" in result.stderr
    assert leftovers(devdata, int(redis_url.rsplit(":", 1)[1].split("/")[0])) == []


def test_run_leaves_servers_it_did_not_start_running(devdata):
    cli(devdata, "start")
    before = pids(devdata)

    result = cli(devdata, "run", "--", sys.executable, "-c", CHILD)

    assert result.returncode == 3, result.stderr
    assert "stopped" not in result.stderr
    assert pids(devdata) == before
    assert all(alive(pid) for pid in before)
    cli(devdata, "stop")


def test_run_with_urls_configured_starts_nothing(tmp_path):
    result = cli(
        tmp_path,
        "run", "--", sys.executable, "-c", "import os; print(os.environ['DATABASE_URL'], os.environ['REDIS_URL'])",
        DATABASE_URL="postgresql://app@db.internal/app",
        REDIS_URL="redis://cache.internal:6379/2",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "postgresql://app@db.internal/app",
        "redis://cache.internal:6379/2",
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("deliver", "expected_code"),
    [
        # Ctrl-C at a terminal: SIGINT to the whole foreground process group.
        (lambda proc: os.killpg(proc.pid, signal.SIGINT), 128 + signal.SIGINT),
        # `kill`, or make passing on its own SIGTERM: only `run` gets it and forwards it.
        (lambda proc: proc.send_signal(signal.SIGTERM), 128 + signal.SIGTERM),
    ],
    ids=["ctrl-c", "sigterm"],
)
def test_run_stops_the_command_and_the_servers_when_interrupted(devdata, deliver, expected_code):
    proc = subprocess.Popen(  # noqa: S603 - fixed command line
        [
            sys.executable,
            "-m",
            "adminsite.devservices",
            "run",
            "--",
            sys.executable,
            "-c",
            CHILD,
            "wait",
        ],
        cwd=BASE_DIR,
        env=environment(devdata),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # As from a terminal: a shell's background job (CI started with `&`) inherits SIGINT
        # ignored, and Ctrl-C would then never reach the command.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    )
    try:
        _database_url, redis_url = proc.stdout.readline().split()  # the command is up
        deliver(proc)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            cli(devdata, "stop")  # so the next tests start from stopped servers

    assert code == expected_code
    assert "PostgreSQL stopped" in proc.stderr.read()
    assert leftovers(devdata, int(redis_url.rsplit(":", 1)[1].split("/")[0])) == []


def test_run_reports_a_missing_command_and_still_cleans_up(devdata):
    result = cli(devdata, "run", "--", "adminsite-no-such-command")

    assert result.returncode == 127
    assert "cannot run 'adminsite-no-such-command'" in result.stderr
    assert "PostgreSQL stopped" in result.stderr
    assert "postgres: stopped" in cli(devdata, "status").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run"], "usage: python -m adminsite.devservices run -- COMMAND"),
        (["restart"], "unknown command 'restart'; use run, start, stop, status or env"),
        (["stop", "now"], "stop takes no arguments, got 'now'"),
    ],
)
def test_usage_errors_exit_2_with_a_message(tmp_path, args, message):
    result = cli(tmp_path, *args)

    assert result.returncode == 2
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []
