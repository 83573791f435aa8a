"""The ticket schema: the number sequence, generated columns, constraints, the search vector
triggers, audit registration and the queue's partial indexes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEntry
from tickets import queries, services
from tickets.filters import TicketFilters
from tickets.models import Category, Comment, Ticket

pytestmark = pytest.mark.django_db


def vector_of(ticket) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT search_vector::text FROM tickets_ticket WHERE id = %s", [ticket.pk])
        return cursor.fetchone()[0] or ""


def matches(ticket, words: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT search_vector @@ websearch_to_tsquery('english', %s) FROM tickets_ticket WHERE id = %s",
            [words, ticket.pk],
        )
        return cursor.fetchone()[0]


def test_categories_are_seeded_by_the_migration():
    assert set(Category.objects.values_list("slug", flat=True)) >= {
        "email_sync",
        "billing",
        "account",
        "bug",
        "feature_request",
        "other",
    }


def test_ticket_numbers_come_from_their_own_sequence(make_ticket):
    first = make_ticket(subject="First")
    second = make_ticket(subject="Second")
    assert first.ticket_number >= 1001
    assert second.ticket_number == first.ticket_number + 1
    assert str(first) == f"#{first.ticket_number} First"
    assert first.number_display == f"#{first.ticket_number}"


def test_priority_rank_and_next_due_are_generated(make_ticket, agent):
    ticket = make_ticket(priority="urgent")
    assert ticket.priority_rank == 4
    now = timezone.now()
    Ticket.objects.filter(pk=ticket.pk).update(
        first_response_due_at=now + timedelta(hours=1), resolution_due_at=now + timedelta(hours=4)
    )
    ticket.refresh_from_db()
    assert ticket.next_due_at == now + timedelta(hours=1)
    services.add_comment(actor=agent, ticket=ticket, body="Looking into it.")
    ticket.refresh_from_db()
    # Answered: the resolution deadline is the next one.
    assert ticket.next_due_at == now + timedelta(hours=4)
    services.update_ticket(actor=agent, ticket=ticket, priority="low")
    ticket.refresh_from_db()
    assert ticket.priority_rank == 1


@pytest.mark.parametrize(
    ("column", "value"),
    [("status", "'done'"), ("priority", "'critical'"), ("channel", "'fax'")],
)
def test_vocabulary_check_constraints(make_ticket, column, value):
    ticket = make_ticket()
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE tickets_ticket SET {column} = {value} WHERE id = %s", [ticket.pk])  # noqa: S608


def test_ticket_cannot_be_merged_into_itself(make_ticket):
    ticket = make_ticket()
    with pytest.raises(IntegrityError), transaction.atomic():
        Ticket.objects.filter(pk=ticket.pk).update(merged_into=ticket.pk)


def test_search_vector_covers_subject_description_and_every_comment(make_ticket, agent, customer):
    ticket = make_ticket(subject="Mailbox quota exceeded", description="Attachments bounce back")
    assert matches(ticket, "quota") and matches(ticket, "attachment")
    services.add_comment(
        actor=agent, ticket=ticket, body="Raised the limit for the tenant", is_internal=True
    )
    services.add_comment(actor=customer, ticket=ticket, body="Works again, thanks heaps")
    assert matches(ticket, "tenant limit")  # internal notes are searchable (staff only search)
    assert matches(ticket, "heaps")
    assert "'quota':2A" in vector_of(ticket)  # subject weighs most


def test_search_vector_follows_subject_and_comment_edits_and_deletes(make_ticket, agent):
    ticket = make_ticket(subject="Printer on fire")
    comment = services.add_comment(actor=agent, ticket=ticket, body="Extinguisher dispatched")
    services.update_ticket(actor=agent, ticket=ticket, subject="Printer jammed")
    assert matches(ticket, "jammed") and not matches(ticket, "fire")
    assert matches(ticket, "extinguisher")  # the rebuild keeps the comments

    Comment.objects.filter(pk=comment.pk).update(body="Technician booked")
    assert matches(ticket, "technician") and not matches(ticket, "extinguisher")
    Comment.objects.filter(pk=comment.pk).delete()
    assert not matches(ticket, "technician")


def test_search_vector_moves_with_merged_comments(make_ticket, agent):
    target = make_ticket(subject="Cannot send email")
    source = make_ticket(subject="Outbox stuck", description="Nothing leaves the outbox")
    services.add_comment(actor=agent, ticket=source, body="SMTP relay refused the credentials")
    services.merge_tickets(actor=agent, source=source, target=target)
    assert matches(target, "relay credentials") and matches(target, "outbox")
    assert not matches(source, "relay")


def test_very_long_threads_never_break_inserts(make_ticket, agent):
    """Past ~1 MB of distinct words a ticket stops growing its vector instead of failing."""
    ticket = make_ticket()
    # Nine comments of 1,800 distinct 10-character words per statement: each statement adds
    # about 230 kB to the vector, so without the guard the fifth would pass PostgreSQL's
    # 1 MB tsvector limit and fail the insert.
    for batch in range(7):
        Comment.objects.bulk_create(
            Comment(
                ticket=ticket,
                author=agent,
                body=" ".join(f"w{batch}{n}x{i:05d}" for i in range(1800)),
            )
            for n in range(9)
        )
    assert Comment.objects.filter(ticket=ticket).count() == 63
    assert matches(ticket, "w00x00001")  # the first batches stay searchable
    assert not matches(ticket, "w60x00001")  # the last ones went past the cap


def test_tickets_and_comments_are_audited_as_model_diffs(make_ticket, agent):
    ticket = make_ticket()
    services.update_ticket(actor=agent, ticket=ticket, priority="high")
    diffs = AuditEntry.objects.filter(event="tickets.ticket.updated", object_pk=str(ticket.pk))
    assert any(entry.changes_dict.get("priority") == ["normal", "high"] for entry in diffs)
    assert AuditEntry.objects.filter(
        event="tickets.ticket.created", object_pk=str(ticket.pk)
    ).exists()


def _plan(run) -> str:
    """EXPLAIN of the last query ``run()`` executes."""
    with CaptureQueriesContext(connection) as captured:
        run()
    query = captured.captured_queries[-1]
    with transaction.atomic(), connection.cursor() as cursor:
        # A test table is tiny, where scanning it all and sorting is cheapest; forbid that so
        # the plan shows the index walk the query can use at scale.
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            cursor.execute(f"SET LOCAL {setting} = off")
        cursor.execute("EXPLAIN " + query["sql"])
        return "\n".join(row[0] for row in cursor.fetchall())


def test_default_queue_and_stats_use_the_active_partial_indexes(make_ticket, agent):
    for _ in range(3):
        make_ticket()
    filters = TicketFilters()
    plan = _plan(lambda: list(queries.ticket_queue(user=agent, filters=filters)[:50]))
    assert "ticket_active_priority" in plan, plan
    assert "Sort" not in plan.split("->")[0], plan  # rows come ordered from the index
    # The cards sum the facet counters, not the tickets.
    plan = _plan(lambda: queries.queue_stats(filters=filters))
    assert "tickets_ticketcount" in plan and "tickets_ticket " not in plan, plan


def test_my_queue_uses_the_assignee_index(make_ticket, agent):
    make_ticket(assignee=agent)
    filters = TicketFilters(assignee=agent.pk)
    plan = _plan(lambda: list(queries.ticket_queue(user=agent, filters=filters)[:50]))
    assert "ticket_active_assignee" in plan, plan
