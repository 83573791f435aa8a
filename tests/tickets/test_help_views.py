"""Customer help pages (/help/tickets/): list, open, reply, new request; only one's own
tickets, bad input answered with a message, fixed query counts."""

from __future__ import annotations

import re

import pytest

from tickets import services
from tickets.models import Channel, Comment, Status, Ticket

pytestmark = pytest.mark.django_db


def html(response) -> str:
    return response.content.decode()


def listed(response) -> list[int]:
    return [
        int(pk)
        for pk in re.findall(r'<a href="/help/tickets/(\d+)/" class="help-row">', html(response))
    ]


def test_customer_lists_only_their_own_tickets_newest_activity_first(
    client, customer, other_customer, agent, make_ticket
):
    older = make_ticket(subject="Older question")
    newer = make_ticket(subject="Newer question")
    make_ticket(subject="Someone else's", requester=other_customer)
    services.add_comment(actor=agent, ticket=older, body="Answered")
    client.force_login(customer)

    response = client.get("/help/tickets/")

    assert response.status_code == 200
    assert listed(response) == [older.pk, newer.pk]
    page = html(response)
    assert "Someone else&#x27;s" not in page and "Someone else's" not in page
    assert f"#{older.ticket_number}" in page and 'data-status="open"' in page


def test_status_tabs_filter_the_list(client, customer, agent, make_ticket):
    active = make_ticket(subject="Still open")
    done = make_ticket(subject="All done", status="resolved", actor=agent)
    client.force_login(customer)
    assert listed(client.get("/help/tickets/?status=active")) == [active.pk]
    assert listed(client.get("/help/tickets/?status=resolved,closed")) == [done.pk]
    assert set(listed(client.get("/help/tickets/"))) == {active.pk, done.pk}
    assert re.search(
        r'<a class="tab" href="\?status=active" aria-current="page">Open</a>',
        html(client.get("/help/tickets/?status=active")),
    )


def test_customer_list_pages_in_a_fixed_number_of_queries(
    client, customer, make_ticket, django_assert_max_num_queries
):
    for n in range(3):
        make_ticket(subject=f"Question {n}")
    client.force_login(customer)
    with django_assert_max_num_queries(5):  # session, user, count, the page's ids, their rows
        few = client.get("/help/tickets/")
    for n in range(22):
        make_ticket(subject=f"More {n}")
    with django_assert_max_num_queries(5):
        many = client.get("/help/tickets/")
    assert len(listed(few)) == 3 and len(listed(many)) == 20
    assert "1–20 of 25" in html(many)
    assert len(listed(client.get("/help/tickets/?page=2"))) == 5


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=lost", "Unknown value &#x27;lost&#x27;"),
        ("search=token", "Unknown parameter."),
        ("assignee=me", "Unknown parameter."),
        ("page=0", "Use a whole page number from 1 (at most 9 digits)."),
        ("page=%C2%B2", "Use a whole page number from 1 (at most 9 digits)."),
        ("page=" + "9" * 5000, "Use a whole page number from 1 (at most 9 digits)."),
        ("createdAfter=2026-02-30", "Use a date"),
    ],
)
def test_bad_list_parameters_are_400_with_a_message(client, customer, query, message):
    client.force_login(customer)
    response = client.get(f"/help/tickets/?{query}")
    assert response.status_code == 400
    assert message in html(response)


def test_customer_opens_their_ticket_and_another_customers_is_404(
    client, customer, other_customer, agent, make_ticket
):
    mine = make_ticket(subject="Mine")
    services.add_comment(actor=agent, ticket=mine, body="We are on it.")
    theirs = make_ticket(subject="Theirs", requester=other_customer)
    client.force_login(customer)

    response = client.get(f"/help/tickets/{mine.pk}/")
    assert response.status_code == 200
    page = html(response)
    assert '<h1 class="ticket-subject">Mine</h1>' in page
    assert "We are on it." in page and "Support team" in page
    assert "Handled by" not in page  # nobody took it yet

    for pk in (theirs.pk, 999999, 2**63):
        response = client.get(f"/help/tickets/{pk}/")
        assert response.status_code == 404
        assert "Theirs" not in html(response)
    assert client.post(f"/help/tickets/{theirs.pk}/reply/", {"body": "Hi"}).status_code == 404
    assert not Comment.objects.filter(ticket=theirs).exists()


def test_customer_reply_reopens_a_pending_ticket(client, customer, agent, make_ticket):
    ticket = make_ticket(status="pending", actor=agent)
    client.force_login(customer)

    response = client.post(f"/help/tickets/{ticket.pk}/reply/", {"body": "Here is the screenshot."})

    comment = Comment.objects.get(ticket=ticket)
    assert response.status_code == 303
    assert response["Location"] == f"/help/tickets/{ticket.pk}/#comment-{comment.pk}"
    assert (comment.author_id, comment.is_internal) == (customer.pk, False)
    assert Ticket.objects.get(pk=ticket.pk).status == Status.OPEN
    assert "Your reply was sent to our support team." in html(client.get(response["Location"]))


def test_customer_cannot_write_an_internal_note(client, customer, make_ticket):
    ticket = make_ticket()
    client.force_login(customer)
    client.post(f"/help/tickets/{ticket.pk}/reply/", {"body": "Psst", "is_internal": "on"})
    assert Comment.objects.get(ticket=ticket).is_internal is False


def test_bad_replies_are_refused_with_a_message(client, customer, agent, make_ticket):
    ticket = make_ticket()
    client.force_login(customer)
    empty = client.post(f"/help/tickets/{ticket.pk}/reply/", {"body": "  "})
    assert empty.status_code == 400 and "Write a reply before sending." in html(empty)
    long = client.post(f"/help/tickets/{ticket.pk}/reply/", {"body": "y" * 20_001})
    assert long.status_code == 400 and "at most 20000 characters" in html(long)

    closed = make_ticket(subject="Closed one", status="closed", actor=agent)
    page = html(client.get(f"/help/tickets/{closed.pk}/"))
    assert 'data-testid="reply-closed"' in page and 'data-testid="reply-form"' not in page
    refused = client.post(f"/help/tickets/{closed.pk}/reply/", {"body": "Hello?"})
    assert refused.status_code == 400
    assert "This request is closed. Open a new request if you need more help." in html(refused)
    assert not Comment.objects.filter(ticket__in=[ticket, closed]).exists()


def test_customer_opens_a_new_request(client, customer, categories):
    client.force_login(customer)
    form = html(client.get("/help/tickets/new/"))
    assert '<option value="urgent"' not in form
    assert '<option value="billing"' in form

    response = client.post(
        "/help/tickets/new/",
        {
            "subject": "Invoice shows the wrong VAT",
            "category": "billing",
            "priority": "high",
            "description": "The invoice for March has 19% instead of 7%.",
        },
    )

    ticket = Ticket.objects.get(subject="Invoice shows the wrong VAT")
    assert response.status_code == 303
    assert response["Location"] == f"/help/tickets/{ticket.pk}/"
    assert (
        ticket.requester_id,
        ticket.category.slug,
        ticket.priority,
        ticket.channel,
        ticket.status,
    ) == (
        customer.pk,
        "billing",
        "high",
        Channel.WEB,
        Status.NEW,
    )
    assert f"Request #{ticket.ticket_number} is open." in html(client.get(response["Location"]))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"subject": ""}, "Give your request a short subject."),
        ({"subject": "s" * 201}, "at most 200 characters"),
        ({"description": ""}, "Describe what happened and what you expected."),
        (
            {"priority": "urgent"},
            "Unknown priority &#x27;urgent&#x27;. Allowed values: low, normal, high.",
        ),
        ({"category": "astrology"}, "Unknown topic &#x27;astrology&#x27;"),
    ],
)
def test_bad_new_requests_are_refused_and_kept_in_the_form(
    client, customer, categories, changes, message
):
    client.force_login(customer)
    data = {
        "subject": "Sync broken",
        "category": "bug",
        "priority": "normal",
        "description": "Details here",
        **changes,
    }
    response = client.post("/help/tickets/new/", data)
    assert response.status_code == 400
    page = html(response)
    assert message in page
    if "subject" not in changes:
        assert 'value="Sync broken"' in page  # what was typed is kept
    assert not Ticket.objects.exists()


def test_staff_are_sent_to_the_console_and_anonymous_users_to_sign_in(client, agent, make_ticket):
    ticket = make_ticket()
    assert client.get("/help/tickets/")["Location"] == "/accounts/login/?next=/help/tickets/"
    client.force_login(agent)
    assert client.get("/help/tickets/")["Location"] == "/admin/support/"
    assert client.get(f"/help/tickets/{ticket.pk}/")["Location"] == f"/admin/support/{ticket.pk}/"
