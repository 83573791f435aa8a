"""Verify the audit chain (or one retention archive) and say where it is broken.

    python manage.py audit_verify                     # the chain and its checkpoints
    python manage.py audit_verify --archive FILE      # an archive, on its own

Exit status: 0 intact, 1 broken (the first broken entry is named), 2 unusable input.
"""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from audit import archive, chain, context


class Command(BaseCommand):
    help = "Verify the tamper-evident audit chain and its signed checkpoints (or an archive file)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--archive",
            metavar="FILE",
            help="Verify this retention archive instead of the database.",
        )
        parser.add_argument(
            "--no-progress", action="store_true", help="Do not draw a progress bar."
        )
        parser.add_argument(
            "--max-unsealed-age",
            type=int,
            metavar="SECONDS",
            help="Report entries still unlinked after this long (default: AUDIT_MAX_UNSEALED_SECONDS).",
        )

    def handle(self, *args, **options):
        show_progress = not options["no_progress"] and sys.stderr.isatty()
        with context.audit_context(actor=context.SYSTEM, source="command:audit_verify"):
            if options["archive"]:
                report = self._verify_archive(Path(options["archive"]), show_progress)
            else:
                report = self._verify_chain(options["max_unsealed_age"], show_progress)
        for problem in report.problems[1:]:
            self.stderr.write(f"  - {problem.message}")
        if not report.ok:
            self.stderr.write(self.style.ERROR(report.summary()))
            sys.exit(1)
        self.stdout.write(self.style.SUCCESS(report.summary()))

    def _verify_chain(self, max_age, show_progress):
        if max_age is not None and max_age < 0:
            raise CommandError("--max-unsealed-age must be 0 or more seconds", returncode=2)
        with tqdm(desc="Verifying audit chain", unit=" entries", unit_scale=True, disable=not show_progress,
                  file=sys.stderr) as bar:  # fmt: skip
            report = chain.verify(progress=bar.update, stale_after_seconds=max_age)
        if report.ok and report.unsealed:
            self.stdout.write(
                f"{report.unsealed} recent entries are waiting to be linked (normal under load)."
            )
        return report

    def _verify_archive(self, path: Path, show_progress):
        try:
            with tqdm(desc=f"Verifying {path.name}", unit=" entries", unit_scale=True, disable=not show_progress,
                      file=sys.stderr) as bar:  # fmt: skip
                return archive.verify(path, progress=bar.update)
        except archive.ArchiveError as exc:
            raise CommandError(str(exc), returncode=2) from None
