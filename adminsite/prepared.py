"""Server-side prepared statements for the few statements that run on every routed ticket.

Django's psycopg backend binds parameters on the client and never prepares, so PostgreSQL
plans each statement again on every call; for the short statements of automatic assignment
the planning costs as much as running them. Preparing every statement (psycopg's
``prepare_threshold``) is no option: after five runs PostgreSQL may switch a statement to a
generic plan, which is far slower for the queue's full-text search. A :class:`Statement` is
prepared with SQL ``PREPARE`` the first time a connection runs it, then run with ``EXECUTE``.

Prepared statements belong to the database session, not to a transaction: one prepared in a
transaction that rolls back stays prepared. A ``PREPARE`` that fails (an aborted transaction)
leaves nothing marked, so the next use prepares again.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

# Names prepared on each open psycopg connection; a new connection starts with none.
_prepared: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


class Statement:
    """One SQL statement with ``%(name)s`` placeholders, each declared with its SQL type."""

    def __init__(self, name: str, sql: str, parameters: Sequence[tuple[str, str]]) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"statement name {name!r}: use lower-case letters, digits and _")
        positions = {key: number for number, (key, _type) in enumerate(parameters, start=1)}
        used = set(_PLACEHOLDER.findall(sql))
        if used != set(positions):
            raise ValueError(
                f"statement {name!r}: placeholders {sorted(used)} do not match the declared"
                f" parameters {sorted(positions)}"
            )
        self.name = name
        self.keys = tuple(key for key, _type in parameters)
        types = ", ".join(sql_type for _key, sql_type in parameters)
        body = _PLACEHOLDER.sub(lambda match: f"${positions[match.group(1)]}", sql)
        self.prepare_sql = (
            f"PREPARE {name} ({types}) AS {body}" if types else f"PREPARE {name} AS {body}"
        )
        arguments = ", ".join(["%s"] * len(parameters))
        self.execute_sql = f"EXECUTE {name} ({arguments})" if parameters else f"EXECUTE {name}"

    def execute(self, cursor, values: Mapping[str, Any]) -> None:
        """Run the statement on ``cursor`` (a Django cursor) with ``values`` by name."""
        raw = cursor.db.connection
        done = _prepared.get(raw)
        if done is None:
            done = _prepared[raw] = set()
        if self.name not in done:
            cursor.execute(self.prepare_sql)
            done.add(self.name)
        cursor.execute(self.execute_sql, [values[key] for key in self.keys])
