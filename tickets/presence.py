"""Who else has a ticket open: the ticket page's collision detection.

Each open ticket page polls every ``POLL_SECONDS``; each poll registers its viewer in one cache
entry per ticket (Redis, through the Django cache) and reads back the others. A viewer counts
as present for ``PRESENCE_SECONDS`` after their last poll, so a closed tab drops out by itself.

The entry is read, changed and written back without a lock. Two polls of the same ticket at
the same instant can each overwrite the other's registration; the loser re-registers on its
next poll, ``POLL_SECONDS`` later, well inside ``PRESENCE_SECONDS``, so the list is at worst a
few seconds late. Presence is advisory: that is preferable to a lock on every poll.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.core.cache import cache

from adminsite.users import user_label

logger = logging.getLogger(__name__)

POLL_SECONDS = 5
PRESENCE_SECONDS = 15


@dataclass(frozen=True)
class Viewer:
    user_id: int
    name: str
    initials: str
    since: float


def presence_key(ticket_id: int) -> str:
    return f"tickets:presence:{ticket_id}"


def _initials(user) -> str:
    first, last = (user.first_name or "").strip(), (user.last_name or "").strip()
    if first or last:
        return ((first[:1] + last[:1]) or first[:2]).upper()
    return user.get_username()[:2].upper()


def register_viewer(*, ticket_id: int, user, now: float | None = None) -> list[Viewer] | None:
    """Record that ``user`` is viewing the ticket and return the other viewers present,
    longest-viewing first. None when the cache cannot be reached: the page then says presence
    is unavailable instead of failing."""
    now = time.time() if now is None else now
    key = presence_key(ticket_id)
    try:
        entries: dict[str, dict] = cache.get(key) or {}
        entries = {
            uid: entry
            for uid, entry in entries.items()
            if now - entry.get("seen", 0) < PRESENCE_SECONDS
        }
        mine = entries.get(str(user.pk), {})
        entries[str(user.pk)] = {
            "name": user_label(user),
            "initials": _initials(user),
            "since": mine.get("since", now),
            "seen": now,
        }
        cache.set(key, entries, timeout=PRESENCE_SECONDS)
    except Exception:
        # Any cache failure (Redis down, a timeout): presence is a convenience and must never
        # break the ticket page, so it is logged and reported as unknown.
        logger.warning("ticket presence unavailable", exc_info=True, extra={"ticket": ticket_id})
        return None
    others = [
        Viewer(user_id=int(uid), name=e["name"], initials=e["initials"], since=e["since"])
        for uid, e in entries.items()
        if uid != str(user.pk)
    ]
    return sorted(others, key=lambda viewer: (viewer.since, viewer.user_id))
