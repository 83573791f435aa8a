"""htmx request helpers shared by the console's views."""

from __future__ import annotations


def wants_fragment(request) -> bool:
    """An htmx request that wants a fragment. A history restore (the back button after htmx's
    cache expired) needs the whole page, so it is answered like a plain request."""
    return bool(request.htmx) and not request.htmx.history_restore_request
