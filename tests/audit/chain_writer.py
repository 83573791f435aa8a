"""A writer process for the concurrency test (and the benchmark): ``python -m
tests.audit.chain_writer COUNT NAME``. It sets Django up, prints "ready", waits for a line on
stdin, then records COUNT entries, one transaction each, as web requests do; sealing is left to
the sealer processes the test runs beside it."""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    count, name = int(argv[0]), argv[1]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adminsite.settings")
    import django

    django.setup()
    from django.db import connection, transaction

    from audit.context import audit_context
    from audit.services import record

    connection.ensure_connection()
    print("ready", flush=True)
    sys.stdin.readline()
    with audit_context(request_id=f"writer-{name}", source="test:writer"):
        for number in range(count):
            with transaction.atomic():
                record("test.concurrent", data={"writer": name, "n": number})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
