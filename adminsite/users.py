"""How people are named on screen and in messages."""

from __future__ import annotations


def user_label(user) -> str:
    """A person's full name, else their username; "" for no user (an unset assignee)."""
    if user is None or not hasattr(user, "get_username"):
        return ""
    return user.get_full_name() or user.get_username()
