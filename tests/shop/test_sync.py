"""``manage.py stripe_sync``, the catalogue mirror, money formatting and the demo catalogue."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.template import Context, Template

from shop import services
from shop.models import CatalogueSync, Price, Product
from shop.money import MoneyError, format_money, parse_amount
from shop.seed import DEMO_PRODUCTS

pytestmark = pytest.mark.django_db


def run_sync(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("stripe_sync", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, out.getvalue(), err.getvalue()


def test_sync_mirrors_everything_archived_included_with_progress(fake_stripe, capsys):
    plan = fake_stripe.add_product(id="prod_plan", name="Plan", description="Monthly plan")
    old = fake_stripe.add_product(id="prod_old", name="Retired", active=False)
    fake_stripe.add_price(plan, id="price_month", unit_amount=900, interval="month")
    fake_stripe.add_price(
        plan, id="price_month_old", unit_amount=700, interval="month", active=False
    )
    fake_stripe.add_price(old, id="price_old", unit_amount=100)
    code, out, err = run_sync()
    assert code == 0
    assert "Synced 2 products and 3 prices: 5 new, 0 changed, 0 unchanged" in out
    bars = capsys.readouterr().err  # tqdm draws on the process's stderr
    assert "Products" in bars and "Prices" in bars and "3 obj" in bars
    assert Product.objects.get(stripe_id="prod_old").active is False
    month = Price.objects.get(stripe_id="price_month")
    assert (month.unit_amount, month.recurring_interval, month.product.name) == (
        900,
        "month",
        "Plan",
    )
    assert Price.objects.get(stripe_id="price_month_old").active is False
    assert all(p.synced_at for p in Price.objects.all())


def test_sync_is_idempotent_and_catches_changes_and_deletions(fake_stripe):
    plan = fake_stripe.add_product(id="prod_plan", name="Plan")
    fake_stripe.add_price(plan, id="price_a")
    fake_stripe.add_price(plan, id="price_b")
    run_sync("--no-progress")
    code, out, _ = run_sync("--no-progress")
    assert code == 0 and "0 new, 0 changed, 3 unchanged" in out
    assert Product.objects.count() == 1 and Price.objects.count() == 2

    fake_stripe.prices["price_a"]["active"] = False
    del fake_stripe.prices["price_b"]
    code, out, _ = run_sync("--no-progress")
    assert code == 0 and "2 changed" in out
    assert Price.objects.get(stripe_id="price_a").active is False
    gone = Price.objects.get(stripe_id="price_b")
    assert gone.deleted is True and gone.active is False
    assert CatalogueSync.objects.filter(status="succeeded").count() == 3


def test_sync_pages_through_long_lists(fake_stripe):
    product = fake_stripe.add_product(id="prod_many", name="Many")
    for n in range(230):
        fake_stripe.add_price(product, id=f"price_{n:04d}", unit_amount=100 + n)
    code, _, _ = run_sync("--no-progress")
    assert code == 0
    assert Price.objects.count() == 230
    assert len(fake_stripe.calls("GET", "/v1/prices")) == 3  # 100 + 100 + 30


def test_sync_without_stripe_exits_2(no_stripe):
    code, _, err = run_sync()
    assert code == 2
    assert "Stripe is not configured" in err
    assert not CatalogueSync.objects.exists()


def test_sync_with_stripe_failing_exits_1_and_records_the_run(fake_stripe):
    fake_stripe.add_product(id="prod_plan", name="Plan")
    fake_stripe.fail("/v1/prices", status=500)
    code, _, err = run_sync("--no-progress")
    assert code == 1
    assert "Sync failed: Stripe answered with an error on its side (HTTP 500)" in err
    run = CatalogueSync.objects.get()
    assert run.status == "failed" and "HTTP 500" in run.error
    assert Product.objects.filter(stripe_id="prod_plan").exists()  # what was synced stays


def test_sync_with_a_wrong_key_exits_1(fake_stripe, settings):
    settings.STRIPE_SECRET_KEY = "rk_live_wrong"
    code, _, err = run_sync("--no-progress")
    assert code == 1
    assert "refused our API key" in err


def test_sync_does_not_undo_a_newer_webhook(fake_stripe):
    plan = fake_stripe.add_product(id="prod_plan", name="Plan")
    fake_stripe.add_price(plan, id="price_a")
    run_sync("--no-progress")
    newer = {**fake_stripe.prices["price_a"], "active": False}
    assert services.apply_price(newer, version=4_000_000_000).outcome == "updated"
    run_sync("--no-progress")  # Stripe's list still says active: older than the event
    assert Price.objects.get(stripe_id="price_a").active is False


# --- money --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (1999, "usd", "$19.99"),
        (123456789, "eur", "€1,234,567.89"),
        (3200, "jpy", "¥3,200"),
        (3200, "JPY", "¥3,200"),
        (1500, "krw", "₩1,500"),
        (12345, "kwd", "12.345 KWD"),
        (500, "chf", "5.00 CHF"),
        (-250, "usd", "-$2.50"),
        (0, "gbp", "£0.00"),
    ],
)
def test_money_is_shown_with_the_currency_decimals(amount, currency, shown):
    assert format_money(amount, currency) == shown
    rendered = Template("{% load shop_ui %}{{ a|money:c }}").render(
        Context({"a": amount, "c": currency})
    )
    assert rendered == shown


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [("12.50", "usd", 1250), ("1,200", "jpy", 1200), ("0.001", "kwd", 1), ("7", "eur", 700)],
)
def test_amounts_typed_in_the_console(text, currency, minor):
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "message"),
    [
        ("12.5", "jpy", "whole units"),
        ("0", "usd", "more than zero"),
        ("1e400", "usd", "too large"),
        ("x", "usd", "not an amount"),
        ("nan", "usd", "more than zero"),
    ],
)
def test_bad_amounts(text, currency, message):
    with pytest.raises(MoneyError, match=message):
        parse_amount(text, currency)


def test_demo_catalogue_is_seeded_once(no_stripe):
    created, existing = services.seed_demo_catalogue(DEMO_PRODUCTS)
    assert (created, existing) == (6, 0)
    assert services.seed_demo_catalogue(DEMO_PRODUCTS) == (0, 6)
    assert Product.objects.filter(source="demo").count() == 5
