"""Shared reads: the access helper, filters and their errors, queue rows and statistics (with
the facet counters), threads, timeline, customer context, and their query counts."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.http import Http404, QueryDict
from django.utils import timezone

from adminsite import roles
from tests.factories import CustomerFactory, StaffFactory
from tickets import queries, services
from tickets.filters import FilterError, TicketFilters, parse_filters
from tickets.models import CannedReply, Comment, SavedView, Ticket, TicketCount, TicketEvent

pytestmark = pytest.mark.django_db


def filters_for(user, query: str = "", **kwargs) -> TicketFilters:
    return parse_filters(QueryDict(query), user=user, **kwargs)


def numbers(tickets) -> list[int]:
    return [t.ticket_number for t in tickets]


# --- ticket_for ----------------------------------------------------------------------------


def test_ticket_for_confines_customers_to_their_own_tickets(
    make_ticket, customer, other_customer, agent, ops
):
    ticket = make_ticket()
    assert queries.ticket_for(customer, ticket.pk) == ticket
    assert queries.ticket_for(agent, str(ticket.pk)) == ticket
    assert queries.ticket_for(ops, ticket.pk) == ticket  # Ops read tickets
    for user, value in (
        (other_customer, ticket.pk),  # another customer's: not found, never forbidden
        (customer, "abc"),
        (customer, None),
        (customer, -1),
        (customer, 2**63),
        (agent, 99999999),
    ):
        with pytest.raises(Http404):
            queries.ticket_for(user, value)


def test_staff_without_ticket_permissions_see_nothing(make_ticket):
    ticket = make_ticket()
    no_role = StaffFactory(role=roles.OPS)
    no_role.groups.clear()
    with pytest.raises(Http404):
        queries.ticket_for(no_role, ticket.pk)


def test_ticket_for_loads_the_header_in_one_query(make_ticket, agent, django_assert_num_queries):
    ticket = make_ticket(assignee=agent)
    agent.has_perm("tickets.view_ticket")  # permissions are cached on the user
    with django_assert_num_queries(1):
        loaded = queries.ticket_for(agent, ticket.pk)
        header = (
            loaded.category.slug,
            loaded.requester.pk,
            loaded.requester.email,
            loaded.assignee.pk,
        )
    assert header == ("email_sync", ticket.requester_id, ticket.requester.email, agent.pk)
    assert loaded.merged_into is None  # never merged: nothing more to read


def test_ticket_for_reads_the_ticket_a_merge_closed_it_into(
    make_ticket, agent, django_assert_num_queries
):
    target = make_ticket(subject="Kept")
    duplicate = make_ticket(subject="Duplicate")
    services.merge_tickets(actor=agent, source=duplicate, target=target)
    agent.has_perm("tickets.view_ticket")
    # The ticket, then the one it was merged into (only a merged ticket pays for it).
    with django_assert_num_queries(2):
        loaded = queries.ticket_for(agent, duplicate.pk)
        merged_into = (loaded.merged_into.pk, loaded.merged_into.ticket_number)
        subject = loaded.merged_into.subject
    assert merged_into == (target.pk, target.ticket_number) and subject == "Kept"


# --- filters -------------------------------------------------------------------------------


def test_filter_defaults_and_round_trip(agent):
    filters = filters_for(agent)
    assert filters.statuses == ("new", "open", "pending", "on_hold")
    assert filters.ordering == "-priority"
    filters = filters_for(
        agent, "status=open&status=pending&priority=high,urgent&ordering=nextDueAt"
    )
    assert filters.statuses == ("open", "pending")
    assert filters.priorities == ("high", "urgent")
    assert "ordering=nextDueAt" in filters.querystring()
    assert "page=2" in filters.querystring(page="2")
    assert "status" not in filters.querystring(status=None)
    assert filters_for(agent, "assignee=me").assignee == agent.pk
    assert filters_for(agent, "assignee=me").assignee_is_me


@pytest.mark.parametrize(
    ("query", "name", "phrase"),
    [
        (
            "status=done",
            "status",
            "Allowed values: new, open, pending, on_hold, resolved, closed, active, all",
        ),
        ("priority=p9", "priority", "low, normal, high, urgent"),
        ("category=sales", "category", "email_sync, billing"),
        ("assignee=someone", "assignee", "'me', 'none'"),
        ("breached=maybe", "breached", "true or false"),
        ("createdAfter=31/01/2025", "createdAfter", "ISO 8601"),
        ("createdAfter=2025-02-30", "createdAfter", "ISO 8601"),
        ("createdAfter=2025-03-01&createdBefore=2025-02-01", "createdBefore", "later"),
        ("ordering=subject", "ordering", "-priority, priority, nextDueAt"),
        ("requester=x", "requester", "user id"),
        ("colour=red", "colour", "Unknown parameter"),
    ],
)
def test_filter_errors_name_the_parameter_and_what_it_accepts(
    agent, categories, query, name, phrase
):
    with pytest.raises(FilterError) as error:
        filters_for(agent, query)
    assert phrase in error.value.errors[name]


def test_customers_get_only_the_customer_filters(customer):
    with pytest.raises(FilterError) as error:
        filters_for(customer, "search=token&assignee=me&breached=true&requester=3&tag=vip")
    assert set(error.value.errors) == {"search", "assignee", "breached", "requester", "tag"}
    assert filters_for(customer, "status=all&priority=high").statuses[-1] == "closed"


def test_created_range_covers_whole_days(agent):
    filters = filters_for(agent, "createdAfter=2025-01-31&createdBefore=2025-01-31")
    assert filters.created_before - filters.created_after == timedelta(days=1)
    filters = filters_for(agent, "createdAfter=2025-01-31T10:00:00%2B02:00")
    assert filters.created_after.utcoffset() == timedelta(hours=2)


# --- queue rows ----------------------------------------------------------------------------


@pytest.fixture
def queue(make_ticket, agent, agent2, other_customer):
    """A small queue; each ticket created a minute after the previous one."""
    start = timezone.now() - timedelta(hours=1)
    made = {}
    for offset, (name, kwargs) in enumerate(
        [
            ("normal_old", {"subject": "Calendar invites shift by an hour"}),
            (
                "urgent_mine",
                {
                    "subject": "Gateway timeout",
                    "priority": "urgent",
                    "assignee": agent,
                    "category": "bug",
                },
            ),
            (
                "high_billing",
                {
                    "subject": "Double charge",
                    "priority": "high",
                    "category": "billing",
                    "tags": ["vip"],
                },
            ),
            (
                "low_pending",
                {
                    "subject": "Dark mode links",
                    "priority": "low",
                    "status": "pending",
                    "assignee": agent2,
                },
            ),
            ("urgent_new", {"subject": "Everything is down", "priority": "urgent"}),
            ("closed", {"subject": "Old issue", "status": "closed", "actor": agent}),
            ("other_customer", {"subject": "Someone else", "requester": other_customer}),
        ]
    ):
        ticket = make_ticket(**kwargs)
        Ticket.objects.filter(pk=ticket.pk).update(created_at=start + timedelta(minutes=offset))
        made[name] = Ticket.objects.get(pk=ticket.pk)
    return made


def test_default_queue_is_active_tickets_most_urgent_then_oldest(queue, agent):
    rows = list(queries.ticket_queue(user=agent, filters=filters_for(agent)))
    names = {t.pk: name for name, t in queue.items()}
    assert [names[t.pk] for t in rows] == [
        "urgent_mine",
        "urgent_new",
        "high_billing",
        "normal_old",
        "other_customer",
        "low_pending",
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("assignee=me", {"urgent_mine"}),
        ("assignee=none&priority=urgent", {"urgent_new"}),
        ("category=billing", {"high_billing"}),
        ("status=closed", {"closed"}),
        ("status=pending", {"low_pending"}),
        ("tag=vip", {"high_billing"}),
        ("search=gateway", {"urgent_mine"}),
        ("search=double+charge", {"high_billing"}),
        ("search=charge+-double", set()),
        ("status=all&search=issue", {"closed"}),
    ],
)
def test_queue_filters(queue, agent, query, expected):
    names = {t.pk: name for name, t in queue.items()}
    rows = queries.ticket_queue(user=agent, filters=filters_for(agent, query))
    assert {names[t.pk] for t in rows} == expected


def test_queue_filters_by_requester_assignee_id_breach_and_dates(queue, agent2, customer, agent):
    names = {t.pk: name for name, t in queue.items()}

    def run(query):
        return {
            names[t.pk] for t in queries.ticket_queue(user=agent, filters=filters_for(agent, query))
        }

    assert run(f"assignee={agent2.pk}") == {"low_pending"}
    assert "other_customer" not in run(f"requester={customer.pk}")
    Ticket.objects.filter(pk=queue["normal_old"].pk).update(sla_breached=True)
    assert run("breached=true") == {"normal_old"}
    day = timezone.now().date().isoformat()
    assert "normal_old" in run(f"createdAfter={day}&createdBefore={day}") or "normal_old" in run(
        f"createdBefore={day}"
    )
    assert run("createdAfter=2999-01-01") == set()


def test_search_finds_comment_words_internal_notes_and_ticket_numbers(queue, agent):
    services.add_comment(
        actor=agent,
        ticket=queue["normal_old"],
        body="Daylight saving bug in the ICS export",
        is_internal=True,
    )
    found = queries.ticket_queue(user=agent, filters=filters_for(agent, "search=daylight"))
    assert [t.pk for t in found] == [queue["normal_old"].pk]
    number = queue["closed"].ticket_number
    found = queries.ticket_queue(
        user=agent, filters=filters_for(agent, f"status=all&search=%23{number}")
    )
    assert [t.pk for t in found] == [queue["closed"].pk]


@pytest.mark.parametrize(
    "ordering",
    [
        "-priority",
        "priority",
        "nextDueAt",
        "-nextDueAt",
        "-createdAt",
        "createdAt",
        "-updatedAt",
        "updatedAt",
        "-ticketNumber",
        "ticketNumber",
    ],
)
def test_every_ordering_is_total_and_stable(queue, agent, ordering):
    Ticket.objects.filter(pk=queue["urgent_new"].pk).update(first_response_due_at=timezone.now())
    filters = filters_for(agent, f"status=all&ordering={ordering}")
    rows = list(queries.ticket_queue(user=agent, filters=filters))
    assert len(rows) == len(queue) and len({t.pk for t in rows}) == len(queue)
    first_page = list(queries.ticket_queue(user=agent, filters=filters)[:3])
    second_page = list(queries.ticket_queue(user=agent, filters=filters)[3:])
    assert first_page + second_page == rows
    if ordering == "nextDueAt":
        assert rows[0].pk == queue["urgent_new"].pk  # the only deadline comes first
    if ordering == "-createdAt":
        assert rows[0].pk == queue["other_customer"].pk


def test_customers_see_only_their_own_tickets_in_the_queue(queue, customer):
    rows = queries.ticket_queue(user=customer, filters=filters_for(customer, "status=all"))
    assert queue["other_customer"].pk not in {t.pk for t in rows}
    assert len(rows) == len(queue) - 1


# --- statistics and counters ---------------------------------------------------------------


def test_queue_stats_for_the_filter_scope(queue, agent):
    Ticket.objects.filter(pk=queue["urgent_new"].pk).update(sla_breached=True)
    Ticket.objects.filter(pk=queue["closed"].pk).update(sla_breached=True)  # history, not counted
    assert queries.queue_stats(filters=filters_for(agent)) == {
        "total": 6,
        "open": 5,
        "pending": 1,
        "urgent": 2,
        "breached": 1,
        "capped": False,
    }
    assert queries.queue_stats(filters=filters_for(agent, "status=all"))["total"] == 7
    assert queries.queue_stats(filters=filters_for(agent, "assignee=me")) == {
        "total": 1,
        "open": 1,
        "pending": 0,
        "urgent": 1,
        "breached": 0,
        "capped": False,
    }
    # A search scope counts the tickets themselves, with the same answers.
    assert queries.queue_stats(filters=filters_for(agent, "search=everything")) == {
        "total": 1,
        "open": 1,
        "pending": 0,
        "urgent": 1,
        "breached": 1,
        "capped": False,
    }


def test_a_search_counts_up_to_the_limit_and_says_so(make_ticket, agent, monkeypatch):
    """A common word would make the count read the whole table: counts stop at the limit,
    flagged as capped (the page shows "1,000+"), and so do the pages."""
    monkeypatch.setattr(queries, "SEARCH_COUNT_LIMIT", 3)
    for number in range(5):
        make_ticket(subject=f"Outage report {number}", priority="urgent")
    make_ticket(subject="Another outage", status="pending")
    stats = queries.queue_stats(filters=filters_for(agent, "search=outage"))
    assert stats["capped"] is True and stats["total"] == 3
    # Lower bounds over the first hits counted.
    assert stats["open"] + stats["pending"] <= 4 and stats["urgent"] <= 4
    page = queries.queue_page(user=agent, filters=filters_for(agent, "search=outage"), per_page=2)
    assert page.num_pages == 2 and page.count == 3
    exact = queries.queue_stats(filters=filters_for(agent, "search=another"))
    assert exact == {
        "total": 1,
        "open": 0,
        "pending": 1,
        "urgent": 0,
        "breached": 0,
        "capped": False,
    }


def test_queue_stats_is_one_query(queue, agent, django_assert_num_queries):
    for query in ("", "status=all&category=billing", "search=gateway", "createdAfter=2020-01-01"):
        filters = filters_for(agent, query)
        with django_assert_num_queries(1):
            queries.queue_stats(filters=filters)


def _real_counts() -> dict[tuple, int]:
    counts: dict[tuple, int] = {}
    for t in Ticket.objects.all():
        key = (t.status, t.priority, t.category_id, t.assignee_id or 0, t.sla_breached)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _counter_sums() -> dict[tuple, int]:
    sums: dict[tuple, int] = {}
    for row in TicketCount.objects.all():
        key = (row.status, row.priority, row.category_id, row.assignee_key, row.sla_breached)
        sums[key] = sums.get(key, 0) + row.n
    return {key: n for key, n in sums.items() if n}


def test_facet_counters_follow_every_kind_of_change(queue, agent, agent2, categories):
    assert _counter_sums() == _real_counts()
    services.update_ticket(
        actor=agent, ticket=queue["normal_old"], priority="high", category=categories["account"]
    )
    services.bulk_assign(
        actor=agent,
        ticket_ids=[t.pk for t in queue.values() if t.status != "closed"],
        assignee=agent2,
    )
    services.bulk_change_status(
        actor=agent, ticket_ids=[queue["urgent_new"].pk, queue["urgent_mine"].pk], status="pending"
    )
    services.merge_tickets(actor=agent, source=queue["high_billing"], target=queue["normal_old"])
    Ticket.objects.filter(pk=queue["low_pending"].pk).update(sla_breached=True)
    Ticket.objects.filter(pk=queue["other_customer"].pk).delete()
    assert _counter_sums() == _real_counts()
    before = TicketCount.objects.count()
    folded = services.compact_ticket_counts()
    assert folded > 0 and TicketCount.objects.count() < before
    assert _counter_sums() == _real_counts()
    assert services.compact_ticket_counts() == 0  # nothing left to fold
    services.rebuild_ticket_counts()
    assert _counter_sums() == _real_counts()


def test_ticket_count_matches_the_listed_rows(queue, agent, customer):
    for user, query in (
        (agent, ""),
        (agent, "status=all&priority=urgent"),
        (agent, "search=charge"),
        (customer, "status=all"),
        (customer, ""),
    ):
        filters = filters_for(user, query)
        assert queries.ticket_count(user=user, filters=filters) == len(
            queries.ticket_queue(user=user, filters=filters)
        )


def test_queue_page_is_three_queries_whatever_the_size(
    make_ticket, agent, django_assert_num_queries
):
    agent.has_perm("tickets.view_ticket")
    filters = filters_for(agent)
    for _ in range(3):
        make_ticket(assignee=agent)
    # The statistics, the page's ids, their rows.
    with django_assert_num_queries(3):
        page = queries.queue_page(user=agent, filters=filters, per_page=2)
        assert [t.assignee.pk for t in page.tickets] == [agent.pk] * 2
        # Rows are records, one per person and category: nothing loads on access.
        first, second = page.tickets
        assert first.assignee is second.assignee and first.category is second.category
        assert first.requester.email and first.category.name
    for _ in range(12):
        make_ticket()
    with django_assert_num_queries(3):
        page = queries.queue_page(user=agent, filters=filters, page=99, per_page=5)
    assert (page.count, page.num_pages, page.number) == (15, 3, 3)  # past the end: the last page
    assert (page.start_index, page.end_index, page.has_next, page.has_previous) == (
        11,
        15,
        False,
        True,
    )


# --- ticket page reads ---------------------------------------------------------------------


def test_comments_come_threaded_in_one_query(
    make_ticket, agent, customer, django_assert_num_queries
):
    ticket = make_ticket()
    first = services.add_comment(actor=agent, ticket=ticket, body="Please reconnect.")
    note = services.add_comment(
        actor=agent, ticket=ticket, body="Token expired.", is_internal=True, parent=first
    )
    reply_to_note = services.add_comment(
        actor=agent, ticket=ticket, body="Public follow-up.", parent=note
    )
    answer = services.add_comment(actor=customer, ticket=ticket, body="Done, thanks.", parent=first)
    later = services.add_comment(actor=customer, ticket=ticket, body="One more thing.")

    with django_assert_num_queries(1):
        staff_view = queries.comments_for(ticket, include_internal=True)
        assert [(c.pk, c.depth, c.author.get_full_name()) for c in staff_view][0][1] == 0
    assert [(c.pk, c.depth) for c in staff_view] == [
        (first.pk, 0),
        (note.pk, 1),
        (reply_to_note.pk, 2),
        (answer.pk, 1),
        (later.pk, 0),
    ]
    assert [r.pk for r in staff_view[0].replies] == [note.pk, answer.pk]

    customer_view = queries.comments_for(ticket, include_internal=False)
    # No internal note; the public reply to it stands at the top level.
    assert [(c.pk, c.depth) for c in customer_view] == [
        (first.pk, 0),
        (answer.pk, 1),
        (reply_to_note.pk, 0),
        (later.pk, 0),
    ]


def test_thread_comments_carry_author_and_merge_origin(make_ticket, agent, customer):
    target = make_ticket(subject="Kept")
    duplicate = make_ticket(subject="Duplicate")
    services.add_comment(actor=customer, ticket=duplicate, body="Also on the duplicate")
    services.add_comment(actor=agent, ticket=target, body="Looking")
    services.add_comment(actor=agent, ticket=target, body="Note", is_internal=True)
    services.merge_tickets(actor=agent, source=duplicate, target=target)
    comments = queries.comments_for(target, include_internal=True)
    moved = [c for c in comments if c.merged_from is not None]
    assert moved and {c.merged_from.ticket_number for c in moved} == {duplicate.ticket_number}
    assert {c.merged_from.pk for c in moved} == {duplicate.pk}
    by_author = {c.author_id: c.author for c in comments}
    assert by_author[agent.pk].is_staff and not by_author[customer.pk].is_staff
    assert by_author[agent.pk].get_full_name() == agent.get_full_name()
    # One record per author, however many comments they wrote.
    agents = [c.author for c in comments if c.author_id == agent.pk]
    assert len(agents) == 2 and agents[0] is agents[1]
    assert all(c.ticket_id == target.pk for c in comments)
    assert [c.is_internal for c in comments if c.body == "Note"] == [True]


def test_two_hundred_comments_are_still_one_query(
    make_ticket, agent, customer, django_assert_num_queries
):
    ticket = make_ticket()
    for n in range(100):
        services.add_comment(actor=agent if n % 2 else customer, ticket=ticket, body=f"message {n}")
    with django_assert_num_queries(1):
        assert len(queries.comments_for(ticket, include_internal=True)) == 100


def test_timeline_in_order_in_one_query(make_ticket, agent, django_assert_num_queries):
    ticket = make_ticket()
    services.assign_ticket(actor=agent, ticket=ticket, assignee=agent)
    services.change_status(actor=agent, ticket=ticket, status="pending")
    with django_assert_num_queries(1):
        timeline = queries.timeline_for(ticket)
        seen = [(e.kind, e.actor.pk, e.actor.get_full_name()) for e in timeline]
    assert seen == [
        ("created", ticket.requester_id, ticket.requester.get_full_name()),
        ("assignee", agent.pk, "Sam Carter"),
        ("status", agent.pk, "Sam Carter"),
    ]
    stored = list(TicketEvent.objects.filter(ticket=ticket).order_by("created_at", "id"))
    assert [(e.pk, e.from_value, e.to_value, e.created_at) for e in timeline] == [
        (e.pk, e.from_value, e.to_value, e.created_at) for e in stored
    ]
    assert [e.get_kind_display() for e in timeline] == [e.get_kind_display() for e in stored]
    # One record per actor; an event without one (the system's) has none.
    assert timeline[1].actor is timeline[2].actor
    TicketEvent.objects.filter(pk=stored[2].pk).update(actor=None)
    assert queries.timeline_for(ticket)[2].actor is None


def test_customer_context(make_ticket, customer, agent, django_assert_num_queries):
    ticket = make_ticket()
    older = [make_ticket(subject=f"Older {n}") for n in range(12)]
    services.close(actor=agent, ticket=older[0])
    make_ticket(requester=CustomerFactory())  # someone else's ticket is not in the context
    ticket = queries.ticket_for(agent, ticket.pk)
    with django_assert_num_queries(1):
        context = queries.customer_context(ticket)
    assert context["customer"] == customer
    assert context["other_ticket_count"] == 12
    assert context["other_open_count"] == 11
    assert len(context["other_tickets"]) == 10
    assert ticket.pk not in {t.pk for t in context["other_tickets"]}


def test_customer_context_without_other_tickets(make_ticket, agent):
    ticket = queries.ticket_for(agent, make_ticket().pk)
    context = queries.customer_context(ticket)
    assert (
        context["other_tickets"],
        context["other_ticket_count"],
        context["other_open_count"],
    ) == ([], 0, 0)


# --- pickers -------------------------------------------------------------------------------


def test_assignable_agents_are_staff_who_work_tickets(agent, lead, ops, admin_user, customer):
    inactive = StaffFactory(role=roles.SUPPORT_AGENT)
    inactive.is_active = False
    inactive.save(update_fields=["is_active"])
    # Ops read tickets; one holds change_ticket directly, another another change permission.
    direct, other = StaffFactory(role=roles.OPS), StaffFactory(role=roles.OPS)
    tickets_perms = Permission.objects.filter(content_type__app_label="tickets")
    direct.user_permissions.add(tickets_perms.get(codename="change_ticket"))
    other.user_permissions.add(tickets_perms.get(codename="change_comment"))
    found = set(queries.assignable_agents())
    assert {agent, lead, admin_user, direct} <= found
    assert not {ops, customer, inactive, other} & found
    # Still a queryset callers narrow (forms, routing).
    assert list(queries.assignable_agents().filter(pk=direct.pk)) == [direct]


def test_saved_views_start_with_the_builtin_ones(agent, agent2):
    services.save_view(actor=agent, name="Billing", query_string="category=billing")
    services.save_view(actor=agent2, name="Mine", query_string="assignee=me")
    views = queries.queue_options(agent).saved_views
    assert [v["name"] for v in views] == ["My open", "Unassigned urgent", "Billing"]
    assert views[0]["builtin"] and not views[2]["builtin"]
    for view in views[:2]:
        parse_filters(
            QueryDict(view["query_string"]), user=agent
        )  # the built-ins are valid filters


def test_canned_replies_and_categories(agent, categories):
    services.create_canned_reply(actor=agent, title="B", body="b")
    services.create_canned_reply(actor=agent, title="A", body="a")
    assert [r.title for r in queries.ticket_options().canned_replies] == ["A", "B"]
    assert queries.category_slugs()[:2] == ["email_sync", "billing"]
    assert queries.category_ids_by_slug()["billing"] == categories["billing"].pk


@pytest.mark.parametrize("deferred_from", [2, 500])
def test_deep_pages_read_ids_first_and_match_offset_paging(
    queue, agent, monkeypatch, deferred_from
):
    monkeypatch.setattr(queries, "DEFERRED_JOIN_FROM", deferred_from)
    filters = filters_for(agent, "status=all&ordering=-createdAt")
    queryset = queries.ticket_queue(user=agent, filters=filters)
    ids = queries.ticket_queue_ids(user=agent, filters=filters)
    expected = [t.pk for t in queryset]
    for start in range(len(expected)):
        window = expected[start : start + 3]
        assert [t.pk for t in queries.page_slice(queryset, start, start + 3)] == window
        assert [
            t.pk for t in queries.page_slice(queryset, start, start + 3, id_source=ids)
        ] == window
    assert queries.page_slice(queryset, 5, 5) == []


def test_ticket_counts_command_checks_compacts_and_rebuilds(queue, agent):
    out = io.StringIO()
    call_command("ticket_counts", stdout=out)
    assert "match all 7 tickets" in out.getvalue()
    TicketCount.objects.create(
        status="open",
        priority="low",
        category_id=queue["closed"].category_id,
        assignee_key=0,
        sla_breached=False,
        n=3,
    )
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 counter combinations differ"):
        call_command("ticket_counts", stdout=io.StringIO(), stderr=err)
    assert "status=open priority=low" in err.getvalue() and "counter says 3" in err.getvalue()
    call_command("ticket_counts", "--rebuild", stdout=io.StringIO())
    call_command("ticket_counts", "--compact", stdout=io.StringIO())
    call_command("ticket_counts", stdout=io.StringIO())


# --- timestamps read as epoch microseconds -------------------------------------------------


def test_queue_rows_and_thread_read_every_timestamp_exactly(make_ticket, agent, customer):
    ticket = make_ticket(assignee=agent)
    moment = timezone.now().replace(microsecond=987654) - timedelta(days=400)
    Ticket.objects.filter(pk=ticket.pk).update(
        first_response_due_at=moment,
        resolution_due_at=moment + timedelta(microseconds=1),
        next_due_at=moment,
        sla_paused_at=None,
        first_responded_at=None,
    )
    comment = services.add_comment(actor=customer, ticket=ticket, body="Hello")
    stored = Ticket.objects.get(pk=ticket.pk)
    (row,) = queries.queue_page(user=agent, filters=filters_for(agent)).tickets
    for name in queries.QUEUE_ROW_TIMES:
        value = getattr(row, name)
        assert value == getattr(stored, name), name
        assert value is None or value.tzinfo == getattr(stored, name).tzinfo, name
    assert row.first_response_due_at.isoformat() == moment.isoformat()
    assert row.resolution_due_at - row.first_response_due_at == timedelta(microseconds=1)
    assert row.sla_paused_at is None and row.first_responded_at is None
    (thread_comment,) = queries.comments_for(ticket, include_internal=True)
    assert thread_comment.created_at == Comment.objects.get(pk=comment.pk).created_at


def test_from_epoch_us():
    assert queries.from_epoch_us(None) is None
    assert queries.from_epoch_us(0).isoformat() == "1970-01-01T00:00:00+00:00"
    assert queries.from_epoch_us(1_767_225_600_000_001).isoformat() == (
        "2026-01-01T00:00:00.000001+00:00"
    )


def test_the_pickers_agents_are_the_assignable_agents_in_order(
    agent, agent2, lead, ops, admin_user, customer, django_assert_num_queries
):
    with django_assert_num_queries(1):
        choices = queries.ticket_options().agents
    agents = list(queries.assignable_agents())
    assert [c.pk for c in choices] == [a.pk for a in agents]
    assert [(c.username, c.get_full_name(), c.email) for c in choices] == [
        (a.username, a.get_full_name(), a.email) for a in agents
    ]
    assert ops.pk not in {c.pk for c in choices} and customer.pk not in {c.pk for c in choices}


def test_queue_rows_come_in_the_page_order_for_what_the_user_may_see(
    make_ticket, agent, customer, other_customer, django_assert_num_queries
):
    tickets = [make_ticket(priority=p, assignee=agent) for p in ("low", "urgent", "high")]
    theirs = make_ticket(requester=other_customer, priority="urgent")
    for user, query, expected in (
        (agent, "", [tickets[1], theirs, tickets[2], tickets[0]]),
        (agent, "ordering=createdAt", [*tickets, theirs]),
        (customer, "ordering=-createdAt", tickets[::-1]),
        (other_customer, "", [theirs]),
    ):
        page = queries.queue_page(user=user, filters=filters_for(user, query))
        assert [t.pk for t in page.tickets] == [t.pk for t in expected], (user, query)
    nothing = filters_for(agent, "priority=normal")
    # No ids, no rows to read: the statistics and the id walk only.
    with django_assert_num_queries(2):
        assert queries.queue_page(user=agent, filters=nothing).tickets == []


def test_the_page_option_lists_match_their_own_queries(
    agent, agent2, lead, ops, admin_user, categories, django_assert_num_queries
):
    services.save_view(actor=agent, name="Billing", query_string="category=billing")
    services.save_view(actor=agent2, name="Theirs", query_string="assignee=me")
    services.create_canned_reply(actor=lead, title="B", body="b <i>")
    services.create_canned_reply(actor=lead, title="A", body="a")
    retired = categories["other"]
    retired.is_active = False
    retired.save(update_fields=["is_active"])
    agents = [(a.pk, a.username, a.get_full_name(), a.email) for a in queries.assignable_agents()]
    own_views = list(SavedView.objects.filter(user=agent).order_by("name"))
    replies = [(r.pk, r.title, r.body) for r in CannedReply.objects.order_by("title")]
    every_category = [
        (c.pk, c.slug, c.name, c.is_active) for c in queries.category_choices(include_inactive=True)
    ]
    active_categories = [(c.pk, c.slug, c.name) for c in queries.category_choices()]

    with django_assert_num_queries(1):
        queue = queries.queue_options(agent)
    assert [(c.pk, c.slug, c.name, c.is_active) for c in queue.categories] == every_category
    assert [(v["id"], v["name"], v["query_string"]) for v in queue.saved_views[2:]] == [
        (v.pk, v.name, v.query_string) for v in own_views
    ]
    assert [v["name"] for v in queue.saved_views] == ["My open", "Unassigned urgent", "Billing"]
    assert [(a.pk, a.username, a.get_full_name(), a.email) for a in queue.agents] == agents

    with django_assert_num_queries(1):
        ticket = queries.ticket_options()
    assert [(c.pk, c.slug, c.name) for c in ticket.categories] == active_categories
    assert retired.slug not in {c.slug for c in ticket.categories}
    assert ticket.agents == queue.agents
    assert [(r.pk, r.title, r.body) for r in ticket.canned_replies] == replies
