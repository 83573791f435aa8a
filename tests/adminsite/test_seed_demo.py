"""``manage.py seed_demo``: demo users for every role, idempotent, extensible, with a logins table."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.management import call_command
from django.core.management.base import CommandError

from adminsite import roles, seed

pytestmark = pytest.mark.django_db


def run(*args, **options) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, "--no-progress", stdout=out, **options)
    return out.getvalue()


def logins_table(output: str) -> list[list[str]]:
    lines = output.split("Demo logins", 1)[1].splitlines()[1:]
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines if line.strip()]
    header, _rule, *body = rows
    assert header == ["Username", "Password", "Role", "Sign in at", "Lands on"]
    return [row for row in body if len(row) == 5]


def test_first_run_creates_staff_for_every_role_and_twenty_customers():
    output = run()
    users = get_user_model().objects
    staff = users.filter(is_staff=True, username__in=[row[0] for row in seed.STAFF])
    assert {roles.role_of(user) for user in staff} == set(roles.ROLES)
    customers = users.filter(is_staff=False, email__endswith=".example")
    assert customers.count() == 20
    assert all(c.first_name and c.last_name and "@" in c.email for c in customers)
    assert re.search(r"Created \d+ rows \(staff 5, customers 20[,)]", output), output


def test_second_run_changes_nothing_and_says_so():
    run()
    users_before = list(
        get_user_model().objects.order_by("pk").values_list("pk", "password", "last_login")
    )
    output = run()
    assert re.search(
        r"Nothing to do: the demo data is already in place \(\d+ rows checked, none changed\)\.",
        output,
    ), output
    assert (
        list(get_user_model().objects.order_by("pk").values_list("pk", "password", "last_login"))
        == users_before
    )
    assert logins_table(output), "the logins table is printed on every run"


def test_every_login_in_the_table_signs_in_and_lands_where_it_says(client):
    table = logins_table(run())
    assert {row[2] for row in table} >= {*roles.ROLES, "Customer"}
    for username, password, _role, sign_in_at, lands_on in table:
        client.logout()
        path = re.sub(r"^https?://[^/]+", "", sign_in_at)
        response = client.post(path, {"username": username, "password": password}, follow=True)
        assert response.redirect_chain, f"{username} could not sign in at {path}"
        assert response.redirect_chain[-1][0] == lands_on, username
        assert response.status_code == 200


def test_steps_registered_by_other_apps_run_with_their_own_flags():
    seen = []

    def add_arguments(parser):
        parser.add_argument("--widgets", type=int, default=2, help="How many demo widgets.")

    def seed_widgets(ctx):
        for n in ctx.progress(range(ctx.options["widgets"]), desc="Widgets"):
            seen.append(n)
            ctx.created()

    saved = list(seed.STEPS)
    try:
        seed.register_step(
            seed.SeedStep("widgets", seed_widgets, order=300, arguments=add_arguments)
        )
        output = run("--widgets", "3")
    finally:
        seed.STEPS[:] = saved
    assert seen == [0, 1, 2]
    assert "widgets 3" in output


def test_a_failing_step_names_itself_and_saves_nothing_of_its_own():
    def broken(ctx):
        from adminsite import services

        services.create_customer(actor=None, username="half-made", email="h@example.com")
        services.create_customer(actor=None, username="bad", email="b@example.com", password="123")

    saved = list(seed.STEPS)
    try:
        seed.register_step(seed.SeedStep("broken", broken, order=900))
        with pytest.raises(CommandError, match="Seed step 'broken' failed.*password"):
            run()
    finally:
        seed.STEPS[:] = saved
    assert not get_user_model().objects.filter(username="half-made").exists()


def test_progress_bars_go_to_stderr(capsys):
    call_command("seed_demo", stdout=io.StringIO())
    assert "Customers" in capsys.readouterr().err


def test_demo_passwords_pass_the_password_validators():
    # The seed hashes each demo password once and hands the hash to the services, which then
    # cannot validate it themselves.
    user_model = get_user_model()
    for username, password, *_ in seed.STAFF:
        validate_password(
            password, user_model(username=username, email=f"{username}@adminsite.example")
        )
    validate_password(seed.CUSTOMER_PASSWORD, user_model(username="maria.garcia"))
