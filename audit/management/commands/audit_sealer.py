"""Link new audit entries into the hash chain as they commit: the sealer process.

    python manage.py audit_sealer                 # run until SIGTERM / Ctrl-C
    python manage.py audit_sealer --once          # seal what is committed now, then exit

``make run`` starts one (Procfile ``sealer``); run one per installation (a second one is safe:
only the holder of the sealing lock works, the other waits its turn). Celery beat's
``audit.seal_chain`` backstop seals every few seconds as well, so a stopped sealer delays
linking but loses nothing.

Exit status: 0 after a clean stop, 1 when the database cannot be reached at all.
"""

from __future__ import annotations

import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from audit import chain


class Command(BaseCommand):
    help = "Link committed audit entries into the tamper-evident chain, continuously (or --once)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--interval",
            type=float,
            default=settings.AUDIT_SEAL_INTERVAL,
            metavar="SECONDS",
            help="Pause between sealing rounds (default: AUDIT_SEAL_INTERVAL, %(default)s).",
        )
        parser.add_argument(
            "--once",
            action="store_true",
            help="Seal what is committed now, print how many, and exit.",
        )

    def handle(self, *args, **options):
        interval = options["interval"]
        if not 0.01 <= interval <= 60:
            raise CommandError(f"--interval must be between 0.01 and 60 seconds, got {interval}")
        if options["once"]:
            try:
                linked = chain.seal()
            except DatabaseError as error:
                raise CommandError(f"could not seal: {error}") from error
            self.stdout.write(f"Linked {linked} entries.")
            return
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"Audit sealer running (a round every {interval:g} s).")
        self.stdout.flush()
        linked = chain.run_sealer(interval=interval, should_stop=lambda: stopping)
        self.stdout.write(f"Audit sealer stopped after linking {linked} entries.")
