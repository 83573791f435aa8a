"""The merge page (/admin/support/<id>/merge/): finding the target by its number, the preview
(page and htmx fragment), the confirmed merge landing on the target, every refusal answered
with 400 and nothing changed, who may merge, and the "Merge into…" action on the ticket page."""

from __future__ import annotations

import re

import pytest

from audit.models import AuditEntry
from tests.roles import assert_access_matrix, role_user
from tickets import services
from tickets.models import Comment, Status, Ticket

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}
WORKERS = {"admin", "lead", "agent"}


def html(response) -> str:
    return response.content.decode()


def url(ticket) -> str:
    return f"/admin/support/{ticket.pk}/merge/"


def state(*tickets) -> list[tuple]:
    """What a merge changes, to compare before and after a refusal."""
    return [
        (
            ticket.status,
            ticket.merged_into_id,
            sorted(Comment.objects.filter(ticket=ticket).values_list("pk", flat=True)),
        )
        for ticket in Ticket.objects.filter(pk__in=[t.pk for t in tickets]).order_by("pk")
    ]


@pytest.fixture
def pair(make_ticket, customer):
    """The ticket that stays and its duplicate, from the same customer; the duplicate has a
    customer comment and a staff reply."""
    target = make_ticket(subject="Gmail sync stopped", tags=["gmail"])
    source = make_ticket(
        subject="Still no new mail", description="Same problem as last week.", tags=["repeat"]
    )
    services.add_comment(actor=customer, ticket=source, body="Any news on this?")
    return target, source


# --- finding the target ------------------------------------------------------------------------


def test_merge_page_describes_the_duplicate_and_asks_for_a_number(client, agent, pair):
    target, source = pair
    client.force_login(agent)
    response = client.get(url(source))
    assert response.status_code == 200
    page = html(response)
    assert f"Merge #{source.ticket_number} into another ticket" in page
    assert 'data-testid="source-subject">Still no new mail<' in page
    assert "the description and 1 comment" in page
    assert 'name="into"' in page and 'data-testid="merge-confirm"' not in page


@pytest.mark.parametrize("typed", ["#{n}", "{n}", "  # {n} "])
def test_preview_shows_the_target_before_confirming(
    client, agent, pair, typed, django_assert_max_num_queries
):
    target, source = pair
    client.force_login(agent)
    with django_assert_max_num_queries(8):
        response = client.get(url(source), {"into": typed.format(n=target.ticket_number)})
    assert response.status_code == 200
    page = html(response)
    assert 'data-testid="target-subject">Gmail sync stopped<' in page
    assert 'data-testid="target-requester">Maria Garcia<' in page
    assert 'data-status="new"' in page
    confirm = re.search(
        r'<form method="post"[^>]*data-testid="merge-confirm">(.*?)</form>', page, re.S
    )
    assert confirm, "the confirm form is offered"
    assert f'name="into" value="{target.ticket_number}"' in confirm.group(1)
    assert f"Merge #{source.ticket_number} into #{target.ticket_number}" in confirm.group(1)
    # Looking is not merging.
    assert Ticket.objects.get(pk=source.pk).merged_into_id is None


def test_preview_through_htmx_is_the_fragment_alone(client, agent, pair):
    target, source = pair
    client.force_login(agent)
    response = client.get(url(source), {"into": target.ticket_number}, headers=HX)
    assert response.status_code == 200
    page = html(response)
    assert "<html" not in page and 'data-testid="merge-source"' not in page
    assert 'data-testid="target-subject">Gmail sync stopped<' in page
    assert 'data-testid="merge-confirm"' in page
    assert "HX-Request" in response["Vary"]

    missing = client.get(url(source), {"into": "999999999"}, headers=HX)
    assert missing.status_code == 400
    # tickets.js swaps a 4xx fragment that says it is one, so the error shows in place.
    assert missing["X-Ticket-Fragment"] == "preview"
    assert "There is no ticket #999999999." in html(missing) and "<html" not in html(missing)


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "Enter the number of the ticket to merge into, such as #1042."),
        ("abc", "“abc” is not a ticket number: type it as #1042 or 1042."),
        ("#12a", "“#12a” is not a ticket number"),
        ("1" * 19, "is not a ticket number"),
        ("999999999", "There is no ticket #999999999."),
    ],
)
def test_preview_names_a_number_that_finds_nothing(client, agent, pair, typed, message):
    target, source = pair
    client.force_login(agent)
    response = client.get(url(source), {"into": typed})
    assert response.status_code == 400
    page = html(response)
    assert message in page
    assert 'data-testid="merge-confirm"' not in page


# --- refusals: the preview says so, and the POST changes nothing ---------------------------------


def _merged_elsewhere(make_ticket, agent):
    """A ticket that was itself merged into another (and so is closed)."""
    merged = make_ticket(subject="Earlier duplicate")
    kept = make_ticket(subject="Kept")
    services.merge_tickets(actor=agent, source=merged, target=kept)
    return Ticket.objects.get(pk=merged.pk), kept


def test_refusals_are_named_in_the_preview_and_the_post_changes_nothing(
    client, agent, pair, make_ticket, other_customer
):
    target, source = pair
    merged, kept = _merged_elsewhere(make_ticket, agent)
    closed = make_ticket(subject="Done with", status="closed", actor=agent)
    foreign = make_ticket(subject="Someone else's", requester=other_customer)
    cases = [
        # (target, what the preview says, and the service on POST: the same rules, one text)
        (
            source,
            f"#{source.ticket_number} is this ticket: a ticket cannot be merged into itself.",
        ),
        (
            merged,
            f"#{merged.ticket_number} was itself merged into #{kept.ticket_number}; merge into "
            "that one instead.",
        ),
        (closed, f"#{closed.ticket_number} is closed; reopen it or pick another."),
        (
            foreign,
            f"#{foreign.ticket_number} was opened by {other_customer.get_full_name()}, not "
            "Maria Garcia: only tickets from the same customer can be merged",
        ),
    ]
    client.force_login(agent)
    merges_before = AuditEntry.objects.filter(event="ticket.merged").count()
    for other, message in cases:
        before = state(source, other)
        preview = client.get(url(source), {"into": f"#{other.ticket_number}"})
        assert preview.status_code == 400, other.subject
        assert message in html(preview)
        assert 'data-testid="merge-confirm"' not in html(preview)

        posted = client.post(url(source), {"into": str(other.ticket_number)})
        assert posted.status_code == 400, other.subject
        assert message in html(posted)
        assert state(source, other) == before
    assert AuditEntry.objects.filter(event="ticket.merged").count() == merges_before


def test_post_with_a_number_that_finds_nothing_changes_nothing(client, agent, pair):
    target, source = pair
    client.force_login(agent)
    before = state(source, target)
    for typed, message in [
        ("", "Enter the number of the ticket to merge into"),
        ("next one", "is not a ticket number"),
        ("424242424", "There is no ticket #424242424."),
    ]:
        response = client.post(url(source), {"into": typed})
        assert response.status_code == 400
        assert message in html(response)
    assert client.post(url(source), {}).status_code == 400
    assert state(source, target) == before


def test_a_merged_or_closed_ticket_cannot_be_merged(client, agent, pair, make_ticket):
    target, source = pair
    merged, kept = _merged_elsewhere(make_ticket, agent)
    client.force_login(agent)

    page = client.get(url(merged))
    assert page.status_code == 400
    text = html(page)
    assert (
        f"#{merged.ticket_number} was already merged into #{kept.ticket_number}; it cannot be "
        "merged again." in text
    )
    assert 'name="into"' not in text and f"Open #{kept.ticket_number}" in text
    before = state(merged, target)
    posted = client.post(url(merged), {"into": target.ticket_number})
    assert posted.status_code == 400
    assert "it cannot be merged again" in html(posted)
    posted = client.post(url(merged), {"into": "nothing"})
    assert posted.status_code == 400
    assert "it cannot be merged again" in html(posted) and "not a ticket number" not in html(posted)
    assert state(merged, target) == before

    closed = make_ticket(subject="Closed duplicate", status="closed", actor=agent)
    assert "only open tickets can be merged" in html(client.get(url(closed)))
    posted = client.post(url(closed), {"into": target.ticket_number})
    assert posted.status_code == 400
    assert "only open tickets can be merged" in html(posted)
    assert Ticket.objects.get(pk=closed.pk).merged_into_id is None


def test_target_closed_between_preview_and_confirm_is_refused(client, agent, lead, pair):
    target, source = pair
    client.force_login(agent)
    assert client.get(url(source), {"into": target.ticket_number}).status_code == 200
    services.close(actor=lead, ticket=target)  # someone else, meanwhile
    before = state(source, target)
    response = client.post(url(source), {"into": target.ticket_number})
    assert response.status_code == 400
    page = html(response)
    assert f"#{target.ticket_number} is closed; reopen it or pick another." in page
    assert 'data-testid="merge-confirm"' not in page  # the page shows the target as it is now
    assert state(source, target) == before


# --- the merge -------------------------------------------------------------------------------------


def test_confirmed_merge_lands_on_the_target_with_the_conversation(client, agent, pair):
    target, source = pair
    client.force_login(agent)
    response = client.post(url(source), {"into": f"#{target.ticket_number}"})
    assert response.status_code == 303
    assert response["Location"] == f"/admin/support/{target.pk}/"

    source.refresh_from_db()
    target.refresh_from_db()
    assert source.status == Status.CLOSED and source.merged_into_id == target.pk
    assert target.tags == ["gmail", "repeat"]
    assert list(
        Comment.objects.filter(ticket=target).order_by("created_at").values_list("body", flat=True)
    ) == ["Same problem as last week.", "Any news on this?"]
    entry = AuditEntry.objects.get(event="ticket.merged", object_pk=str(source.pk))
    assert entry.actor == agent and entry.additional_data["into_ticket_id"] == target.pk

    landing = html(client.get(response["Location"]))
    assert (
        f"Merged #{source.ticket_number} “Still no new mail” into this ticket: its description "
        f"and comments are here now, and #{source.ticket_number} is closed" in landing
    )
    assert "Any news on this?" in landing and f"from #{source.ticket_number}" in landing

    duplicate = html(client.get(f"/admin/support/{source.pk}/"))
    assert 'data-testid="merged-notice"' in duplicate
    assert 'data-testid="merge-link"' not in duplicate  # closed: nothing more to merge


def test_merging_needs_a_role_that_works_tickets(client, ops, pair):
    target, source = pair
    client.force_login(ops)
    before = state(source, target)
    assert client.get(url(source), {"into": target.ticket_number}).status_code == 403
    assert client.post(url(source), {"into": target.ticket_number}).status_code == 403
    assert state(source, target) == before
    ticket_page = html(client.get(f"/admin/support/{source.pk}/"))
    assert 'data-testid="merge-link"' not in ticket_page


def test_ticket_page_offers_merge_into_to_those_who_may_merge(client, agent, lead, pair):
    target, source = pair
    for user in (agent, lead):
        client.force_login(user)
        page = html(client.get(f"/admin/support/{source.pk}/"))
        link = re.search(r'<a [^>]*data-testid="merge-link"[^>]*>', page)
        assert link and f'href="/admin/support/{source.pk}/merge/"' in link.group(0)
        assert "Merge into…" in page
        # The actions card refreshed through htmx keeps it.
        part = html(client.get(f"/admin/support/{source.pk}/?part=actions", headers=HX))
        assert 'data-testid="merge-link"' in part


def test_merge_page_refuses_unknown_tickets_and_other_methods(client, agent, pair):
    target, source = pair
    client.force_login(agent)
    assert client.get("/admin/support/999999999/merge/").status_code == 404
    assert client.post("/admin/support/999999999/merge/", {"into": "1"}).status_code == 404
    assert client.put(url(source)).status_code == 405


def test_role_matrix_for_the_merge_page(client, make_ticket):
    customer = role_user("customer")
    target = make_ticket(subject="Stays", requester=customer)
    source = make_ticket(subject="Duplicate", requester=customer)
    assert_access_matrix(client, url(source), WORKERS)
    assert_access_matrix(client, f"{url(source)}?into={target.ticket_number}", WORKERS)
    # A POST that passes the gate is judged as input: a number that finds nothing.
    assert_access_matrix(
        client, url(source), WORKERS, method="post", data={"into": "999999999"}, status=400
    )
    assert Ticket.objects.get(pk=source.pk).merged_into_id is None
