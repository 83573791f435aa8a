"""Dockerfile and docker-compose.yml. There is no container engine here, so these check what
can be checked without one: the files parse and hold the services, commands and settings the
deployment needs; the compose environment is accepted by our settings (``check --deploy``);
the healthcheck probe works against a real server; ``docker compose config`` validates the
file where a compose client is installed (it only parses, no engine or network needed)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
COMPOSE = ROOT / "docker-compose.yml"
APP_SERVICES = ("migrate", "web", "sealer", "worker", "beat")

# What an operator must provide; the compose file refuses to start without the first two.
OPERATOR_ENV = {
    "SECRET_KEY": "k7#Qz!v9LmP2xR8wT4yU6iO0pA3sD5fG7hJ9kL1zX3cV5bN7mQ",
    "POSTGRES_PASSWORD": "correct-horse-battery",
    "ALLOWED_HOSTS": "console.example.com",
}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``."""

    def replace(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        current = env.get(name, "")
        if op == ":?" and not current:
            raise KeyError(f"{name}: {arg}")
        if op == ":-" and not current:
            return arg
        return current

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:-|:\?)([^}]*))?\}", replace, value)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def app_env(compose: dict, service: str, env: dict[str, str]) -> dict[str, str]:
    return {
        k: interpolate(str(v), env) for k, v in compose["services"][service]["environment"].items()
    }


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


# --- Dockerfile ---------------------------------------------------------------------------


def test_dockerfile_builds_a_non_root_gunicorn_image():
    steps = dockerfile_instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    runs = [arg for op, arg in steps if op == "RUN"]
    assert any(re.search(r"\bpip install \.(\s|$)", run) for run in runs), (
        "installs from pyproject.toml"
    )
    assert any("manage.py collectstatic --noinput" in run for run in runs)

    users = [(i, arg) for i, (op, arg) in enumerate(steps) if op == "USER"]
    assert users, "the image must drop root"
    last_user_index, user = users[-1]
    assert user not in {"root", "0"}
    assert any(re.search(rf"useradd .*\b{user}\b", run) for run in runs)
    # Everything after USER runs unprivileged; installs and collectstatic come before it.
    assert all(op != "RUN" for op, _ in steps[last_user_index:])

    (cmd,) = [arg for op, arg in steps if op == "CMD"]
    assert cmd.startswith('["gunicorn", "adminsite.wsgi:application"')
    assert '"0.0.0.0:8000"' in cmd
    assert ("EXPOSE", "8000") in steps


def test_dockerfile_installs_dependencies_before_copying_the_code():
    steps = dockerfile_instructions()
    order = [(op, arg) for op, arg in steps if op in {"COPY", "RUN"}]
    first_pip = next(i for i, (op, arg) in enumerate(order) if op == "RUN" and "pip install" in arg)
    copies_before = [arg for op, arg in order[:first_pip] if op == "COPY"]
    assert copies_before == ["pyproject.toml ./"]


def test_dockerignore_keeps_local_state_out_of_the_image():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".devdata", "staticfiles", "tests", ".env"} <= ignored


# --- docker-compose.yml -------------------------------------------------------------------


def test_compose_has_the_services(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "redis", *APP_SERVICES}
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    for name in APP_SERVICES:
        assert services[name]["build"] == "."
        assert services[name]["image"] == "adminsite:latest"


def test_migrate_runs_once_and_the_processes_wait_for_it(compose):
    services = compose["services"]
    migrate = services["migrate"]
    assert migrate["command"][:3] == ["python", "manage.py", "migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"] == {"condition": "service_healthy"}
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["postgres"] == {"condition": "service_healthy"}, name
        assert depends["redis"] == {"condition": "service_healthy"}, name


def test_process_commands(compose):
    services = compose["services"]
    web = services["web"]
    assert web["command"][:2] == ["gunicorn", "adminsite.wsgi:application"]
    assert "0.0.0.0:8000" in web["command"]
    assert web["ports"] == ["${WEB_PORT:-8000}:8000"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "adminsite", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "adminsite", "beat"]
    assert services["sealer"]["command"] == ["python", "manage.py", "audit_sealer"]


def test_app_environment(compose):
    for name in APP_SERVICES:
        env = app_env(compose, name, OPERATOR_ENV)
        assert (
            env["DATABASE_URL"]
            == "postgres://adminsite:correct-horse-battery@postgres:5432/adminsite"
        )
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["SECRET_KEY"] == OPERATOR_ENV["SECRET_KEY"]
        assert env["DEBUG"] == "false"
        assert env["ALLOWED_HOSTS"] == "console.example.com"
    postgres = compose["services"]["postgres"]["environment"]
    assert interpolate(postgres["POSTGRES_PASSWORD"], OPERATOR_ENV) == "correct-horse-battery"


def test_compose_refuses_to_start_without_secrets(compose):
    for missing in ("SECRET_KEY", "POSTGRES_PASSWORD"):
        env = {k: v for k, v in OPERATOR_ENV.items() if k != missing}
        with pytest.raises(KeyError, match=missing):
            app_env(compose, "web", env)


def test_healthchecks(compose):
    services = compose["services"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert services["web"]["healthcheck"]["test"][-1] == "http://127.0.0.1:8000/healthz"
    assert services["beat"]["healthcheck"]["test"][-1] == "http://web:8000/readyz"
    assert "inspect ping" in services["worker"]["healthcheck"]["test"][1]


def test_compose_environment_passes_djangos_deploy_checks(compose):
    """The settings accept the production environment as compose sets it (DEBUG off, secure
    cookies, HSTS...) without starting the embedded development servers. (Schema warnings,
    which ``--deploy`` also reports, are test_api_base's concern.)"""
    env = app_env(compose, "web", OPERATOR_ENV)
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "check",
            "--deploy",
            "--tag",
            "security",
            "--fail-level",
            "WARNING",
        ],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    ("allowed_hosts", "path", "ok"),
    [
        ("localhost,127.0.0.1", "/healthz", True),
        ("*", "/healthz", True),
        ("localhost", "/api/no-such-endpoint", False),
        ("console.example.com", "/healthz", False),  # the live server does not accept that host
    ],
)
def test_healthcheck_probe_against_a_real_server(compose, live_server, allowed_hosts, path, ok):
    test = compose["services"]["web"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    probe = test[3]
    result = subprocess.run(
        [sys.executable, "-c", probe, f"{live_server.url}{path}"],
        env={"PATH": os.environ["PATH"], "ALLOWED_HOSTS": allowed_hosts},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode == 0) is ok, result.stderr


def _compose_client() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        plugin = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if plugin.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.mark.skipif(_compose_client() is None, reason="no docker compose client installed")
def test_docker_compose_config_validates(tmp_path):
    client = _compose_client()
    # Only the variables we pass: nothing from this machine's environment or a .env file.
    base_env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    ok = subprocess.run(
        [*client, "--project-directory", str(ROOT), "-f", str(COMPOSE), "config", "-q"],
        env={**base_env, **OPERATOR_ENV},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr

    missing = subprocess.run(
        [*client, "--project-directory", str(ROOT), "-f", str(COMPOSE), "config", "-q"],
        env={**base_env, "POSTGRES_PASSWORD": "p"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode != 0
    assert "set SECRET_KEY" in missing.stderr
