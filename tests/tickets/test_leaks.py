"""Internal notes never reach a customer: not in the help pages' HTML, not in the console
(customers cannot open it), not in the JSON API, not in any email. Each path is exercised
with a ticket that carries both a public reply and an internal note written through the
staff pages."""

from __future__ import annotations

import pytest
from django.core import mail

from tests.tickets.helpers import run_queued_tasks
from tickets.models import Comment

pytestmark = pytest.mark.django_db

NOTE = "INTERNAL-ONLY: customer is on the legacy plan, do not offer a refund"
REPLY = "We found the problem and fixed your sync settings."
HX = {"HX-Request": "true"}


@pytest.fixture
def noted_ticket(client, agent, customer, make_ticket, django_capture_on_commit_callbacks):
    """A ticket on which an agent, through the console, wrote an internal note, a public
    reply, a reply to the note and resolved the ticket; the emails those queued are sent
    (Celery tasks run through Task.apply) into mail.outbox."""
    ticket = make_ticket(subject="Sync settings broken")
    client.force_login(agent)
    with django_capture_on_commit_callbacks() as callbacks:
        client.post(
            f"/admin/support/{ticket.pk}/comments/", {"body": NOTE, "is_internal": "on"}, headers=HX
        )
        note = Comment.objects.get(body=NOTE)
        client.post(f"/admin/support/{ticket.pk}/comments/", {"body": REPLY}, headers=HX)
        client.post(
            f"/admin/support/{ticket.pk}/comments/",
            {"body": "Follow-up to the note, for the customer.", "parent": note.pk},
            headers=HX,
        )
        client.post(f"/admin/support/{ticket.pk}/status/", {"status": "resolved"}, headers=HX)
    mail.outbox.clear()
    sent = run_queued_tasks(callbacks)
    assert sorted(sent) == [
        "tickets.send_reply_email",
        "tickets.send_reply_email",
        "tickets.send_resolved_email",
    ]
    client.logout()
    assert Comment.objects.filter(ticket=ticket, is_internal=True).count() == 1
    return ticket


def test_staff_see_the_note_so_the_setup_is_real(client, agent, noted_ticket):
    client.force_login(agent)
    assert NOTE in client.get(f"/admin/support/{noted_ticket.pk}/").content.decode()


def test_help_pages_never_show_the_note(client, customer, noted_ticket):
    client.force_login(customer)
    detail = client.get(f"/help/tickets/{noted_ticket.pk}/").content.decode()
    assert REPLY in detail
    # A reply to the hidden note shows at the top level, without revealing its parent.
    assert "Follow-up to the note, for the customer." in detail
    assert NOTE not in detail and "legacy plan" not in detail
    assert "Internal note" not in detail and "data-internal" not in detail
    listing = client.get("/help/tickets/").content.decode()
    assert NOTE not in listing and "legacy plan" not in listing


def test_customers_cannot_open_any_console_view_of_the_ticket(client, customer, noted_ticket):
    client.force_login(customer)
    seen = noted_ticket.updated_at.isoformat()
    for url in (
        f"/admin/support/{noted_ticket.pk}/",
        f"/admin/support/{noted_ticket.pk}/?part=conversation",
        f"/admin/support/{noted_ticket.pk}/presence/?seen={seen}",
        "/admin/support/?search=legacy",
    ):
        for headers in ({}, HX):
            response = client.get(url, headers=headers)
            assert response.status_code in (204, 302), url
            assert "legacy plan" not in response.content.decode()


def test_the_json_api_never_returns_the_note_to_the_customer(client, customer, noted_ticket):
    client.force_login(customer)
    comments = client.get(f"/api/admin/support/tickets/{noted_ticket.pk}/comments")
    assert comments.status_code == 200
    bodies = [c["comment"] for c in comments.json()["results"]]
    assert REPLY in bodies and NOTE not in bodies
    assert all(c["isInternal"] is False for c in comments.json()["results"])
    for url in (
        f"/api/admin/support/tickets/{noted_ticket.pk}",
        "/api/admin/support/tickets",
        "/api/admin/support/tickets?status=all",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert "legacy plan" not in response.content.decode()
    # Searching would match words of internal notes (the vector covers them): refused.
    assert client.get("/api/admin/support/tickets?search=legacy").status_code == 400


def test_emails_carry_the_public_reply_and_never_the_note(noted_ticket, customer):
    assert len(mail.outbox) == 3
    assert {tuple(message.to) for message in mail.outbox} == {(customer.email,)}
    bodies = "\n".join(f"{m.subject}\n{m.body}" for m in mail.outbox)
    assert REPLY in bodies
    assert NOTE not in bodies and "legacy plan" not in bodies
