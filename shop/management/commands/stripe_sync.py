"""``python manage.py stripe_sync``: reconcile the catalogue (products and prices, archived
ones included) with Stripe. Idempotent: a second run changes nothing.

Exit codes: 0 done, 1 Stripe refused or failed mid-way (the run is recorded as failed, what was
synced stays), 2 Stripe is not configured.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand
from tqdm import tqdm

from shop import services, stripe_api


class Command(BaseCommand):
    help = "Reconcile products and prices (archived ones too) with Stripe."

    def add_arguments(self, parser):
        parser.add_argument("--no-progress", action="store_true", help="Hide the progress bars.")

    def handle(self, *args, no_progress: bool = False, **options):
        if not stripe_api.configured():
            self.stderr.write(
                "Stripe is not configured: set STRIPE_SECRET_KEY (and STRIPE_API_BASE for a "
                "local fake). Without it the shop shows the demo catalogue from seed_demo."
            )
            sys.exit(2)

        def progress(iterable, *, desc):
            return tqdm(
                iterable, desc=f"{desc:<9}", unit=" obj", file=sys.stderr, disable=no_progress
            )

        try:
            run = services.sync_catalogue(trigger="command", progress=progress)
        except (stripe_api.StripeUnavailableError, stripe_api.StripeRejectedError) as error:
            self.stderr.write(f"Sync failed: {error}")
            sys.exit(1)
        self.stdout.write(
            f"Synced {run.products_seen} products and {run.prices_seen} prices: {run.created} "
            f"new, {run.updated} changed, {run.unchanged} unchanged (sync #{run.pk})."
        )
