"""What the benchmarks share: their own databases beside the development one, and percentiles.

Imported by the bench/bench_*.py scripts (run as scripts, this folder is on their path); not a
benchmark itself.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit


def bench_database_url(name: str) -> str:
    """DATABASE_URL (or the embedded server's) pointing at the database ``name`` instead."""
    base = os.environ.get("DATABASE_URL", "")
    if not base:
        from adminsite import devservices

        base = devservices.ensure_postgres()
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"/{name}"))


def ensure_database(url: str) -> None:
    """Create the database of ``url`` if it does not exist yet."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]
