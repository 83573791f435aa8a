"""Settings from the environment: the typed readers in adminsite.env, and whole settings
modules loaded in a subprocess with a given environment (production checks, clear errors)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from adminsite import env
from adminsite.env import ImproperlyConfiguredError

BASE_DIR = Path(__file__).resolve().parent.parent.parent
# The subprocesses below get only these from this process's environment, then what each test
# states: nothing a test run sets (DJANGO_ALLOW_ASYNC_UNSAFE for Playwright, xdist's variables)
# or a developer's shell exports may change what the settings see.
INHERITED = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "XDG_RUNTIME_DIR"}


def manage(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """``python manage.py ARGS`` on this run's PostgreSQL and Redis, with ``variables`` set."""
    environment = {k: v for k, v in os.environ.items() if k in INHERITED}
    environment.update(
        DATABASE_URL=settings.DATABASE_URL, REDIS_URL=settings.REDIS_URL, **variables
    )
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- adminsite.env -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True), ("true", True), ("TRUE", True), (" yes ", True), ("on", True),
        ("0", False), ("false", False), ("No", False), ("off", False), ("", False),
    ],
)  # fmt: skip
def test_get_bool_reads_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("ADMINSITE_FLAG", raw)

    assert env.get_bool("ADMINSITE_FLAG", default=not expected) is expected


def test_get_bool_falls_back_to_the_default_when_unset(monkeypatch):
    monkeypatch.delenv("ADMINSITE_FLAG", raising=False)

    assert env.get_bool("ADMINSITE_FLAG", default=True) is True
    assert env.get_bool("ADMINSITE_FLAG", default=False) is False


def test_get_bool_rejects_anything_else_naming_the_variable(monkeypatch):
    monkeypatch.setenv("ADMINSITE_FLAG", "maybe")

    with pytest.raises(
        ImproperlyConfiguredError, match=r"^ADMINSITE_FLAG must be a boolean .*'maybe'"
    ):
        env.get_bool("ADMINSITE_FLAG", default=False)


def test_get_int_parses_and_treats_blank_as_unset(monkeypatch):
    monkeypatch.setenv("ADMINSITE_NUMBER", " 42 ")
    assert env.get_int("ADMINSITE_NUMBER", default=7) == 42

    monkeypatch.setenv("ADMINSITE_NUMBER", "-3")
    assert env.get_int("ADMINSITE_NUMBER", default=7) == -3

    monkeypatch.setenv("ADMINSITE_NUMBER", "  ")
    assert env.get_int("ADMINSITE_NUMBER", default=7) == 7

    monkeypatch.delenv("ADMINSITE_NUMBER")
    assert env.get_int("ADMINSITE_NUMBER", default=7) == 7


@pytest.mark.parametrize("raw", ["ten", "1.5", "0x10", "8000/tcp"])
def test_get_int_rejects_non_integers_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv("ADMINSITE_NUMBER", raw)

    with pytest.raises(
        ImproperlyConfiguredError, match=rf"^ADMINSITE_NUMBER must be an integer, got '{raw}'$"
    ):
        env.get_int("ADMINSITE_NUMBER", default=0)


def test_get_float_parses_numbers_and_names_the_variable_when_it_cannot(monkeypatch):
    monkeypatch.setenv("ADMINSITE_SECONDS", " 0.25 ")
    assert env.get_float("ADMINSITE_SECONDS", default=1.0) == 0.25
    monkeypatch.setenv("ADMINSITE_SECONDS", "")
    assert env.get_float("ADMINSITE_SECONDS", default=1.0) == 1.0
    monkeypatch.setenv("ADMINSITE_SECONDS", "soon")
    with pytest.raises(
        ImproperlyConfiguredError, match=r"^ADMINSITE_SECONDS must be a number, got 'soon'$"
    ):
        env.get_float("ADMINSITE_SECONDS", default=1.0)


def test_get_list_splits_on_commas_and_drops_blanks(monkeypatch):
    monkeypatch.setenv("ADMINSITE_HOSTS", " a.example.com, b.example.com ,,[::1] ,")

    assert env.get_list("ADMINSITE_HOSTS", default=["x"]) == [
        "a.example.com",
        "b.example.com",
        "[::1]",
    ]


def test_get_list_set_but_empty_means_an_empty_list_not_the_default(monkeypatch):
    monkeypatch.setenv("ADMINSITE_HOSTS", "")
    assert env.get_list("ADMINSITE_HOSTS", default=["x"]) == []

    monkeypatch.delenv("ADMINSITE_HOSTS")
    default = ["localhost"]
    result = env.get_list("ADMINSITE_HOSTS", default=default)
    assert result == ["localhost"]
    assert result is not default  # callers may append without changing the default


def test_email_url_smtp_with_credentials_and_tls():
    parsed = env.parse_email_url("smtp+tls://mailer%40example.com:p%2Fss%3Aword@smtp.example.com")

    assert parsed == {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "smtp.example.com",
        "EMAIL_PORT": 587,
        "EMAIL_HOST_USER": "mailer@example.com",
        "EMAIL_HOST_PASSWORD": "p/ss:word",
        "EMAIL_USE_TLS": True,
        "EMAIL_USE_SSL": False,
    }


@pytest.mark.parametrize(
    ("url", "port", "tls", "ssl"),
    [
        ("smtp://relay.internal", 25, False, False),
        ("smtp://relay.internal:2525", 2525, False, False),
        ("submission://relay.internal", 587, True, False),
        ("smtps://relay.internal", 465, False, True),
        ("smtp+ssl://relay.internal:1465", 1465, False, True),
        ("smtp://relay.internal?tls=true", 587, True, False),
    ],
)
def test_email_url_ports_and_encryption(url, port, tls, ssl):
    parsed = env.parse_email_url(url)

    assert (parsed["EMAIL_HOST"], parsed["EMAIL_PORT"]) == ("relay.internal", port)
    assert (parsed["EMAIL_USE_TLS"], parsed["EMAIL_USE_SSL"]) == (tls, ssl)
    assert parsed["EMAIL_HOST_USER"] == parsed["EMAIL_HOST_PASSWORD"] == ""


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        ("console://", "django.core.mail.backends.console.EmailBackend"),
        ("locmem://", "django.core.mail.backends.locmem.EmailBackend"),
        ("dummy://", "django.core.mail.backends.dummy.EmailBackend"),
    ],
)
def test_email_url_local_backends(url, backend):
    assert env.parse_email_url(url)["EMAIL_BACKEND"] == backend


def test_email_url_unknown_scheme_names_the_variable_and_the_choices():
    with pytest.raises(ImproperlyConfiguredError) as caught:
        env.parse_email_url("sendgrid://key@api")

    assert str(caught.value) == (
        "EMAIL_URL scheme must be one of console, dummy, locmem, smtp, smtp+ssl, smtp+tls, "
        "smtps, submission, got 'sendgrid'"
    )


def test_email_url_bad_port_names_the_variable():
    with pytest.raises(
        ImproperlyConfiguredError, match=r"^EMAIL_URL has an invalid port: 'smtp://host:99999'$"
    ):
        env.parse_email_url("smtp://host:99999")


# --- the settings module -------------------------------------------------------------------


def test_settings_know_they_run_under_pytest(django_db_setup):
    assert settings.TESTING is True
    assert settings.PASSWORD_HASHERS == ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # This process's Redis keys are its own, named after its test database (test_adminsite_gw1
    # under xdist), so a worker started for another run never takes this run's tasks.
    prefix = f"{connection.settings_dict['NAME']}:"
    assert prefix == settings.REDIS_KEY_PREFIX
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] == prefix
    assert settings.CACHES["default"]["KEY_PREFIX"] == f"{prefix}adminsite"


def test_production_settings_pass_the_deploy_checks():
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="console.example.com",
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key():
    result = manage("check", DEBUG="false", ALLOWED_HOSTS="console.example.com")

    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "DEBUG",
            "sometimes",
            "DEBUG must be a boolean (true/false, 1/0, yes/no), got 'sometimes'",
        ),
        ("PORT", "eighty", "PORT must be an integer, got 'eighty'"),
        ("EMAIL_URL", "pigeon://coop", "EMAIL_URL scheme must be one of"),
    ],
)
def test_a_bad_variable_stops_start_up_with_its_name(variable, value, message):
    result = manage("check", **{variable: value})

    assert result.returncode != 0
    assert message in result.stderr
