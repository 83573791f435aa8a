"""Staff support pages: the queue and the ticket page, their htmx fragments, quick actions,
collision detection, the dashboard panel, bad input and query-count bounds."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from urllib.parse import urlencode

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from adminsite import roles
from audit.models import AuditEntry
from tests.factories import StaffFactory
from tests.roles import URLConf, assert_access_matrix, role_user
from tests.tickets.helpers import queued_tasks
from tickets import presence, services
from tickets.models import CannedReply, Comment, EventKind, SavedView, Status, Ticket, TicketEvent

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


def rows(response) -> list[int]:
    """Ticket ids of the queue's rows, in order."""
    return [int(pk) for pk in re.findall(r'<tr data-ticket="(\d+)"', response.content.decode())]


def html(response) -> str:
    return response.content.decode()


def count_queries(callable_) -> int:
    with CaptureQueriesContext(connection) as captured:
        callable_()
    return len(captured.captured_queries)


# --- queue -----------------------------------------------------------------------------------


def test_queue_lists_active_tickets_with_badges_stats_and_links(client, agent, make_ticket):
    urgent = make_ticket(subject="Gmail sync stuck", priority="urgent")
    pending = make_ticket(
        subject="Invoice question", category="billing", status="pending", actor=agent
    )
    make_ticket(subject="Old and done", status="resolved", actor=agent)
    client.force_login(agent)

    response = client.get("/admin/support/")

    assert response.status_code == 200
    page = html(response)
    assert rows(response) == [urgent.pk, pending.pk]  # most urgent first; resolved not active
    assert f">#{urgent.ticket_number}</a>" in page
    assert f'href="/admin/support/{urgent.pk}/"' in page
    assert 'class="badge badge-priority-urgent" data-priority="urgent">Urgent' in page
    assert 'class="badge badge-status-pending" data-status="pending">Pending' in page
    stats = dict(re.findall(r'data-stat="(\w+)">.*?<div class="stat-value">([\d,]+)<', page, re.S))
    assert stats == {"total": "2", "open": "1", "pending": "1", "urgent": "1", "breached": "0"}
    assert "Old and done" not in page
    assert 'data-testid="saved-views"' in page and "My open" in page and "Unassigned urgent" in page


def test_a_search_with_more_hits_than_are_counted_shows_the_counts_as_lower_bounds(
    client, agent, make_ticket, monkeypatch
):
    from tickets import queries

    monkeypatch.setattr(queries, "SEARCH_COUNT_LIMIT", 2)
    for number in range(3):
        make_ticket(subject=f"Outage report {number}")
    client.force_login(agent)

    page = html(client.get("/admin/support/?search=outage"))

    stats = dict(re.findall(r'data-stat="(\w+)">.*?<div class="stat-value">([\d,+]+)<', page, re.S))
    assert stats["total"] == "2+"
    assert re.search(r'data-testid="queue-range">1–2 of 2\+<', page)


def test_queue_filters_by_each_parameter(
    client, agent, agent2, make_ticket, customer, other_customer
):
    mine = make_ticket(subject="Sync broken on Outlook", priority="high", assignee=agent)
    theirs = make_ticket(subject="Refund please", category="billing", assignee=agent2)
    unassigned = make_ticket(subject="Cannot sign in", category="account", requester=other_customer)
    done = make_ticket(subject="Old resolved one", status="resolved", actor=agent)
    client.force_login(agent)

    def ids(query):
        response = client.get(f"/admin/support/?{query}")
        assert response.status_code == 200, html(response)
        return set(rows(response))

    assert ids("") == {mine.pk, theirs.pk, unassigned.pk}
    assert ids("assignee=me") == {mine.pk}
    assert ids("assignee=none") == {unassigned.pk}
    assert ids(f"assignee={agent2.pk}") == {theirs.pk}
    assert ids("priority=high") == {mine.pk}
    assert ids("category=billing") == {theirs.pk}
    assert ids("status=resolved") == {done.pk}
    assert ids("status=all") == {mine.pk, theirs.pk, unassigned.pk, done.pk}
    assert ids("search=outlook") == {mine.pk}
    assert ids(f"requester={other_customer.pk}") == {unassigned.pk}
    assert ids("breached=true") == set()
    today = timezone.localdate()
    assert ids(f"createdAfter={today}&createdBefore={today}") == {mine.pk, theirs.pk, unassigned.pk}
    assert ids(f"createdBefore={today - timedelta(days=1)}") == set()
    # An empty field of the plain GET form is no filter at all.
    assert ids("status=&priority=&category=&assignee=&search=&createdAfter=") == {
        mine.pk,
        theirs.pk,
        unassigned.pk,
    }


def test_queue_sorts_by_priority_created_updated_and_next_due(client, agent, make_ticket):
    low = make_ticket(subject="Low one", priority="low")
    urgent = make_ticket(subject="Urgent one", priority="urgent")
    normal = make_ticket(subject="Normal one", priority="normal")
    services.update_ticket(actor=agent, ticket=low, subject="Low one, touched")
    client.force_login(agent)

    def order(ordering):
        return rows(client.get(f"/admin/support/?ordering={ordering}"))

    assert order("-priority") == [urgent.pk, normal.pk, low.pk]
    assert order("priority") == [low.pk, normal.pk, urgent.pk]
    assert order("-createdAt") == [normal.pk, urgent.pk, low.pk]
    assert order("createdAt") == [low.pk, urgent.pk, normal.pk]
    assert order("-updatedAt")[0] == low.pk
    assert set(order("nextDueAt")) == {low.pk, urgent.pk, normal.pk}
    page = html(client.get("/admin/support/?ordering=createdAt"))
    assert re.search(r'<th class="sortable col-num" aria-sort="ascending">', page)


def test_queue_pages_through_results_and_clamps_the_page(
    client, agent, make_ticket, categories, customer
):
    for n in range(53):
        make_ticket(subject=f"Ticket {n:02d}")
    client.force_login(agent)

    first = client.get("/admin/support/?ordering=createdAt")
    assert len(rows(first)) == 50
    assert "1–50 of 53" in html(first)
    second = client.get("/admin/support/?ordering=createdAt&page=2")
    assert len(rows(second)) == 3
    assert 'href="/admin/support/?ordering=createdAt&amp;page=1"' in html(second)
    assert rows(client.get("/admin/support/?ordering=createdAt&page=99")) == rows(second)


@pytest.mark.parametrize(
    ("query", "field", "text"),
    [
        (
            "priority=extreme",
            "priority",
            "Unknown value 'extreme'. Allowed values: low, normal, high, urgent.",
        ),
        ("category=nope", "category", "Unknown category 'nope'"),
        ("assignee=someone", "assignee", "Use 'me', 'none' or a user id."),
        ("createdAfter=yesterday", "createdAfter", "Use a date (2025-01-31)"),
        ("ordering=random", "ordering", "Unknown ordering 'random'"),
        ("colour=blue", "colour", "Unknown parameter."),
        ("page=two", "page", "Use a whole page number from 1 (at most 9 digits)."),
        ("page=%C2%B2", "page", "Use a whole page number from 1 (at most 9 digits)."),
        ("page=" + "9" * 5000, "page", "Use a whole page number from 1 (at most 9 digits)."),
        ("createdAfter=2026-02-30", "createdAfter", "Use a date (2025-01-31)"),
    ],
)
def test_bad_queue_filters_answer_400_naming_the_parameter(
    client, agent, categories, query, field, text
):
    client.force_login(agent)
    response = client.get(f"/admin/support/?{query}")
    assert response.status_code == 400
    page = html(response)
    assert f"<strong>{field}</strong>:" in page
    assert text.replace("'", "&#x27;") in page
    assert 'data-testid="queue-table"' not in page


def test_stat_cards_count_the_current_filter_scope(client, agent, make_ticket):
    make_ticket(priority="urgent", category="billing")
    make_ticket(priority="urgent", category="bug")
    make_ticket(priority="low", category="billing", status="pending", actor=agent)
    client.force_login(agent)

    page = html(client.get("/admin/support/?category=billing"))
    stats = dict(re.findall(r'data-stat="(\w+)">.*?<div class="stat-value">([\d,]+)<', page, re.S))
    assert stats == {"total": "2", "open": "1", "pending": "1", "urgent": "1", "breached": "0"}
    # Each card narrows the current view further and keeps its other filters.
    assert 'href="/admin/support/?category=billing&amp;priority=urgent"' in page


def test_queue_htmx_request_gets_the_workspace_fragment_and_a_canonical_url(
    client, agent, make_ticket
):
    ticket = make_ticket(priority="high")
    client.force_login(agent)

    response = client.get(
        "/admin/support/?search=&status=&priority=high&category=&assignee=&ordering=-priority",
        headers=HX,
    )

    assert response.status_code == 200
    fragment = html(response)
    assert fragment.lstrip().startswith('<div id="queue"')
    assert "<html" not in fragment and 'class="sidebar"' not in fragment
    assert rows(response) == [ticket.pk]
    assert response["HX-Push-Url"] == "/admin/support/?ordering=-priority&priority=high"
    assert "HX-Request" in response["Vary"]
    # The back button after the history cache expired needs the whole page.
    restore = client.get(
        "/admin/support/?priority=high",
        headers={**HX, "HX-History-Restore-Request": "true"},
    )
    assert "<html" in html(restore)


def test_queue_runs_a_fixed_number_of_queries(
    client, agent, make_ticket, django_assert_max_num_queries
):
    for n in range(3):
        make_ticket(subject=f"Few {n}", assignee=agent if n % 2 else None)
    client.force_login(agent)
    client.get("/admin/support/")  # warm the session and content-type caches

    few = count_queries(lambda: client.get("/admin/support/"))
    for n in range(30):
        make_ticket(subject=f"Many {n}", assignee=agent if n % 2 else None, tags=["vip"])
    many = count_queries(lambda: client.get("/admin/support/"))
    fragment = count_queries(lambda: client.get("/admin/support/?search=many", headers=HX))

    assert few == many
    assert fragment <= many
    # Session, user, permissions (one query), role, the option lists (categories, saved
    # views, agents: one query), stats, the page's ids, their rows.
    with django_assert_max_num_queries(8):
        client.get("/admin/support/?priority=normal&category=email_sync&assignee=me")


# --- saved views ---------------------------------------------------------------------------------


def test_agent_saves_opens_and_deletes_a_view(client, agent, make_ticket):
    make_ticket(priority="urgent")
    client.force_login(agent)

    response = client.post(
        "/admin/support/views/",
        {"name": "Urgent billing", "query": "priority=urgent&category=billing&page=3"},
    )
    assert response.status_code == 303
    assert response["Location"] == "/admin/support/?category=billing&priority=urgent"
    view = SavedView.objects.get(user=agent)
    assert (view.name, view.query_string) == ("Urgent billing", "category=billing&priority=urgent")

    page = html(client.get("/admin/support/?priority=urgent&category=billing"))
    assert re.search(
        r'class="view-pill is-active is-own">\s*<a href="/admin/support/\?category=billing&amp;priority=urgent"',
        page,
    )

    response = client.post(f"/admin/support/views/{view.pk}/delete/", {"query": ""}, headers=HX)
    assert response.status_code == 200
    assert "Deleted the view “Urgent billing”." in html(response)
    assert not SavedView.objects.filter(pk=view.pk).exists()


def test_saving_a_view_with_bad_input_changes_nothing(client, agent, agent2, categories):
    client.force_login(agent)
    nameless = client.post(
        "/admin/support/views/", {"name": "  ", "query": "priority=high"}, headers=HX
    )
    assert nameless.status_code == 400
    assert "Name the view before saving it." in html(nameless)
    broken = client.post(
        "/admin/support/views/", {"name": "Odd", "query": "priority=extreme"}, headers=HX
    )
    assert broken.status_code == 400
    assert "Fix the filters before saving" in html(broken)
    assert not SavedView.objects.exists()

    theirs = services.save_view(actor=agent2, name="Lena's", query_string="priority=high")
    assert client.post(f"/admin/support/views/{theirs.pk}/delete/").status_code == 404
    assert SavedView.objects.filter(pk=theirs.pk).exists()


# --- bulk actions --------------------------------------------------------------------------------


def test_bulk_assign_rerenders_the_workspace_with_a_notice(client, agent, agent2, make_ticket):
    first, second = make_ticket(subject="One"), make_ticket(subject="Two")
    untouched = make_ticket(subject="Three")
    client.force_login(agent)

    response = client.post(
        "/admin/support/bulk/",
        {
            "action": "assign",
            "ticket": [first.pk, second.pk],
            "assignee": agent2.pk,
            "query": "ordering=createdAt",
        },
        headers=HX,
    )

    assert response.status_code == 200
    fragment = html(response)
    assert fragment.lstrip().startswith('<div id="queue"')
    assert "Assigned 2 tickets to Lena Fischer." in fragment
    assert rows(response) == [first.pk, second.pk, untouched.pk]  # the view's own ordering
    assert set(Ticket.objects.filter(assignee=agent2).values_list("pk", flat=True)) == {
        first.pk,
        second.pk,
    }
    assert TicketEvent.objects.filter(ticket=first, kind=EventKind.ASSIGNEE).count() == 1


def test_bulk_status_and_close_without_javascript_redirect_with_a_message(
    client, agent, make_ticket
):
    first, second = make_ticket(subject="One"), make_ticket(subject="Two")
    client.force_login(agent)

    response = client.post(
        "/admin/support/bulk/",
        {
            "action": "status",
            "status": "pending",
            "ticket": [first.pk, second.pk],
            "query": "priority=normal",
        },
    )
    assert response.status_code == 303
    assert response["Location"] == "/admin/support/?priority=normal"
    assert set(Ticket.objects.values_list("status", flat=True)) == {"pending"}
    assert "Moved 2 tickets to Pending." in html(client.get(response["Location"]))

    response = client.post(
        "/admin/support/bulk/", {"action": "close", "ticket": [first.pk]}, follow=True
    )
    assert "Closed 1 ticket." in html(response)
    assert Ticket.objects.get(pk=first.pk).status == Status.CLOSED


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"action": "close"}, "Select at least one ticket."),
        ({"action": "explode", "ticket": ["1"]}, "Unknown action &#x27;explode&#x27;"),
        ({"action": "assign", "ticket": ["1"]}, "Choose who to assign the selected tickets to."),
        (
            {"action": "status", "ticket": ["1"]},
            "Choose the status to move the selected tickets to.",
        ),
        ({"action": "close", "ticket": ["one"]}, "Ticket ids are whole numbers"),
        ({"action": "close", "ticket": ["999999"]}, "No tickets with ids 999999."),
    ],
)
def test_bulk_bad_input_is_refused_with_a_message(client, agent, make_ticket, data, message):
    ticket = make_ticket()
    client.force_login(agent)
    data = {
        k: [str(ticket.pk) if v == "1" else v for v in vs] if isinstance(vs, list) else vs
        for k, vs in data.items()
    }
    response = client.post("/admin/support/bulk/", data, headers=HX)
    assert response.status_code == 400
    assert message in html(response)
    assert response["X-Ticket-Fragment"] == "workspace"
    assert Ticket.objects.get(pk=ticket.pk).status == Status.NEW


def test_bulk_forbidden_transition_and_customer_assignee_change_nothing(
    client, agent, customer, make_ticket
):
    open_ticket = make_ticket(subject="Open one", status="open", actor=agent)
    resolved = make_ticket(subject="Resolved one", status="resolved", actor=agent)
    client.force_login(agent)

    response = client.post(
        "/admin/support/bulk/",
        {"action": "status", "status": "pending", "ticket": [open_ticket.pk, resolved.pk]},
        headers=HX,
    )
    assert response.status_code == 400
    assert "Nothing was changed. 1 ticket(s) cannot move to pending" in html(response)
    assert Ticket.objects.get(pk=open_ticket.pk).status == Status.OPEN

    response = client.post(
        "/admin/support/bulk/",
        {"action": "assign", "assignee": customer.pk, "ticket": [open_ticket.pk]},
        headers=HX,
    )
    assert response.status_code == 400
    assert f"{customer.username} is not an active staff member who works tickets." in html(response)
    assert Ticket.objects.get(pk=open_ticket.pk).assignee is None


# --- the ticket page -------------------------------------------------------------------------------


@pytest.fixture
def worked_ticket(make_ticket, agent, customer):
    """A ticket with a public reply, an internal note, a customer answer and a threaded reply,
    plus another ticket of the same customer."""
    make_ticket(subject="Earlier billing question", category="billing")
    ticket = make_ticket(subject="Gmail sync stuck", priority="urgent", tags=["gmail"])
    reply = services.add_comment(actor=agent, ticket=ticket, body="We are looking into it.")
    services.add_comment(
        actor=agent, ticket=ticket, body="Token expired; refresh scheduled.", is_internal=True
    )
    services.add_comment(actor=customer, ticket=ticket, body="Thanks, still broken here.")
    services.add_comment(actor=agent, ticket=ticket, body="Replying in thread.", parent=reply)
    return Ticket.objects.get(pk=ticket.pk)


def test_ticket_page_shows_header_thread_sidebar_and_timeline(
    client, agent, customer, worked_ticket
):
    client.force_login(agent)
    response = client.get(f"/admin/support/{worked_ticket.pk}/")

    assert response.status_code == 200
    page = html(response)
    assert f'data-testid="ticket-number">#{worked_ticket.ticket_number}<' in page
    assert '<h1 class="ticket-subject">Gmail sync stuck</h1>' in page
    assert 'data-status="open"' in page and 'data-priority="urgent"' in page
    assert "Emails stopped syncing for Gmail." in page  # the description
    # Thread order: the threaded reply sits under its parent, one level in.
    bodies = re.findall(r'<div class="comment-body">([^<]+)</div>', page)
    assert bodies[1:] == [
        "We are looking into it.",
        "Replying in thread.",
        "Token expired; refresh scheduled.",
        "Thanks, still broken here.",
    ]
    assert re.search(r'data-internal="false"\s+style="--depth: 1"', page)
    note = re.search(r'<li class="comment comment-internal".*?</li>', page, re.S).group(0)
    assert "Internal note · staff only" in note and "Token expired" in note
    # Customer context: who they are and their other ticket.
    context = re.search(r'data-testid="customer-context">.*?</section>', page, re.S).group(0)
    assert customer.email in context and "Maria Garcia" in context
    assert "Earlier billing question" in context
    assert "Customer since" in context and "Last sign-in" in context
    # Timeline: created, status change by the first staff reply.
    timeline = re.search(r'data-testid="timeline".*?</section>', page, re.S).group(0)
    assert "opened the ticket" in timeline and "set status" in timeline
    # The comment form and its internal-note switch.
    assert 'name="is_internal"' in page and ">Send Comment</button>" in page


@pytest.mark.parametrize("role", roles.ROLE_ORDER)
def test_top_bar_names_the_role_of_the_signed_in_staff_member(client, role):
    user = StaffFactory(role=role)
    client.force_login(user)
    assert f'data-testid="user-role">{role}<' in html(client.get("/admin/support/"))


def test_top_bar_names_the_first_role_of_someone_in_two_groups(client, agent):
    agent.groups.add(Group.objects.get(name=roles.OPS))
    client.force_login(agent)
    assert f'data-testid="user-role">{roles.SUPPORT_AGENT}<' in html(client.get("/admin/support/"))


def test_assignee_picker_lists_each_agent_once_and_keeps_a_former_one(
    client, agent, agent2, make_ticket
):
    ticket = make_ticket(assignee=agent2)
    client.force_login(agent)

    def picker() -> str:
        page = html(client.get(f"/admin/support/{ticket.pk}/"))
        return re.search(r'<select id="prop-assignee".*?</select>', page, re.S).group(0)

    options = re.findall(r'<option value="(\w+)"( selected)?>', picker())
    assert ("none", "") in options and (str(agent.pk), "") in options
    assert [o for o in options if o[0] == str(agent2.pk)] == [(str(agent2.pk), " selected")]
    # agent2 leaves the support team: no longer offered, still shown as the assignee, once.
    agent2.groups.clear()
    options = re.findall(r'<option value="(\w+)"( selected)?>', picker())
    assert [o for o in options if o[0] == str(agent2.pk)] == [(str(agent2.pk), " selected")]
    assert options[-1] == (str(agent2.pk), " selected")


def test_viewing_the_ticket_records_that_the_customer_was_viewed(client, agent, worked_ticket):
    client.force_login(agent)
    client.get(f"/admin/support/{worked_ticket.pk}/")
    entry = AuditEntry.objects.filter(event="customer.viewed").latest("id")
    assert entry.object_pk == str(worked_ticket.requester_id)
    assert entry.actor_id == agent.pk
    assert entry.additional_data["ticket_number"] == worked_ticket.ticket_number
    # Fragments do not show the customer panel, so they record nothing.
    before = AuditEntry.objects.filter(event="customer.viewed").count()
    client.get(f"/admin/support/{worked_ticket.pk}/?part=header", headers=HX)
    assert AuditEntry.objects.filter(event="customer.viewed").count() == before


def test_ticket_page_runs_a_fixed_number_of_queries(
    client, agent, customer, make_ticket, django_assert_max_num_queries
):
    ticket = make_ticket()
    services.add_comment(actor=agent, ticket=ticket, body="First")
    client.force_login(agent)
    client.get(f"/admin/support/{ticket.pk}/")

    few = count_queries(lambda: client.get(f"/admin/support/{ticket.pk}/"))
    parent = None
    for n in range(25):
        staff = n % 2 == 1
        comment = services.add_comment(
            actor=agent if staff else customer,
            ticket=ticket,
            body=f"Comment {n}",
            is_internal=staff and n % 4 == 1,
            parent=parent if staff else None,
        )
        parent = comment if not comment.is_internal else parent
        services.update_ticket(actor=agent, ticket=ticket, priority=["low", "high"][n % 2])
    for _ in range(8):
        make_ticket(subject="Another of theirs")
    many = count_queries(lambda: client.get(f"/admin/support/{ticket.pk}/"))

    assert few == many
    # Session, user, permissions (one query), role, ticket, the option lists (agents,
    # categories, canned replies: one query), comments, timeline, other tickets, and the
    # customer.viewed entry (savepoint, insert, release).
    with django_assert_max_num_queries(12):
        client.get(f"/admin/support/{ticket.pk}/")


@pytest.mark.parametrize(
    ("part", "start", "bound"),
    [
        # The insides of the page's header and cards, which stay put (see ticket.html): the
        # session, the user, their permissions (one query) and the ticket, then each one's own.
        ("header", '<div class="ticket-kicker">', 4),
        ("actions", '<header class="card-header"><h2>Properties</h2>', 5),
        ("timeline", '<header class="card-header"><h2>Activity</h2>', 5),
        ("conversation", '<section class="conversation" id="conversation"', 6),
        # The SLA card, loaded after the page: the ticket's targets.
        ("sla", '<header class="card-header"><h2>SLA</h2>', 5),
    ],
)
def test_ticket_fragments_render_alone(
    client, agent, worked_ticket, django_assert_max_num_queries, part, start, bound
):
    client.force_login(agent)
    with django_assert_max_num_queries(bound):
        response = client.get(f"/admin/support/{worked_ticket.pk}/?part={part}", headers=HX)
    assert response.status_code == 200
    fragment = html(response)
    assert fragment.lstrip().startswith(start)
    assert "<html" not in fragment and "customer-context" not in fragment


def test_unknown_fragment_is_400_and_missing_ticket_is_404(client, agent, worked_ticket):
    client.force_login(agent)
    response = client.get(f"/admin/support/{worked_ticket.pk}/?part=secrets", headers=HX)
    assert response.status_code == 400
    assert "Unknown part 'secrets'. Parts: header, actions, timeline, conversation, sla." in html(
        response
    )
    assert client.get("/admin/support/999999/").status_code == 404
    assert client.get(f"/admin/support/{2**63}/").status_code == 404


# --- comments ----------------------------------------------------------------------------------


def test_internal_note_is_appended_through_htmx_and_fires_events(client, agent, worked_ticket):
    client.force_login(agent)
    response = client.post(
        f"/admin/support/{worked_ticket.pk}/comments/",
        {"body": "Escalated to the sync team.", "is_internal": "on"},
        headers=HX,
    )

    assert response.status_code == 200
    fragment = html(response)
    assert fragment.lstrip().startswith('<section class="conversation" id="conversation"')
    comment = Comment.objects.latest("id")
    assert (comment.body, comment.is_internal, comment.author_id) == (
        "Escalated to the sync team.",
        True,
        agent.pk,
    )
    new = re.search(
        rf'<li class="comment comment-internal is-new"\s+id="comment-{comment.pk}"', fragment
    )
    assert new, fragment
    assert "Internal note added." in fragment
    assert json.loads(response["HX-Trigger-After-Swap"]) == {
        "ticketChanged": {"ticket": worked_ticket.pk}
    }
    assert "HX-Trigger" not in response
    # The form comes back empty, with the internal-note box still ticked.
    assert (
        '<textarea name="body"' in fragment
        and "Escalated to the sync team.</textarea>" not in fragment
    )
    assert re.search(r'name="is_internal" value="on" checked', fragment)


def test_public_reply_through_htmx_brings_the_actions_card_showing_it_opened(
    client, agent, make_ticket, django_assert_max_num_queries
):
    ticket = make_ticket()
    assert ticket.status == Status.NEW
    client.force_login(agent)
    # Session, user, permissions, ticket; the comment with its audit and status change; then
    # the fresh ticket, comments, canned replies, agents and categories for the two fragments.
    with django_assert_max_num_queries(25):
        response = client.post(
            f"/admin/support/{ticket.pk}/comments/", {"body": "Looking into it."}, headers=HX
        )

    assert response.status_code == 200
    conversation, oob, card = html(response).partition(
        '<section id="ticket-actions" hx-swap-oob="innerHTML">'
    )
    assert conversation.lstrip().startswith('<section class="conversation" id="conversation"')
    assert "Looking into it." in conversation and "Comment sent to the customer." in conversation
    # The card comes along out of band, as the ticket is now: open, still unassigned.
    assert oob and card.rstrip().endswith("</section>")
    assert '<option value="open" selected>Open</option>' in card
    assert '<option value="none" selected>Unassigned</option>' in card
    assert 'data-testid="assign-to-me"' in card and 'data-testid="resolve"' in card
    assert 'data-testid="action-notice"' not in card
    assert json.loads(response["HX-Trigger-After-Swap"]) == {"ticketChanged": {"ticket": ticket.pk}}


def test_public_reply_without_javascript_redirects_to_the_comment(
    client, agent, make_ticket, django_capture_on_commit_callbacks
):
    ticket = make_ticket()
    client.force_login(agent)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(f"/admin/support/{ticket.pk}/comments/", {"body": "Hello Maria"})
    comment = Comment.objects.get(ticket=ticket)
    assert response.status_code == 303
    assert response["Location"] == f"/admin/support/{ticket.pk}/#comment-{comment.pk}"
    assert not comment.is_internal
    ticket.refresh_from_db()
    assert ticket.status == Status.OPEN and ticket.first_responded_at is not None
    assert ("tickets.send_reply_email", (comment.pk,)) in queued_tasks(callbacks)
    assert "Comment sent to the customer." in html(client.get(response["Location"]))


def test_reply_to_a_comment_threads_it(client, agent, worked_ticket):
    parent = Comment.objects.get(body="Thanks, still broken here.")
    client.force_login(agent)
    response = client.post(
        f"/admin/support/{worked_ticket.pk}/comments/",
        {"body": "Can you send a screenshot?", "parent": parent.pk},
        headers=HX,
    )
    assert response.status_code == 200
    assert Comment.objects.get(body="Can you send a screenshot?").parent_id == parent.pk
    bodies = re.findall(r'<div class="comment-body">([^<]+)</div>', html(response))
    assert bodies[-2:] == ["Thanks, still broken here.", "Can you send a screenshot?"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"body": "   "}, "Write a comment before sending."),
        ({"body": "x" * 20_001}, "Ensure this value has at most 20000 characters"),
        ({"body": "Hi", "parent": "999999"}, "The comment you replied to is not on this ticket."),
    ],
)
def test_bad_comment_input_is_refused_and_kept_in_the_form(
    client, agent, make_ticket, data, message
):
    ticket = make_ticket()
    client.force_login(agent)
    fragment = client.post(f"/admin/support/{ticket.pk}/comments/", data, headers=HX)
    assert fragment.status_code == 400 and message in html(fragment)
    assert fragment["X-Ticket-Fragment"] == "conversation"
    page = client.post(f"/admin/support/{ticket.pk}/comments/", data)
    assert page.status_code == 400 and message in html(page) and "<html" in html(page)
    if data["body"].strip():
        assert f">{data['body']}</textarea>" in html(page)  # what was typed is kept
    assert not Comment.objects.filter(ticket=ticket).exists()


def test_comment_on_another_tickets_comment_or_a_closed_ticket_is_refused(
    client, agent, make_ticket
):
    other = make_ticket(subject="Other")
    foreign = services.add_comment(actor=agent, ticket=other, body="Elsewhere")
    ticket = make_ticket(subject="This one")
    client.force_login(agent)

    response = client.post(
        f"/admin/support/{ticket.pk}/comments/", {"body": "Hi", "parent": foreign.pk}, headers=HX
    )
    assert response.status_code == 400
    assert "The comment you replied to is not on this ticket." in html(response)

    closed = make_ticket(subject="Closed", status="closed", actor=agent)
    response = client.post(f"/admin/support/{closed.pk}/comments/", {"body": "Anyone?"}, headers=HX)
    assert response.status_code == 400
    assert f"Ticket #{closed.ticket_number} is closed and accepts no comments" in html(response)
    assert not Comment.objects.filter(ticket__in=[ticket, closed]).exists()


def test_canned_reply_fills_the_form_without_javascript(client, agent, make_ticket):
    ticket = make_ticket()
    reply = services.create_canned_reply(
        actor=agent, title="Reconnect", body="Please reconnect your account."
    )
    client.force_login(agent)
    page = html(client.get(f"/admin/support/{ticket.pk}/?canned={reply.pk}"))
    assert ">Please reconnect your account.</textarea>" in page
    assert (
        f'<option value="{reply.pk}" data-body="Please reconnect your account.">Reconnect</option>'
        in page
    )
    assert CannedReply.objects.count() == 1


# --- quick actions -------------------------------------------------------------------------------


def test_assign_to_me_through_htmx_rerenders_the_actions_and_fires_ticket_changed(
    client, agent, make_ticket
):
    ticket = make_ticket()
    client.force_login(agent)
    response = client.post(f"/admin/support/{ticket.pk}/assign/", {"assignee": "me"}, headers=HX)

    assert response.status_code == 200
    fragment = html(response)
    # The inside of the card, which stays on the page: a concurrent swap cannot detach it.
    assert fragment.lstrip().startswith('<header class="card-header"><h2>Properties</h2>')
    assert "Assigned the ticket to you." in fragment
    assert 'data-testid="assign-to-me"' not in fragment  # already theirs
    assert re.search(rf'<option value="{agent.pk}" selected>Sam Carter</option>', fragment)
    # Fired after the swap, so on <body> if the form was replaced while it waited.
    assert json.loads(response["HX-Trigger-After-Swap"]) == {"ticketChanged": {"ticket": ticket.pk}}
    assert "HX-Trigger" not in response
    assert Ticket.objects.get(pk=ticket.pk).assignee_id == agent.pk
    header = html(client.get(f"/admin/support/{ticket.pk}/?part=header", headers=HX))
    assert "Sam Carter" in header


def test_assign_unassign_priority_category_and_resolve_without_javascript(
    client, agent, agent2, categories, make_ticket
):
    ticket = make_ticket()
    client.force_login(agent)
    url = f"/admin/support/{ticket.pk}"

    steps = [
        ("assign", {"assignee": agent2.pk}, "Assigned the ticket to Lena Fischer."),
        ("assign", {"assignee": "none"}, "Unassigned the ticket."),
        ("update", {"priority": "urgent"}, "Set priority to Urgent."),
        ("update", {"category": "billing"}, "Set category to Billing."),
        ("status", {"status": "pending"}, "Status set to Pending."),
        ("status", {"status": "resolved"}, "Resolved the ticket."),
    ]
    for action, data, message in steps:
        response = client.post(f"{url}/{action}/", data)
        assert response.status_code == 303, html(response)
        assert response["Location"] == f"{url}/"
        assert message in html(client.get(response["Location"]))

    ticket.refresh_from_db()
    assert (ticket.assignee, ticket.priority, ticket.category.slug, ticket.status) == (
        None,
        "urgent",
        "billing",
        "resolved",
    )
    kinds = list(TicketEvent.objects.filter(ticket=ticket).values_list("kind", flat=True))
    assert kinds == ["created", "assignee", "assignee", "priority", "category", "status", "status"]


@pytest.mark.parametrize(
    ("action", "data", "message"),
    [
        ("assign", {"assignee": "someone"}, "Choose an agent, &#x27;me&#x27; or &#x27;none&#x27;"),
        ("assign", {"assignee": "999999"}, "No user with id 999999."),
        ("assign", {}, "Choose who to assign the ticket to."),
        ("status", {"status": "done"}, "Unknown status &#x27;done&#x27;"),
        ("update", {"priority": "extreme"}, "Unknown priority &#x27;extreme&#x27;"),
        ("update", {"category": "astrology"}, "Unknown category &#x27;astrology&#x27;"),
        ("update", {}, "Choose a priority or a category to change."),
    ],
)
def test_bad_quick_action_input_is_refused(client, agent, make_ticket, action, data, message):
    ticket = make_ticket()
    client.force_login(agent)
    response = client.post(f"/admin/support/{ticket.pk}/{action}/", data, headers=HX)
    assert response.status_code == 400
    assert message in html(response)
    assert response["X-Ticket-Fragment"] == "actions"
    assert "HX-Trigger" not in response and "HX-Trigger-After-Swap" not in response
    full = client.post(f"/admin/support/{ticket.pk}/{action}/", data)
    assert full.status_code == 400 and message in html(full) and "<html" in html(full)
    assert TicketEvent.objects.filter(ticket=ticket).count() == 1


def test_rule_violations_name_the_problem_and_change_nothing(
    client, agent, lead, customer, make_ticket
):
    resolved = make_ticket(subject="Resolved", status="resolved", actor=agent)
    closed = make_ticket(subject="Closed", status="closed", actor=agent)
    fresh = make_ticket(subject="Fresh")
    client.force_login(agent)

    forbidden = client.post(
        f"/admin/support/{resolved.pk}/status/", {"status": "pending"}, headers=HX
    )
    assert forbidden.status_code == 400
    assert f"Ticket #{resolved.ticket_number} cannot go from resolved to pending." in html(
        forbidden
    )
    assert "Allowed next statuses: open, closed." in html(forbidden)

    not_staff = client.post(
        f"/admin/support/{fresh.pk}/assign/", {"assignee": customer.pk}, headers=HX
    )
    assert not_staff.status_code == 400
    assert f"{customer.username} is not an active staff member who works tickets." in html(
        not_staff
    )

    reopen = client.post(f"/admin/support/{closed.pk}/status/", {"status": "open"}, headers=HX)
    assert reopen.status_code == 403
    assert f"Only a support lead can reopen closed ticket #{closed.ticket_number}." in html(reopen)

    assert [
        t.status for t in Ticket.objects.filter(pk__in=[resolved.pk, closed.pk]).order_by("pk")
    ] == ["resolved", "closed"]
    assert Ticket.objects.get(pk=fresh.pk).assignee is None

    # A lead may reopen it, and the page offers it to them.
    client.force_login(lead)
    assert 'data-testid="reopen"' in html(client.get(f"/admin/support/{closed.pk}/"))
    assert client.post(f"/admin/support/{closed.pk}/status/", {"status": "open"}).status_code == 303
    assert Ticket.objects.get(pk=closed.pk).status == Status.OPEN


def test_closed_ticket_page_offers_no_comment_form_and_agents_no_reopen(client, agent, make_ticket):
    closed = make_ticket(status="closed", actor=agent)
    client.force_login(agent)
    page = html(client.get(f"/admin/support/{closed.pk}/"))
    assert 'data-testid="composer-closed"' in page and 'data-testid="composer"' not in page
    assert 'data-testid="reopen"' not in page and 'data-testid="resolve"' not in page


def test_ops_reads_tickets_but_every_change_is_refused(client, ops, agent, make_ticket):
    ticket = make_ticket()
    client.force_login(ops)

    page = html(client.get(f"/admin/support/{ticket.pk}/"))
    assert 'data-testid="read-only"' in page
    assert 'data-testid="composer"' not in page and 'data-testid="assign-to-me"' not in page
    assert "<select" not in re.search(r'id="ticket-actions".*?</section>', page, re.S).group(0)
    queue = html(client.get("/admin/support/"))
    assert 'name="ticket"' not in queue and "Read-only" in queue

    for action, data in [
        ("comments", {"body": "hi"}),
        ("assign", {"assignee": agent.pk}),
        ("status", {"status": "open"}),
        ("update", {"priority": "high"}),
    ]:
        assert client.post(f"/admin/support/{ticket.pk}/{action}/", data).status_code == 403
    assert (
        client.post("/admin/support/bulk/", {"action": "close", "ticket": [ticket.pk]}).status_code
        == 403
    )
    assert client.post("/admin/support/views/", {"name": "Mine", "query": ""}).status_code == 403
    ticket.refresh_from_db()
    assert (ticket.status, ticket.assignee_id, ticket.priority) == ("new", None, "normal")
    assert not Comment.objects.exists()


class WithoutImpersonation:
    """The project's URL map less the impersonation pages (as before they were built)."""

    def __init__(self):
        from adminsite.urls import urlpatterns

        self.urlpatterns = [p for p in urlpatterns if "impersonation" not in str(p.pattern)]


def test_impersonate_form_appears_only_once_the_start_url_exists(
    client, settings, agent, make_ticket, django_user_model
):
    ticket = make_ticket()
    boss = django_user_model.objects.create_superuser(
        "boss", "boss@example.com", "pw-for-boss-2026"
    )
    client.force_login(boss)
    settings.ROOT_URLCONF = WithoutImpersonation()
    assert 'data-testid="impersonate-form"' not in html(client.get(f"/admin/support/{ticket.pk}/"))

    settings.ROOT_URLCONF = URLConf("/admin/impersonation/start")
    page = html(client.get(f"/admin/support/{ticket.pk}/"))
    form = re.search(
        r'<form method="post" action="/admin/impersonation/start".*?</form>', page, re.S
    ).group(0)
    assert f'name="user" value="{ticket.requester_id}"' in form
    assert f'name="ticket" value="{ticket.pk}"' in form
    assert 'name="reason"' in form and "required" in form
    # Only roles that may impersonate get the form.
    client.force_login(agent)
    assert 'data-testid="impersonate-form"' not in html(client.get(f"/admin/support/{ticket.pk}/"))


def test_leads_set_the_customers_support_plan_from_the_customer_card(
    client, agent, lead, make_ticket
):
    from tickets.models import CustomerProfile

    ticket = make_ticket()
    url = f"/admin/support/{ticket.pk}/customer-tier/"
    client.force_login(agent)
    page = html(client.get(f"/admin/support/{ticket.pk}/"))
    assert 'data-testid="tier-form"' not in page and "tier-chip tier-standard" in page
    assert client.post(url, {"tier": "enterprise"}).status_code == 403

    client.force_login(lead)
    page = html(client.get(f"/admin/support/{ticket.pk}/"))
    form = re.search(r'<form[^>]*data-testid="tier-form".*?</form>', page, re.S).group(0)
    assert f'action="{url}"' in form and '<option value="standard" selected>' in form
    response = client.post(url, {"tier": "enterprise"})
    assert response.status_code == 303 and response["Location"] == f"/admin/support/{ticket.pk}/"
    assert CustomerProfile.objects.get(user=ticket.requester).tier == "enterprise"
    entry = AuditEntry.objects.get(event="customer.tier_changed")
    assert entry.actor_id == lead.pk and entry.changes == {"tier": ["standard", "enterprise"]}
    page = html(client.get(f"/admin/support/{ticket.pk}/"))
    assert "is now on the Enterprise plan." in page
    assert '<option value="enterprise" selected>' in page

    bad = client.post(url, {"tier": "platinum"})
    assert bad.status_code == 400
    assert "standard, business, enterprise" in html(bad)
    assert CustomerProfile.objects.get(user=ticket.requester).tier == "enterprise"
    assert AuditEntry.objects.filter(event="customer.tier_changed").count() == 1


def test_audit_history_links_show_to_those_who_read_the_audit_trail(
    client, agent, lead, make_ticket
):
    ticket = make_ticket()
    client.force_login(lead)
    page = html(client.get(f"/admin/support/{ticket.pk}/"))
    customer_history = f"/admin/audit/?target_type=auth.user&amp;target_id={ticket.requester_id}"
    ticket_history = f"/admin/audit/?target_type=tickets.ticket&amp;target_id={ticket.pk}"
    assert f'href="{customer_history}"' in page
    assert f'href="{ticket_history}"' in page
    client.force_login(agent)
    assert "/admin/audit/?" not in html(client.get(f"/admin/support/{ticket.pk}/"))


# --- collision detection -------------------------------------------------------------------------


@pytest.fixture
def fresh_presence():
    """Forget presence entries a previous run may have left for the same ticket ids."""
    keys = []

    def clear(ticket):
        keys.append(presence.presence_key(ticket.pk))
        cache.delete(keys[-1])

    yield clear
    cache.delete_many(keys)


def poll(client, ticket, seen):
    return client.get(
        f"/admin/support/{ticket.pk}/presence/", {"seen": seen.isoformat()}, headers=HX
    )


def test_viewers_see_each_other_until_one_leaves(
    client, agent, agent2, make_ticket, fresh_presence
):
    ticket = make_ticket()
    fresh_presence(ticket)
    seen = ticket.updated_at
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        client.force_login(agent)
        alone = poll(client, ticket, seen)
        assert alone.status_code == 200 and 'data-testid="viewer"' not in html(alone)

        client.force_login(agent2)
        assert "Sam Carter is viewing" in html(poll(client, ticket, seen))
        client.force_login(agent)
        assert "Lena Fischer is viewing" in html(poll(client, ticket, seen))

        # Lena closed her tab: after the presence window she is no longer listed.
        clock.shift(presence.PRESENCE_SECONDS + 1)
        assert 'data-testid="viewer"' not in html(poll(client, ticket, seen))


def test_a_change_by_someone_else_raises_the_reload_notice_but_ones_own_does_not(
    client, agent, agent2, make_ticket, fresh_presence
):
    ticket = make_ticket()
    fresh_presence(ticket)
    seen = ticket.updated_at
    client.force_login(agent)

    client.post(f"/admin/support/{ticket.pk}/update/", {"priority": "high"}, headers=HX)
    client.post(
        f"/admin/support/{ticket.pk}/comments/", {"body": "Note", "is_internal": "on"}, headers=HX
    )
    assert 'data-testid="stale-notice"' not in html(poll(client, ticket, seen))

    services.assign_ticket(actor=agent2, ticket=ticket, assignee=agent2)
    notice = html(poll(client, ticket, seen))
    assert 'data-testid="stale-notice"' in notice
    assert "Ticket updated by Lena Fischer" in notice
    assert f'href="/admin/support/{ticket.pk}/"' in notice
    # Once reloaded (a newer ``seen``), the notice is gone.
    latest = Ticket.objects.get(pk=ticket.pk).updated_at
    assert 'data-testid="stale-notice"' not in html(poll(client, ticket, latest))


def test_a_customer_reply_raises_the_notice_too(
    client, agent, customer, make_ticket, fresh_presence
):
    ticket = make_ticket()
    fresh_presence(ticket)
    seen = ticket.updated_at
    services.add_comment(actor=customer, ticket=ticket, body="Any news?")
    client.force_login(agent)
    assert "Ticket updated by Maria Garcia" in html(poll(client, ticket, seen))


def test_presence_needs_a_valid_seen_time_and_answers_in_few_queries(
    client, agent, make_ticket, fresh_presence, django_assert_max_num_queries
):
    ticket = make_ticket()
    fresh_presence(ticket)
    client.force_login(agent)
    for bad in ("", "yesterday", "2026-01-01T10:00:00", "2026-02-30T10:00:00+00:00"):
        response = client.get(f"/admin/support/{ticket.pk}/presence/", {"seen": bad}, headers=HX)
        assert response.status_code == 400
        assert "seen: give the ticket's updatedAt" in html(response)
    with django_assert_max_num_queries(6):
        poll(client, ticket, ticket.updated_at - timedelta(seconds=5))


# --- the dashboard panel -------------------------------------------------------------------------


def test_dashboard_support_panel_counts_the_active_queue(client, agent, ops, make_ticket):
    make_ticket(priority="urgent")
    make_ticket(assignee=agent)
    make_ticket(status="resolved", actor=agent)
    client.force_login(ops)

    page = html(client.get("/admin/"))
    panel = re.search(r'id="panel-support".*?</section>', page, re.S).group(0)
    counts = dict(
        re.findall(r'data-count="(\w+)">.*?<span class="badge[^"]*">(\d+)</span>', panel, re.S)
    )
    assert counts == {"open": "2", "unassigned": "1", "urgent": "1", "breached": "0"}
    assert 'href="/admin/support/?assignee=none"' in panel
    assert 'href="/admin/support/">Open' in panel
    refreshed = client.get("/admin/panels/support/", headers=HX)
    assert refreshed.status_code == 200 and 'data-count="urgent"' in html(refreshed)


def test_dashboard_hides_the_support_panel_without_the_ticket_permission(client, make_ticket):
    accountant = StaffFactory(role=roles.OPS)
    accountant.groups.clear()
    client.force_login(accountant)
    assert 'id="panel-support"' not in html(client.get("/admin/"))
    assert client.get("/admin/panels/support/").status_code == 403


# --- the role matrix for pages that need a ticket ---------------------------------------------------

WORKERS = {"admin", "lead", "agent"}
STAFF_ROLES = WORKERS | {"ops"}


def test_role_matrix_for_ticket_pages_and_actions(client, make_ticket):
    ticket = make_ticket(requester=role_user("customer"))
    base = f"/admin/support/{ticket.pk}"
    seen = urlencode({"seen": ticket.updated_at.isoformat()})
    assert_access_matrix(client, f"{base}/", STAFF_ROLES)
    assert_access_matrix(client, f"{base}/?part=timeline", STAFF_ROLES)
    assert_access_matrix(client, f"{base}/presence/?{seen}", STAFF_ROLES)
    assert_access_matrix(
        client, f"{base}/comments/", WORKERS, method="post", data={"body": "Hello"}, status=303
    )
    assert_access_matrix(
        client, f"{base}/assign/", WORKERS, method="post", data={"assignee": "me"}, status=303
    )
    assert_access_matrix(
        client, f"{base}/update/", WORKERS, method="post", data={"priority": "high"}, status=303
    )
    assert_access_matrix(
        client, f"{base}/status/", WORKERS, method="post", data={"status": "pending"}, status=303
    )
    assert_access_matrix(
        client,
        "/admin/support/bulk/",
        WORKERS,
        method="post",
        data={"action": "assign", "assignee": "none", "ticket": [ticket.pk]},
        status=303,
    )
    assert_access_matrix(
        client,
        "/admin/support/views/",
        WORKERS,
        method="post",
        data={"name": "Pending", "query": "status=pending"},
        status=303,
    )
    view = SavedView.objects.get(user=role_user("lead"))
    assert_access_matrix(
        client,
        f"/admin/support/views/{view.pk}/delete/",
        {"lead"},
        method="post",
        status=303,
        expect={"admin": 404, "agent": 404},
    )
    assert Comment.objects.filter(ticket=ticket).count() == 3


def test_the_impersonate_form_fields_start_a_session_on_the_customers_ticket(
    client, lead, make_ticket
):
    ticket = make_ticket()
    client.force_login(lead)
    page = html(client.get(f"/admin/support/{ticket.pk}/"))
    form = re.search(r'data-testid="impersonate-form">(.*?)</form>', page, re.S).group(1)
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))
    fields.pop("csrfmiddlewaretoken")
    response = client.post(
        "/admin/impersonation/start",
        {**fields, "reason": f"Reproduce the sync problem of ticket #{ticket.ticket_number}"},
    )
    assert response.status_code in (302, 303), html(response)
    assert response["Location"] == f"/help/tickets/{ticket.pk}/"


@pytest.mark.parametrize("query", ["reply_to=%C2%B2", "reply_to=" + "7" * 40, "canned=x", "part=x"])
def test_odd_ticket_page_parameters_are_ignored_not_fatal(client, agent, make_ticket, query):
    ticket = make_ticket()
    client.force_login(agent)
    assert client.get(f"/admin/support/{ticket.pk}/?{query}").status_code == 200
