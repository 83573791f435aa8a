"""A writer process for the concurrency test (and the benchmark): ``python -m
tests.audit.chain_writer COUNT NAME``. It sets Django up, prints "ready", waits for a line on
stdin, then records COUNT entries, one transaction each, each sealed after its commit as in a
web request; it seals once more before exiting, as a stopping worker would."""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    count, name = int(argv[0]), argv[1]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adminsite.settings")
    import django

    django.setup()
    from django.db import connection, transaction

    from audit import chain
    from audit.context import audit_context
    from audit.services import record

    connection.ensure_connection()
    print("ready", flush=True)
    sys.stdin.readline()
    with audit_context(request_id=f"writer-{name}", source="test:writer"):
        for number in range(count):
            with transaction.atomic():
                record("test.concurrent", data={"writer": name, "n": number})
    chain.seal()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
