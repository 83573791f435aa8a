"""Show the day partitions of the raw metric points, and repair the set (``--repair``)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from monitoring import storage


class Command(BaseCommand):
    help = "Show the raw metric partitions; --repair creates missing ones and drops expired ones."

    def add_arguments(self, parser):
        parser.add_argument("--repair", action="store_true", help="Create and drop partitions.")
        parser.add_argument(
            "--ahead", type=int, default=3, help="Days to create ahead (default 3)."
        )

    def handle(self, *args, repair: bool, ahead: int, **options):
        if not 0 <= ahead <= 60:
            self.stderr.write(f"--ahead must be between 0 and 60 days, got {ahead}")
            raise SystemExit(2)
        report = storage.maintain_partitions(ahead=ahead, repair=repair)
        retention = storage.raw_retention_days()
        self.stdout.write(
            f"Raw retention: {retention} days; {len(report.existing)} partitions before this run."
        )
        for day in report.existing:
            self.stdout.write(f"  {storage.partition_name(day)}")
        if repair:
            self.stdout.write(
                f"Created {len(report.created)}: {', '.join(map(str, report.created)) or '-'}"
            )
            self.stdout.write(
                f"Dropped {len(report.dropped)}: {', '.join(map(str, report.dropped)) or '-'}"
            )
        elif report.missing:
            self.stdout.write(
                f"Missing {len(report.missing)} (run with --repair): "
                + ", ".join(map(str, report.missing))
            )
        else:
            self.stdout.write("The partition set is complete.")
