"""Helpers of the impersonation tests: start and stop through the real views."""

from __future__ import annotations

START = "/admin/impersonation/start"
STOP = "/admin/impersonation/stop"
REASON = "Customer reports the inbox stopped syncing; reproduce it from their view."


def start(client, user, *, reason=REASON, ticket=None, headers=None, **fields):
    """POST the start form as the signed-in client (``fields`` are more form fields, ``headers``
    WSGI environ entries); returns the response."""
    data = {"user": str(user.pk), "reason": reason, **fields}
    if ticket is not None:
        data["ticket"] = str(ticket.pk)
    return client.post(START, data, **(headers or {}))


def stop(client, **data):
    return client.post(STOP, data)


def session_key(client) -> str:
    return client.cookies["sessionid"].value
