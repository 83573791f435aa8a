"""adminsite.prepared: statements prepared once per connection, run with EXECUTE."""

from __future__ import annotations

import contextlib

import pytest
from django.db import DatabaseError, connection, transaction

from adminsite.prepared import Statement

pytestmark = pytest.mark.django_db(transaction=True)

DOUBLE = Statement(
    "test_prepared_double", "SELECT %(n)s * 2, %(label)s", [("n", "bigint"), ("label", "text")]
)


def prepared_names() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {name for (name,) in cursor.fetchall()}


def run(statement: Statement, **values):
    with connection.cursor() as cursor:
        statement.execute(cursor, values)
        return cursor.fetchone()


def test_prepares_once_per_connection_and_binds_by_name():
    connection.close()
    assert run(DOUBLE, label="it's", n=21) == (42, "it's")
    assert "test_prepared_double" in prepared_names()
    assert run(DOUBLE, n=-4, label="again") == (-8, "again")

    connection.close()  # a new session has no prepared statements: prepared again
    assert "test_prepared_double" not in prepared_names()
    assert run(DOUBLE, n=1, label="new") == (2, "new")


def test_a_rolled_back_transaction_keeps_the_statement_and_a_failed_prepare_is_retried():
    connection.close()
    with transaction.atomic():
        assert run(DOUBLE, n=2, label="x") == (4, "x")
        transaction.set_rollback(True)
    assert run(DOUBLE, n=3, label="y") == (6, "y")  # still prepared after the rollback

    connection.close()
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        with contextlib.suppress(DatabaseError):
            cursor.execute("SELECT 1/0")  # the transaction is now aborted
        DOUBLE.execute(cursor, {"n": 1, "label": "z"})  # so PREPARE fails
    assert run(DOUBLE, n=5, label="z") == (10, "z")  # prepared now


def test_placeholders_must_match_the_declared_parameters():
    with pytest.raises(ValueError, match="placeholders"):
        Statement("test_bad", "SELECT %(a)s, %(b)s", [("a", "int")])
    with pytest.raises(ValueError, match="statement name"):
        Statement("Bad-Name", "SELECT 1", [])
