"""Demo catalogue for ``python manage.py seed_demo``.

With Stripe configured the catalogue comes from Stripe (``stripe_sync``); without it these
local demo products make the shop usable. Prices in minor units: USD cents, and a yen price
(zero-decimal) to show that currencies format by their own rules.
"""

from __future__ import annotations

from adminsite.seed import SeedContext, SeedStep, register_step
from shop import services, stripe_api

DEMO_PRODUCTS = [
    {
        "id": "prod_demo_starter",
        "name": "Starter plan",
        "description": "One mailbox, 10 GB storage, email support.",
        "prices": [
            {"id": "price_demo_starter_month", "currency": "usd", "unit_amount": 900, "interval": "month", "nickname": "Monthly"},
            {"id": "price_demo_starter_year", "currency": "usd", "unit_amount": 9000, "interval": "year", "nickname": "Yearly"},
        ],
    },
    {
        "id": "prod_demo_team",
        "name": "Team plan",
        "description": "Up to 25 mailboxes, shared inboxes, priority support.",
        "prices": [
            {"id": "price_demo_team_month", "currency": "usd", "unit_amount": 4900, "interval": "month", "nickname": "Monthly"},
        ],
    },
    {
        "id": "prod_demo_storage",
        "name": "Extra storage 50 GB",
        "description": "Adds 50 GB to every mailbox of the account. One-time purchase.",
        "prices": [
            {"id": "price_demo_storage", "currency": "usd", "unit_amount": 1999, "nickname": "One-time"},
        ],
    },
    {
        "id": "prod_demo_migration",
        "name": "Assisted migration",
        "description": "We move your old mailboxes over for you, history included.",
        "prices": [
            {"id": "price_demo_migration", "currency": "usd", "unit_amount": 14900, "nickname": "One-time"},
        ],
    },
    {
        "id": "prod_demo_domain_jp",
        "name": "Custom domain (Japan)",
        "description": "A .jp domain registered and connected, billed in yen.",
        "prices": [
            {"id": "price_demo_domain_jp", "currency": "jpy", "unit_amount": 3200, "nickname": "One-time"},
        ],
    },
]  # fmt: skip


def seed_catalogue(ctx: SeedContext) -> None:
    if stripe_api.configured():
        ctx.add_note("Shop: Stripe is configured; load its catalogue with `manage.py stripe_sync`.")
        return
    created, existing = services.seed_demo_catalogue(DEMO_PRODUCTS)
    ctx.created(created)
    ctx.existing(existing)
    ctx.add_note(
        "Shop: demo products at /shop/ (Stripe is not configured, so checkout explains it)."
    )


register_step(SeedStep("shop catalogue", seed_catalogue, order=400))
