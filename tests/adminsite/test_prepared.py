"""adminsite.prepared: statements prepared once per connection, then only bound and run."""

from __future__ import annotations

import contextlib

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from adminsite.prepared import Statement

pytestmark = pytest.mark.django_db(transaction=True)

DOUBLE = Statement(
    "test_prepared_double", "SELECT %(n)s * 2, %(label)s", [("n", "bigint"), ("label", "text")]
)


def prepared() -> list[str]:
    """The connection's prepared statements running DOUBLE's SQL."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s",
            ["SELECT $1::bigint * 2%"],
        )
        return [statement for (statement,) in cursor.fetchall()]


def run(statement: Statement, **values):
    return statement.execute(values).fetchone()


def test_prepares_once_per_connection_and_binds_by_name():
    connection.close()
    assert run(DOUBLE, label="it's", n=21) == (42, "it's")
    assert prepared() == ["SELECT $1::bigint * 2, $2::text"]
    assert run(DOUBLE, n=-4, label="again") == (-8, "again")
    assert run(DOUBLE, n=2**40, label="") == (2**41, "")  # any int: still the one statement
    assert len(prepared()) == 1

    connection.close()  # a new session has no prepared statements: prepared again
    assert prepared() == []
    assert run(DOUBLE, n=1, label="new") == (2, "new")
    assert len(prepared()) == 1


def test_values_by_position_follow_the_declared_order_wherever_the_sql_uses_them():
    assert DOUBLE.execute([21, "in order"]).fetchone() == (42, "in order")
    # Used in another order than declared, and one of them twice.
    reordered = Statement(
        "test_prepared_reordered",
        "SELECT %(label)s, %(n)s + %(n)s",
        [("n", "bigint"), ("label", "text")],
    )
    assert reordered.execute([5, "by position"]).fetchone() == ("by position", 10)
    assert reordered.execute({"label": "by name", "n": 1}).fetchone() == ("by name", 2)
    with pytest.raises(ValueError, match="'test_prepared_reordered' takes 2 values, got 1"):
        reordered.execute([5])


def test_null_values_are_typed_by_the_declaration():
    assert run(DOUBLE, n=None, label=None) == (None, None)
    assert run(DOUBLE, n=3, label=None) == (6, None)


def test_a_rollback_or_an_aborted_transaction_is_followed_by_a_fresh_prepare():
    connection.close()
    with transaction.atomic():
        assert run(DOUBLE, n=2, label="x") == (4, "x")
        transaction.set_rollback(True)
    assert run(DOUBLE, n=3, label="y") == (6, "y")

    connection.close()
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        with contextlib.suppress(DatabaseError):
            cursor.execute("SELECT 1/0")  # the transaction is now aborted
        DOUBLE.execute({"n": 1, "label": "z"})  # refused, nothing prepared
    assert run(DOUBLE, n=5, label="z") == (10, "z")


def test_errors_are_djangos_and_a_failed_statement_breaks_the_atomic_block():
    duplicate = Statement(
        "test_prepared_duplicate",
        "INSERT INTO django_content_type (app_label, model) VALUES (%(app)s, %(model)s)",
        [("app", "text"), ("model", "text")],
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.execute({"app": "auth", "model": "user"})
    with transaction.atomic():
        with contextlib.suppress(IntegrityError), transaction.atomic():
            duplicate.execute({"app": "auth", "model": "user"})
        assert run(DOUBLE, n=1, label="after the savepoint") == (2, "after the savepoint")


def test_statements_are_logged_where_django_logs_queries():
    with CaptureQueriesContext(connection) as queries:
        run(DOUBLE, n=7, label="it's")
    assert len(queries) == 1
    assert queries[0]["sql"] == "/* test_prepared_double */ SELECT 7::bigint * 2, 'it''s'::text"


def test_placeholders_must_match_the_declared_parameters():
    with pytest.raises(ValueError, match="placeholders"):
        Statement("test_bad", "SELECT %(a)s, %(b)s", [("a", "int")])
    with pytest.raises(ValueError, match="statement name"):
        Statement("Bad-Name", "SELECT 1", [])
