"""Free-text search over tickets (staff only).

The vector is maintained in PostgreSQL (migration 0002) with the same text-search
configuration as the queries built here; change both together. Queries use websearch syntax,
so agents can type ``"token refresh" -gmail`` or ``imap OR smtp``. A bare ticket number
(``1042`` or ``#1042``) also finds that ticket.
"""

from __future__ import annotations

import re

from django.contrib.postgres.search import SearchQuery
from django.db.models import Q

SEARCH_CONFIG = "english"
_TICKET_NUMBER = re.compile(r"^#?(\d{1,18})$")


def search_condition(text: str) -> Q:
    """A filter matching tickets whose subject, description or comments match ``text``."""
    text = text.strip()
    condition = Q(search_vector=SearchQuery(text, config=SEARCH_CONFIG, search_type="websearch"))
    match = _TICKET_NUMBER.match(text)
    if match:
        condition |= Q(ticket_number=int(match.group(1)))
    return condition
