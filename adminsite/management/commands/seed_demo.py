"""Load demo data: staff users for every role, customers, and whatever later apps register.

    python manage.py seed_demo            # idempotent: a second run changes nothing
    python manage.py seed_demo --help     # lists the flags each app's seed step adds

The steps live in adminsite/seed.py and in each app's own ``seed.py``.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils.module_loading import module_has_submodule

from adminsite import seed


def discover_steps() -> list[seed.SeedStep]:
    """Import ``<app>.seed`` for every project app (not third-party ones) so it can register."""
    base = Path(settings.BASE_DIR).resolve()
    for config in apps.get_app_configs():
        inside_project = Path(config.path).resolve().is_relative_to(base)
        if inside_project and module_has_submodule(config.module, "seed"):
            import_module(f"{config.name}.seed")
    return seed.steps()


class Command(BaseCommand):
    help = "Create demo users and data for every console section; safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--no-progress", action="store_true", help="Hide the progress bars.")
        for step in discover_steps():
            if step.arguments:
                step.arguments(parser)

    def handle(self, *args, **options):
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if pending:
            raise CommandError(
                f"The database has {len(pending)} unapplied migration(s): run "
                "`python manage.py migrate` first."
            )
        ctx = seed.SeedContext(options=options, show_progress=not options["no_progress"])
        for step in discover_steps():
            ctx.step = step.name
            ctx.counts.setdefault(step.name, {"created": 0, "existing": 0})
            try:
                with transaction.atomic():
                    step.run(ctx)
            except ValidationError as exc:
                raise CommandError(
                    f"Seed step {step.name!r} failed, nothing of it was saved: {exc}"
                ) from exc

        created = sum(c["created"] for c in ctx.counts.values())
        existing = sum(c["existing"] for c in ctx.counts.values())
        if created:
            detail = ", ".join(
                f"{name} {c['created']}" for name, c in ctx.counts.items() if c["created"]
            )
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created {created} rows ({detail}); {existing} were already there."
                )
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Nothing to do: the demo data is already in place ({existing} rows checked, none changed)."
                )
            )
        self.print_logins(ctx)

    def print_logins(self, ctx: seed.SeedContext) -> None:
        site = settings.SITE_URL.rstrip("/")
        headers = ("Username", "Password", "Role", "Sign in at", "Lands on")
        rows = [
            (lg.username, lg.password, lg.role, site + lg.sign_in_at, lg.lands_on)
            for lg in ctx.logins
        ]
        widths = [
            max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)
        ]

        def line(cells):
            return "  ".join(
                str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True)
            ).rstrip()

        self.stdout.write("")
        self.stdout.write(
            self.style.MIGRATE_HEADING(
                "Demo logins (demo data only: never use these passwords in production)"
            )
        )
        self.stdout.write(line(headers))
        self.stdout.write(line(["-" * width for width in widths]))
        for row in rows:
            self.stdout.write(line(row))
        for note in ctx.notes:
            self.stdout.write(note)
