"""Server-side prepared statements for the fixed statements on the hottest paths: the audit
trail's insert, automatic assignment, and the reads of the ticket queue and ticket pages.

Django's psycopg backend binds parameters on the client and never prepares, so PostgreSQL
parses and plans each statement again on every call; for these short statements that costs
as much as running them, and building them with the ORM costs more again. Preparing every
statement (psycopg's automatic ``prepare_threshold``) is no option: after five runs PostgreSQL
may switch a statement to a generic plan, which is far slower for the queue's full-text
search. A :class:`Statement` is prepared by psycopg (protocol-level ``Parse``) the first time a
connection runs it, then only bound and executed, with its parameters sent separately from the
SQL instead of quoted into it.

psycopg keeps track of what it prepared: a rollback, or a DROP or ALTER on the connection,
makes it deallocate its statements, and the next run prepares again. It prepares one statement
per combination of the types its values are sent with; NULLs and text are sent untyped, and so
are integers here (every parameter is cast to its declared type in the SQL), so a statement
whose integers are sometimes NULL is still prepared once.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from psycopg.types.numeric import Int8Dumper

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
# A threshold psycopg never reaches: nothing is prepared unless a Statement asks for it.
ONLY_WHEN_ASKED = 2**31


class Statement:
    """One SQL statement with ``%(name)s`` placeholders, each declared with its SQL type."""

    def __init__(self, name: str, sql: str, parameters: Sequence[tuple[str, str]]) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"statement name {name!r}: use lower-case letters, digits and _")
        types = dict(parameters)
        used = set(_PLACEHOLDER.findall(sql))
        if used != set(types):
            raise ValueError(
                f"statement {name!r}: placeholders {sorted(used)} do not match the declared"
                f" parameters {sorted(types)}"
            )
        self.name = name
        self.keys = tuple(key for key, _type in parameters)
        # Positional placeholders, each cast to its declared type (so an untyped NULL means
        # the same): psycopg then takes the values as they come, without reordering a mapping.
        self._uses = tuple(_PLACEHOLDER.findall(sql))
        self._picks = tuple(self.keys.index(key) for key in self._uses)
        self._in_order = self._picks == tuple(range(len(self.keys)))
        self.sql = _PLACEHOLDER.sub(lambda match: f"%s::{types[match.group(1)]}", sql)

    def execute(
        self, values: Mapping[str, Any] | Sequence[Any], *, using: str = DEFAULT_DB_ALIAS
    ) -> Any:
        """Run the statement on the ``using`` connection, in its current transaction, with
        ``values`` by name, or as a sequence in the order the parameters were declared;
        returns the cursor to fetch the results from. The cursor is this statement's own on
        the connection: fetch before running the same statement again."""
        if isinstance(values, Mapping):
            params: Sequence[Any] = [values[key] for key in self._uses]
        elif len(values) != len(self.keys):
            raise ValueError(
                f"statement {self.name!r} takes {len(self.keys)} values, got {len(values)}"
            )
        else:
            params = values if self._in_order else [values[pick] for pick in self._picks]
        db = connections[using]
        # What Django's connection.cursor() and its cursor wrapper do around an execute:
        # health check, connection, thread check, the broken-transaction check, execute
        # wrappers, error wrapping, and the query log when DEBUG is on or a test counts.
        db.close_if_health_check_failed()
        db.ensure_connection()
        db.validate_thread_sharing()
        db.validate_no_broken_transaction()
        cursor = _cursor(db.connection, self.name)
        run = functools.partial(_run, db, cursor)
        for wrapper in reversed(db.execute_wrappers):
            run = functools.partial(wrapper, run)
        started = time.monotonic()
        try:
            run(self.sql, params, False, {"connection": db, "cursor": cursor})
        finally:
            if db.queries_logged:
                db.queries_log.append(
                    {
                        "sql": f"/* {self.name} */ {_as_text(cursor, self.sql, params)}",
                        "time": f"{time.monotonic() - started:.3f}",
                    }
                )
        return cursor


def _run(db, cursor, sql, params, many, context) -> None:
    with db.wrap_database_errors:
        cursor.execute(sql, params, prepare=True)


def _cursor(raw: psycopg.Connection, name: str) -> psycopg.Cursor:
    """The statement's cursor on the psycopg connection ``raw`` (server-side binding; kept so
    psycopg looks up how to send each type of value once). Kept on the connection itself, so
    a reconnection starts afresh and both go together when Django drops the connection."""
    cursors = getattr(raw, "_adminsite_statements", None)
    if cursors is None:
        cursors = raw._adminsite_statements = {}  # type: ignore[attr-defined]
        raw.prepare_threshold = raw.prepare_threshold or ONLY_WHEN_ASKED
    cursor = cursors.get(name)
    if cursor is None or cursor.closed:
        cursor = cursors[name] = psycopg.Cursor(raw)
        cursor.adapters.register_dumper(int, _UntypedIntDumper)
    return cursor


class _UntypedIntDumper(Int8Dumper):
    """An integer as text of no declared type, as psycopg sends NULL: the SQL's cast types it."""

    oid = 0


def _as_text(cursor: psycopg.Cursor, sql: str, params: Sequence[Any]) -> str:
    """The statement with its values quoted in, for the query log."""
    return sql % tuple(psycopg.sql.Literal(value).as_string(cursor) for value in params)
