"""The tickets seed step: bulk-generated demo tickets are complete, consistent and
searchable, and seeding is idempotent (``--tickets N`` tops up to N)."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection

from adminsite.seed import SeedContext
from tickets import queries, seed
from tickets.filters import TicketFilters
from tickets.models import CannedReply, Comment, Ticket, TicketCount, TicketEvent

pytestmark = pytest.mark.django_db


def test_seed_demo_creates_tickets_once_and_tops_up(categories):
    out = io.StringIO()
    call_command("seed_demo", "--tickets", "60", "--no-progress", stdout=out)
    assert Ticket.objects.count() == 60
    assert "Tickets: added 60 tickets" in out.getvalue()
    assert CannedReply.objects.count() == len(seed.CANNED_REPLIES)

    call_command("seed_demo", "--tickets", "60", "--no-progress", stdout=io.StringIO())
    assert Ticket.objects.count() == 60  # idempotent
    call_command("seed_demo", "--tickets", "75", "--no-progress", stdout=io.StringIO())
    assert Ticket.objects.count() == 75  # tops up to the number asked for


def test_seeded_tickets_are_consistent(categories, agent, customer, other_customer):
    ctx = SeedContext(options={}, show_progress=False)
    assert seed.seed_tickets(count=120, ctx=ctx) == 120
    tickets = list(Ticket.objects.all())
    assert len({t.ticket_number for t in tickets}) == 120
    assert {t.status for t in tickets} >= {"closed", "open"}
    assert {t.requester_id for t in tickets} <= {customer.pk, other_customer.pk}
    for t in tickets:
        assert t.resolved_at is None or t.resolved_at >= t.created_at
        assert (t.status == "new") == (t.first_responded_at is None)
        assert (t.closed_at is not None) == (t.status == "closed")
        assert t.first_response_due_at and t.resolution_due_at
    comments = Comment.objects.all()
    assert comments.exists() and comments.filter(is_internal=True).exists()
    assert not comments.filter(
        is_internal=True, parent__isnull=False, author__is_staff=False
    ).exists()
    threaded = comments.filter(parent__isnull=False)
    assert all(c.parent.ticket_id == c.ticket_id and not c.parent.is_internal for c in threaded)
    assert TicketEvent.objects.filter(kind="created").count() == 120

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM tickets_ticket WHERE search_vector IS NULL")
        assert cursor.fetchone()[0] == 0
    subject_word = tickets[0].subject.split()[0]
    found = queries.ticket_queue(
        user=agent,
        filters=TicketFilters(
            statuses=("closed", "resolved", "new", "open", "pending", "on_hold"),
            search=subject_word,
        ),
    )
    assert tickets[0].pk in {t.pk for t in found}

    counted = sum(TicketCount.objects.values_list("n", flat=True))
    assert counted == 120
    # The triggers are back on after the load.
    queries.ticket_for(agent, tickets[0].pk)
    Comment.objects.create(ticket=tickets[0], author=agent, body="zanzibar")
    found = queries.ticket_queue(
        user=agent, filters=TicketFilters(statuses=(tickets[0].status,), search="zanzibar")
    )
    assert [t.pk for t in found] == [tickets[0].pk]


def test_seed_needs_staff_and_customers(categories, customer):
    with pytest.raises(ValueError, match="staff"):
        seed.seed_tickets(count=5, ctx=SeedContext(options={}, show_progress=False))
    assert not Ticket.objects.exists()
