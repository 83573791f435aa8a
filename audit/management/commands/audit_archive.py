"""Archive and purge audit entries past retention (AUDIT_RETENTION_DAYS, default 7 years).

    python manage.py audit_archive --dry-run   # what would be archived and purged
    python manage.py audit_archive --yes       # do it without asking

Entries go to a gzip JSON Lines archive under AUDIT_ARCHIVE_DIR (verifiable on its own with
``audit_verify --archive FILE``), a signed purge checkpoint names it, and only then are the
entries deleted. A legal hold (AUDIT_LEGAL_HOLD) stops the purge.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from audit import archive, context, services


class Command(BaseCommand):
    help = (
        "Archive audit entries past retention, then purge them (asks first; --dry-run to preview)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="Only say what would be archived and purged."
        )
        parser.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")
        parser.add_argument(
            "--no-progress", action="store_true", help="Do not draw a progress bar."
        )

    def handle(self, *args, **options):
        with context.audit_context(actor=context.SYSTEM, source="command:audit_archive"):
            plan = services.retention_plan()
            self.stdout.write(plan.describe())
            if options["dry_run"] or plan.legal_hold or not plan.count:
                return
            if not options["yes"]:
                if not sys.stdin.isatty():
                    raise CommandError(
                        "Not asking on a non-interactive input: pass --yes to archive and purge."
                    )
                answer = input(
                    f"Archive and purge these {plan.count} entries? Type 'yes' to continue: "
                )
                if answer.strip().lower() != "yes":
                    self.stdout.write("Nothing changed.")
                    return
            show = not options["no_progress"] and sys.stderr.isatty()
            try:
                with tqdm(total=2 * plan.count, desc="Archiving and purging", unit=" entries", unit_scale=True,
                          disable=not show, file=sys.stderr) as bar:  # fmt: skip
                    result = services.archive_and_purge(progress=bar.update)
            except archive.ArchiveError as exc:
                raise CommandError(f"Nothing was purged: {exc}") from None
        if result.plan.legal_hold:
            self.stdout.write("A legal hold came into force: nothing was purged.")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Archived and purged {result.purged} entries into {result.archive_path}."
            )
        )
