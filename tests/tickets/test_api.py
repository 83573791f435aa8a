"""The tickets JSON API: the documented calls verbatim, filters, PATCH rules, bad input,
customer confinement (404 for others' tickets, no internal notes) and query counts."""

from __future__ import annotations

import json

import pytest
from django.core import mail
from djangorestframework_camel_case.util import camelize

from audit.models import AuditEntry
from tests.roles import STAFF, assert_access_matrix
from tickets import api, queries, services
from tickets.models import Comment, Ticket, TicketEvent

pytestmark = pytest.mark.django_db

TICKETS = "/api/admin/support/tickets"

# The calls from the original documentation, byte for byte.
CREATE_BODY = (
    '{"subject": "Email sync not working", "description": "User reports emails not syncing for '
    'Gmail account", "category": "email_sync", "priority": "high"}'
)
COMMENT_BODY = (
    '{"comment": "I\'ve investigated the issue. Token needs refresh.", "isInternal": true}'
)


def post(client, url, body, **headers):
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", **headers)


def patch(client, url, body, **headers):
    return client.patch(url, data=json.dumps(body), content_type="application/json", **headers)


def errors(response) -> dict:
    assert response["Content-Type"].startswith("application/json"), response.content
    return response.json().get("errors", {})


# --- the verbatim calls --------------------------------------------------------------------


@pytest.mark.parametrize("url", [TICKETS, TICKETS + "/"])
def test_customer_creates_a_ticket_with_the_documented_call(client, categories, customer, url):
    client.force_login(customer)
    response = post(client, url, CREATE_BODY)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["ticketNumber"] > 1000
    assert body["subject"] == "Email sync not working"
    assert (body["category"], body["priority"], body["status"], body["channel"]) == (
        "email_sync",
        "high",
        "new",
        "api",
    )
    assert body["requester"]["id"] == customer.pk
    ticket = Ticket.objects.get(pk=body["id"])
    assert ticket.requester == customer and ticket.ticket_number == body["ticketNumber"]


def test_staff_create_with_a_token_names_the_customer(
    client, categories, agent, customer, token_for
):
    auth = token_for(agent)
    response = post(client, TICKETS, CREATE_BODY, **auth)
    assert response.status_code == 400
    assert "requesterEmail" in errors(response)
    payload = {
        **json.loads(CREATE_BODY),
        "requesterEmail": customer.email.upper(),
        "assignee": "me",
        "tags": ["Gmail"],
    }
    response = post(client, TICKETS, payload, **auth)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["requester"]["email"] == customer.email
    assert body["assignee"]["id"] == agent.pk
    assert body["tags"] == ["gmail"]
    for key in (
        "id",
        "ticketNumber",
        "subject",
        "description",
        "category",
        "priority",
        "status",
        "requester",
        "assignee",
        "tags",
        "createdAt",
        "updatedAt",
        "firstResponseDueAt",
        "resolutionDueAt",
        "firstRespondedAt",
        "resolvedAt",
        "slaBreached",
    ):
        assert key in body
    response = post(
        client, TICKETS, {**json.loads(CREATE_BODY), "requesterId": customer.pk}, **auth
    )
    assert response.status_code == 201


def test_the_documented_comment_call_adds_an_internal_note(
    client, make_ticket, agent, customer, token_for
):
    ticket = make_ticket()
    url = f"{TICKETS}/{ticket.pk}/comments"
    response = post(client, url, COMMENT_BODY, **token_for(agent))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["isInternal"] is True
    assert body["comment"] == "I've investigated the issue. Token needs refresh."
    assert body["author"]["id"] == agent.pk
    note = Comment.objects.get(pk=body["id"])
    assert note.is_internal and note.ticket_id == ticket.pk
    assert mail.outbox == []


# --- internal notes never reach customers --------------------------------------------------


def test_internal_notes_never_appear_in_customer_json(client, make_ticket, agent, customer):
    ticket = make_ticket()
    services.add_comment(
        actor=agent, ticket=ticket, body="SECRET internal diagnosis", is_internal=True
    )
    services.add_comment(actor=agent, ticket=ticket, body="Public answer")
    client.force_login(customer)
    for url in (
        TICKETS,
        f"{TICKETS}/{ticket.pk}",
        f"{TICKETS}/{ticket.pk}/comments",
        f"{TICKETS}/{ticket.pk}/comments/",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert b"SECRET" not in response.content, url
    comments = client.get(f"{TICKETS}/{ticket.pk}/comments").json()
    assert comments["count"] == 1 and comments["results"][0]["comment"] == "Public answer"
    # The staff view has both.
    client.force_login(agent)
    assert client.get(f"{TICKETS}/{ticket.pk}/comments").json()["count"] == 2


def test_customer_ticket_json_leaves_out_staff_internals(client, make_ticket, agent, customer):
    ticket = make_ticket(assignee=agent)
    client.force_login(customer)
    body = client.get(f"{TICKETS}/{ticket.pk}").json()
    assert "tags" not in body and "slaBreached" not in body
    assert body["assignee"] == {"name": "Sam Carter"}


def test_customers_cannot_post_internal_notes(client, make_ticket, customer):
    ticket = make_ticket()
    client.force_login(customer)
    response = post(client, f"{TICKETS}/{ticket.pk}/comments", COMMENT_BODY)
    assert response.status_code == 400
    assert "isInternal" in errors(response)
    response = post(client, f"{TICKETS}/{ticket.pk}/comments", {"comment": "Still broken"})
    assert response.status_code == 201
    assert Comment.objects.filter(ticket=ticket, is_internal=True).count() == 0


# --- another customer's ticket: 404 ----------------------------------------------------------


def test_another_customers_ticket_is_not_found(client, make_ticket, other_customer):
    ticket = make_ticket()
    client.force_login(other_customer)
    for method, url, body in (
        ("get", f"{TICKETS}/{ticket.pk}", None),
        ("patch", f"{TICKETS}/{ticket.pk}", {"priority": "urgent"}),
        ("get", f"{TICKETS}/{ticket.pk}/comments", None),
        ("post", f"{TICKETS}/{ticket.pk}/comments", {"comment": "me too"}),
        ("get", f"{TICKETS}/99999999", None),
        ("get", f"{TICKETS}/99999999999999999999999", None),
    ):
        if body is None:
            response = getattr(client, method)(url)
        else:
            response = getattr(client, method)(
                url, data=json.dumps(body), content_type="application/json"
            )
        assert response.status_code == 404, (method, url, response.status_code)
        assert response.json() == {"detail": "Not found."} or "detail" in response.json()
    assert not Comment.objects.exists()
    assert client.get(TICKETS).json()["count"] == 0


def test_customer_may_not_patch_even_their_own_ticket(client, make_ticket, customer):
    ticket = make_ticket()
    client.force_login(customer)
    response = patch(client, f"{TICKETS}/{ticket.pk}", {"status": "closed"})
    assert response.status_code == 403
    assert Ticket.objects.get(pk=ticket.pk).status == "new"


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field", "phrase"),
    [
        ({"description": "d"}, "subject", "required"),
        ({"subject": "", "description": "d"}, "subject", "blank"),
        ({"subject": "x" * 201, "description": "d"}, "subject", "200"),
        ({"subject": "s"}, "description", "required"),
        ({"subject": "s", "description": "d", "category": "sales"}, "category", "email_sync"),
        (
            {"subject": "s", "description": "d", "priority": "critical"},
            "priority",
            "low, normal, high, urgent",
        ),
        ({"subject": "s", "description": "d", "severity": "high"}, "severity", "Unknown field"),
        ({"subject": "s", "description": "d", "tags": ["ok", "not ok!"]}, "tags", "Invalid tag"),
        (
            {"subject": "s", "description": "d", "requesterEmail": "x@example.com"},
            "requesterEmail",
            "Only staff",
        ),
        ({"subject": "s", "description": "d", "assignee": 1}, "assignee", "Only staff"),
    ],
)
def test_create_rejects_bad_input_naming_the_field(
    client, categories, customer, payload, field, phrase
):
    client.force_login(customer)
    response = post(client, TICKETS, payload)
    assert response.status_code == 400, response.content
    assert field in errors(response)
    assert phrase in " ".join(errors(response)[field])
    assert field in response.json()["detail"]
    assert not Ticket.objects.exists()


@pytest.mark.parametrize("body", ['{"subject": "x", ', "[1, 2]", '"just a string"', ""])
def test_malformed_bodies_are_400_in_json(client, categories, customer, body):
    client.force_login(customer)
    response = post(client, TICKETS, body)
    assert response.status_code == 400
    assert response.json()["detail"]
    assert not Ticket.objects.exists()


def test_staff_requester_lookup_errors(client, categories, agent, token_for):
    auth = token_for(agent)
    base = json.loads(CREATE_BODY)
    for extra, field in (
        ({"requesterEmail": "nobody@example.com"}, "requesterEmail"),
        ({"requesterId": agent.pk}, "requesterId"),  # staff are not customers
        ({"requesterId": 1, "requesterEmail": "a@example.com"}, "requesterId"),
        ({"requesterId": 10**6, "assignee": "bob"}, "assignee"),
    ):
        response = post(client, TICKETS, {**base, **extra}, **auth)
        assert response.status_code == 400, (extra, response.content)
        assert field in errors(response), (extra, errors(response))
    assert not Ticket.objects.exists()


# --- PATCH ---------------------------------------------------------------------------------


def test_patch_changes_every_writable_field(
    client, make_ticket, agent, agent2, categories, token_for
):
    ticket = make_ticket()
    auth = token_for(agent)
    url = f"{TICKETS}/{ticket.pk}/"
    response = patch(
        client,
        url,
        {
            "status": "open",
            "priority": "urgent",
            "category": "billing",
            "assignee": agent2.pk,
            "subject": "Refund",
            "tags": ["VIP", "refund"],
        },
        **auth,
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["priority"], body["category"], body["subject"], body["tags"]) == (
        "open",
        "urgent",
        "billing",
        "Refund",
        ["vip", "refund"],
    )
    assert body["assignee"]["id"] == agent2.pk
    assert {e.kind for e in TicketEvent.objects.filter(ticket=ticket)} >= {
        "status",
        "priority",
        "category",
        "assignee",
        "subject",
        "tags",
    }
    response = patch(client, url, {"assignee": None}, **auth)
    assert response.json()["assignee"] is None
    response = patch(client, url, {"assignee": "me"}, **auth)
    assert response.json()["assignee"]["id"] == agent.pk


def test_patch_to_a_forbidden_status_changes_nothing(client, make_ticket, agent, token_for):
    ticket = make_ticket(status="resolved", actor=agent)
    response = patch(
        client,
        f"{TICKETS}/{ticket.pk}",
        {"priority": "urgent", "status": "pending"},
        **token_for(agent),
    )
    assert response.status_code == 400
    message = " ".join(errors(response)["status"])
    assert "resolved to pending" in message and "open, closed" in message
    ticket.refresh_from_db()
    # The valid part of the request was rolled back with the refused one.
    assert (ticket.status, ticket.priority) == ("resolved", "normal")
    assert not TicketEvent.objects.filter(ticket=ticket, kind="priority").exists()
    assert not AuditEntry.objects.filter(event="ticket.updated", object_pk=str(ticket.pk)).exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"status": "done"}, "status"),
        ({"priority": "p1"}, "priority"),
        ({"category": "nope"}, "category"),
        ({"assignee": 10**9}, "assignee"),
        ({"assignee": "someone"}, "assignee"),
        ({"subject": ""}, "subject"),
        ({"subject": "y" * 201}, "subject"),
        ({"requester": 5}, "requester"),
        ({}, "nonFieldErrors"),
    ],
)
def test_patch_bad_input(client, make_ticket, agent, token_for, payload, field):
    ticket = make_ticket()
    response = patch(client, f"{TICKETS}/{ticket.pk}", payload, **token_for(agent))
    assert response.status_code == 400, response.content
    assert field in errors(response)
    assert Ticket.objects.get(pk=ticket.pk).updated_at == ticket.updated_at


def test_patch_assignee_must_be_staff_who_works_tickets(
    client, make_ticket, agent, ops, customer, token_for
):
    ticket = make_ticket()
    for user in (customer, ops):
        response = patch(
            client, f"{TICKETS}/{ticket.pk}", {"assignee": user.pk}, **token_for(agent)
        )
        assert response.status_code == 400
        assert "not an active staff member" in errors(response)["assignee"][0]
    assert Ticket.objects.get(pk=ticket.pk).assignee is None


def test_agent_cannot_reopen_a_closed_ticket_but_a_lead_can(
    client, make_ticket, agent, lead, token_for
):
    ticket = make_ticket(status="closed", actor=agent)
    response = patch(client, f"{TICKETS}/{ticket.pk}", {"status": "open"}, **token_for(agent))
    assert response.status_code == 403
    assert "lead" in response.json()["detail"]
    assert Ticket.objects.get(pk=ticket.pk).status == "closed"
    response = patch(client, f"{TICKETS}/{ticket.pk}", {"status": "open"}, **token_for(lead))
    assert response.status_code == 200
    assert response.json()["status"] == "open"


def test_comment_on_a_closed_ticket_is_refused(client, make_ticket, agent, customer, token_for):
    ticket = make_ticket(status="closed", actor=agent)
    response = post(
        client, f"{TICKETS}/{ticket.pk}/comments", {"comment": "hello"}, **token_for(agent)
    )
    assert response.status_code == 400
    assert "closed" in errors(response)["comment"][0]
    client.force_login(customer)
    assert post(client, f"{TICKETS}/{ticket.pk}/comments", {"comment": "hello"}).status_code == 400
    assert not Comment.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "comment"),
        ({"comment": ""}, "comment"),
        ({"comment": "x" * 20_001}, "comment"),
        ({"comment": "hi", "isInternal": "maybe"}, "isInternal"),
        ({"comment": "hi", "parentId": 123456}, "parentId"),
        ({"comment": "hi", "internal": True}, "internal"),
    ],
)
def test_comment_bad_input(client, make_ticket, agent, token_for, payload, field):
    ticket = make_ticket()
    response = post(client, f"{TICKETS}/{ticket.pk}/comments", payload, **token_for(agent))
    assert response.status_code == 400, response.content
    assert field in errors(response)
    assert not Comment.objects.exists()


def test_threaded_reply_through_the_api(client, make_ticket, agent, customer, token_for):
    ticket = make_ticket()
    note = services.add_comment(actor=agent, ticket=ticket, body="note", is_internal=True)
    public = services.add_comment(actor=agent, ticket=ticket, body="answer")
    client.force_login(customer)
    url = f"{TICKETS}/{ticket.pk}/comments"
    assert post(client, url, {"comment": "to a note", "parentId": note.pk}).status_code == 400
    response = post(client, url, {"comment": "thanks", "parentId": public.pk})
    assert response.status_code == 201 and response.json()["parentId"] == public.pk


# --- roles ---------------------------------------------------------------------------------


def test_role_matrix_for_the_ticket_api(client, make_ticket, role_users):
    ticket = make_ticket(requester=role_users["customer"])
    everyone = STAFF | {"customer"}
    assert_access_matrix(client, TICKETS, everyone)
    assert_access_matrix(client, f"{TICKETS}/{ticket.pk}", everyone)
    assert_access_matrix(client, f"{TICKETS}/{ticket.pk}/comments", everyone)
    assert_access_matrix(
        client,
        f"{TICKETS}/{ticket.pk}/comments",
        {"admin", "lead", "agent", "customer"},
        method="post",
        data={"comment": "Hello"},
        status=201,
    )
    assert_access_matrix(
        client,
        f"{TICKETS}/{ticket.pk}",
        {"admin", "lead", "agent"},
        method="patch",
        data={"priority": "high"},
    )
    assert_access_matrix(
        client,
        TICKETS,
        {"admin", "lead", "agent", "customer"},
        method="post",
        status=201,
        data={"subject": "s", "description": "d", "requesterId": role_users["customer"].pk},
        # Customers may not name a requester (they are the requester): their row is a 400.
        expect={"customer": 400},
    )


# --- list, filters, pagination, query counts -----------------------------------------------


@pytest.fixture
def spread(make_ticket, agent, agent2, customer, other_customer):
    """Six tickets across statuses, priorities, categories and assignees."""
    return {
        "urgent_mine": make_ticket(
            subject="Gateway timeout", priority="urgent", assignee=agent, category="bug"
        ),
        "billing": make_ticket(subject="Double charge", category="billing", priority="high"),
        "pending": make_ticket(
            subject="Waiting on logs", status="pending", assignee=agent2, actor=agent2
        ),
        "closed": make_ticket(subject="Old problem", status="closed", actor=agent),
        "other": make_ticket(subject="Other customer", requester=other_customer),
        "low": make_ticket(subject="Feature idea", priority="low", category="feature_request"),
    }


def ids(response) -> set[int]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def test_list_filters(client, spread, agent, customer, token_for):
    auth = token_for(agent)
    t = {name: ticket.pk for name, ticket in spread.items()}
    assert ids(client.get(TICKETS, **auth)) == set(t.values())  # the API default is every status
    assert ids(client.get(TICKETS, {"status": "active"}, **auth)) == set(t.values()) - {t["closed"]}
    assert ids(client.get(TICKETS, {"status": "pending,closed"}, **auth)) == {
        t["pending"],
        t["closed"],
    }
    assert ids(client.get(TICKETS, {"priority": "urgent"}, **auth)) == {t["urgent_mine"]}
    assert ids(client.get(TICKETS, {"category": "billing"}, **auth)) == {t["billing"]}
    assert ids(client.get(TICKETS, {"assignee": "me"}, **auth)) == {t["urgent_mine"]}
    assert t["billing"] in ids(client.get(TICKETS, {"assignee": "none"}, **auth))
    assert t["urgent_mine"] not in ids(client.get(TICKETS, {"assignee": "none"}, **auth))
    Ticket.objects.filter(pk=t["low"]).update(sla_breached=True)
    assert ids(client.get(TICKETS, {"breached": "true"}, **auth)) == {t["low"]}
    assert ids(client.get(TICKETS, {"search": "gateway"}, **auth)) == {t["urgent_mine"]}
    number = spread["billing"].ticket_number
    assert ids(client.get(TICKETS, {"search": f"#{number}"}, **auth)) == {t["billing"]}
    assert ids(client.get(TICKETS, {"requester": customer.pk, "status": "all"}, **auth)) == set(
        t.values()
    ) - {t["other"]}
    assert (
        ids(
            client.get(
                TICKETS, {"createdAfter": "2000-01-01", "createdBefore": "2000-12-31"}, **auth
            )
        )
        == set()
    )
    Ticket.objects.filter(pk=t["low"]).update(created_at="2024-03-05T10:00:00Z")
    assert ids(
        client.get(TICKETS, {"createdAfter": "2024-03-05", "createdBefore": "2024-03-05"}, **auth)
    ) == {t["low"]}


def test_search_covers_comments_and_internal_notes_for_staff(client, spread, agent, token_for):
    services.add_comment(
        actor=agent, ticket=spread["billing"], body="Chargeback filed with Stripe", is_internal=True
    )
    auth = token_for(agent)
    assert ids(client.get(TICKETS, {"search": "chargeback"}, **auth)) == {spread["billing"].pk}
    assert ids(client.get(TICKETS, {"search": '"double charge" -gateway'}, **auth)) == {
        spread["billing"].pk
    }


def test_list_ordering(client, spread, agent, token_for):
    auth = token_for(agent)
    rows = client.get(TICKETS, {"ordering": "-priority", "status": "all"}, **auth).json()["results"]
    assert rows[0]["priority"] == "urgent" and rows[-1]["priority"] == "low"
    rows = client.get(TICKETS, {"ordering": "ticketNumber"}, **auth).json()["results"]
    numbers = [row["ticketNumber"] for row in rows]
    assert numbers == sorted(numbers)
    rows = client.get(TICKETS, **auth).json()["results"]  # default: newest first
    assert [r["createdAt"] for r in rows] == sorted((r["createdAt"] for r in rows), reverse=True)


@pytest.mark.parametrize(
    ("params", "field", "phrase"),
    [
        (
            {"status": "done"},
            "status",
            "Allowed values: new, open, pending, on_hold, resolved, closed",
        ),
        ({"priority": "p1"}, "priority", "low, normal, high, urgent"),
        ({"category": "sales"}, "category", "email_sync"),
        ({"assignee": "bob"}, "assignee", "'me', 'none'"),
        ({"breached": "perhaps"}, "breached", "true or false"),
        ({"createdAfter": "yesterday"}, "createdAfter", "ISO 8601"),
        ({"createdAfter": "2025-02-01", "createdBefore": "2025-01-01"}, "createdBefore", "later"),
        ({"ordering": "subject"}, "ordering", "-priority"),
        ({"page": "0"}, "page", "whole number"),
        ({"pageSize": "501"}, "pageSize", "500"),
        ({"stauts": "open"}, "stauts", "Unknown parameter"),
        ({"search": "x" * 201}, "search", "200"),
    ],
)
def test_list_rejects_bad_filters_naming_them(
    client, spread, agent, token_for, params, field, phrase
):
    response = client.get(TICKETS, params, **token_for(agent))
    assert response.status_code == 400, response.content
    assert phrase in " ".join(errors(response)[field])


def test_customers_list_only_their_own_tickets_and_cannot_search(client, spread, customer):
    client.force_login(customer)
    own = ids(client.get(TICKETS))
    assert spread["other"].pk not in own and spread["closed"].pk in own
    for params in ({"search": "gateway"}, {"assignee": "me"}, {"breached": "true"}):
        response = client.get(TICKETS, params)
        assert response.status_code == 400
        assert "Unknown parameter" in " ".join(errors(response)[next(iter(params))])


def test_pagination_has_a_count_and_links(client, make_ticket, agent, token_for):
    for n in range(7):
        make_ticket(subject=f"Ticket {n}")
    auth = token_for(agent)
    body = client.get(TICKETS, {"pageSize": 3, "status": "all"}, **auth).json()
    assert body["count"] == 7 and len(body["results"]) == 3
    assert "page=2" in body["next"] and body["previous"] is None
    last = client.get(TICKETS, {"pageSize": 3, "page": 3}, **auth).json()
    assert len(last["results"]) == 1 and last["next"] is None
    assert client.get(TICKETS, {"page": 9}, **auth).status_code == 404


def _query_counts(client, urls, auth, django_assert_max_num_queries) -> list[int]:
    counts = []
    for url in urls:
        client.get(url, **auth)  # warm up: a token's last use is stamped once a minute
        with django_assert_max_num_queries(7) as captured:
            response = client.get(url, **auth)
        assert response.status_code == 200, url
        counts.append(len(captured.captured_queries))
    return counts


def test_list_and_detail_run_a_fixed_number_of_queries(
    client, make_ticket, agent, agent2, customer, token_for, django_assert_max_num_queries
):
    auth = token_for(agent)
    ticket = make_ticket(assignee=agent2)
    make_ticket(assignee=agent, category="bug")  # so the filtered list is not empty (no row query)
    services.add_comment(actor=agent, ticket=ticket, body="one")
    urls = [
        TICKETS,
        f"{TICKETS}?status=active&assignee=me&category=bug",
        f"{TICKETS}/{ticket.pk}",
        f"{TICKETS}/{ticket.pk}/comments",
    ]
    staff_few = _query_counts(client, urls, auth, django_assert_max_num_queries)
    client.force_login(customer)
    customer_urls = [TICKETS, f"{TICKETS}/{ticket.pk}", f"{TICKETS}/{ticket.pk}/comments"]
    customer_few = _query_counts(client, customer_urls, {}, django_assert_max_num_queries)
    client.logout()
    for n in range(25):
        other = make_ticket(
            subject=f"More {n}", assignee=agent if n % 2 else agent2, category="bug"
        )
        services.add_comment(actor=agent, ticket=ticket, body=f"reply {n}")
        services.add_comment(actor=customer, ticket=ticket, body=f"answer {n}")
        services.add_comment(actor=agent, ticket=other, body="x", is_internal=True)
    assert _query_counts(client, urls, auth, django_assert_max_num_queries) == staff_few
    client.force_login(customer)
    assert _query_counts(client, customer_urls, {}, django_assert_max_num_queries) == customer_few


def test_unauthenticated_calls_are_401(client, make_ticket):
    ticket = make_ticket()
    for url in (TICKETS, f"{TICKETS}/{ticket.pk}", f"{TICKETS}/{ticket.pk}/comments"):
        response = client.get(url)
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == "Bearer"
    assert post(client, TICKETS, CREATE_BODY).status_code == 401
    assert (
        client.delete(f"{TICKETS}/{ticket.pk}", HTTP_AUTHORIZATION="Bearer wrong").status_code
        == 401
    )


def test_unsupported_methods_are_405(client, make_ticket, agent, token_for):
    ticket = make_ticket()
    response = client.delete(f"{TICKETS}/{ticket.pk}", **token_for(agent))
    assert response.status_code == 405
    assert response.json()["detail"]
    assert Ticket.objects.filter(pk=ticket.pk).exists()


def test_json_builders_write_exactly_the_documented_fields(make_ticket, agent, customer):
    """The response dicts are built by hand for speed; the serializers document them."""

    def documented(serializer) -> set[str]:
        return set(camelize(dict.fromkeys(serializer().fields)))

    made = make_ticket(assignee=agent)
    comment = services.add_comment(actor=agent, ticket=made, body="hi")
    ticket = queries.ticket_for(agent, made.pk)
    staff_json = api.ticket_json(api.ticket_columns(ticket), staff=True)
    customer_json = api.ticket_json(api.ticket_columns(ticket), staff=False)
    assert set(staff_json) == documented(api.TicketSerializer)
    assert set(customer_json) == documented(api.CustomerTicketSerializer)
    assert set(staff_json["requester"]) == documented(api.UserSummarySerializer)
    assert set(customer_json["assignee"]) == documented(api.StaffNameSerializer)
    # The list reads the same columns with values(): both paths write the same JSON.
    (row,) = Ticket.objects.filter(pk=ticket.pk).values(*api.TICKET_COLUMNS)
    assert api.ticket_json(row, staff=True) == staff_json
    assert api.ticket_json(row, staff=False) == customer_json
    assert set(api.comment_json(comment)) == documented(api.CommentSerializer)
    assert set(api.comment_json(comment)["author"]) == documented(api.CommentAuthorSerializer)
    assert staff_json["createdAt"].endswith("Z")
    assert staff_json["assignee"]["name"] == "Sam Carter"


def test_schema_documents_the_ticket_api(client, agent):
    client.force_login(agent)
    response = client.get("/api/schema", {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"post", "get"} <= set(paths["/api/admin/support/tickets"])
    assert {"get", "patch"} <= set(paths["/api/admin/support/tickets/{id}"])
    assert {"get", "post"} <= set(paths["/api/admin/support/tickets/{id}/comments"])
