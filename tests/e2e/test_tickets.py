"""Support in Chromium: an agent filters the queue, opens a ticket, writes an internal note and
a public reply, takes the ticket and resolves it; a second agent on the same ticket shows up
as a viewer and their change raises the reload notice; the customer then signs in at
/accounts/login/ and sees the reply but not the note. Screenshots of the queue and the ticket
page in both themes go to artifacts/screenshots/."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from adminsite import roles
from tests.factories import PASSWORD, CustomerFactory, StaffFactory
from tickets import services
from tickets.models import Category, Comment, Status, Ticket

pytestmark = pytest.mark.django_db(transaction=True)

NOTE = "Checked the logs: the Fastmail OAuth token expired on the 3rd. Refreshing it server-side."
REPLY = "Thanks for the report! We refreshed the connection to your Fastmail account; new mail should arrive within a minute."
# Presence is polled every few seconds; allow two polls and some slack.
POLL_TIMEOUT_MS = 15_000
CATEGORIES = ["email_sync", "billing", "account", "bug", "feature_request", "other"]


def categories() -> dict[str, Category]:
    """The seeded categories (a transactional test before this one flushed the migration's)."""
    return {
        slug: Category.objects.get_or_create(
            slug=slug,
            defaults={"name": slug.replace("_", " ").capitalize(), "position": n * 10},
        )[0]
        for n, slug in enumerate(CATEGORIES, start=1)
    }


@pytest.fixture
def support_data():
    """The demo data set (customers, agents, 300 tickets) plus the ticket this story is about."""
    found = categories()
    call_command("seed_demo", "--tickets", "300", "--no-progress", verbosity=0)
    agent = StaffFactory(
        username="sam.e2e", role=roles.SUPPORT_AGENT, first_name="Sam", last_name="Carter"
    )
    colleague = StaffFactory(
        username="lena.e2e", role=roles.SUPPORT_AGENT, first_name="Lena", last_name="Fischer"
    )
    customer = CustomerFactory(username="nora.e2e", first_name="Nora", last_name="Lindqvist")
    ticket = services.create_ticket(
        actor=customer,
        requester=customer,
        subject="Fastmail inbox stopped syncing after password change",
        description="Since Tuesday no new mail arrives from my Fastmail account. "
        "I changed my password on Monday.",
        category=found["email_sync"],
        priority="high",
    )
    return {"agent": agent, "colleague": colleague, "customer": customer, "ticket": ticket}


def test_agent_works_a_ticket_and_the_customer_sees_only_the_reply(
    browsing, screenshot, support_data
):
    agent, colleague = support_data["agent"], support_data["colleague"]
    customer, ticket = support_data["customer"], support_data["ticket"]

    session = browsing()
    page = session.login(agent.username, PASSWORD)
    page.goto("/admin/support/")
    active = Ticket.objects.filter(status__in=Status.values[:4]).count()
    assert page.get_by_test_id("queue-table").locator("tbody tr").count() == min(active, 50)
    screenshot(page, "support-queue-light", full_page=False)

    # Filter: high priority, then a search; the table updates in place and the URL keeps both.
    with page.expect_response(lambda r: "priority=high" in r.url and r.status == 200):
        page.select_option("#q-priority", "high")
    page.wait_for_url(re.compile(r"/admin/support/\?.*priority=high"))
    priorities = page.locator("tbody tr .badge[data-priority]").evaluate_all(
        "badges => badges.map(b => b.dataset.priority)"
    )
    assert priorities and set(priorities) == {"high"}
    page.fill("#q-search", "Fastmail password")
    page.wait_for_url(re.compile(r"search=Fastmail\+password"))
    row = page.locator(f'tr[data-ticket="{ticket.pk}"]')
    row.wait_for()
    assert "priority=high" in page.url
    assert page.locator("#q-priority").input_value() == "high"

    row.get_by_role("link", name=ticket.subject).click()
    page.wait_for_url(f"**/admin/support/{ticket.pk}/")
    assert page.get_by_test_id("ticket-number").inner_text() == f"#{ticket.ticket_number}"

    # A second agent opens the same ticket (dark theme): each sees the other.
    other = browsing(color_scheme="dark")
    other_page = other.login(colleague.username, PASSWORD)
    other_page.goto(f"/admin/support/{ticket.pk}/")
    page.get_by_test_id("viewer").filter(has_text="Lena Fischer").wait_for(timeout=POLL_TIMEOUT_MS)
    other_page.get_by_test_id("viewer").filter(has_text="Sam Carter").wait_for(
        timeout=POLL_TIMEOUT_MS
    )

    # Internal note, then a public reply: both appended without a reload, the note marked.
    composer = page.get_by_test_id("composer")
    composer.locator("textarea").fill(NOTE)
    composer.get_by_text("Internal note").click()
    composer.get_by_role("button", name="Send Comment").click()
    note = page.locator('.comment[data-internal="true"]').filter(has_text="OAuth token expired")
    note.wait_for()
    assert "Internal note" in note.get_by_test_id("internal-label").inner_text()

    composer = page.get_by_test_id("composer")
    assert composer.locator('input[name="is_internal"]').is_checked()  # stays on for a run
    composer.get_by_text("Internal note").click()
    composer.locator("textarea").fill(REPLY)
    composer.get_by_role("button", name="Send Comment").click()
    page.locator('.comment[data-internal="false"]').filter(
        has_text="refreshed the connection"
    ).wait_for()
    assert page.get_by_test_id("composer").locator("textarea").input_value() == ""

    # Quick actions: take it, resolve it. The Properties card shows each answer; header and
    # timeline follow through HX-Trigger.
    actions = page.get_by_test_id("ticket-actions")
    status = actions.get_by_test_id("status-select")
    assignee = actions.get_by_test_id("assignee-select")
    expect(status.locator("option:checked")).to_have_text("Open")  # the public reply opened it
    expect(assignee).to_have_value("none")
    page.get_by_test_id("assign-to-me").click()
    expect(actions.get_by_test_id("action-notice")).to_have_text("Assigned the ticket to you.")
    expect(assignee).to_have_value(str(agent.pk))
    expect(assignee.locator("option:checked")).to_have_text("Sam Carter")
    expect(status.locator("option:checked")).to_have_text("Open")
    expect(actions.get_by_test_id("assign-to-me")).to_have_count(0)
    expect(actions.get_by_test_id("resolve")).to_be_visible()
    page.get_by_test_id("ticket-header").filter(has_text="Sam Carter").wait_for()

    page.get_by_test_id("resolve").click()
    expect(actions.get_by_test_id("action-notice")).to_have_text("Resolved the ticket.")
    expect(status.locator("option:checked")).to_have_text("Resolved")
    # Resolved may go back to open or on to closed, nothing else.
    expect(status.locator("option")).to_have_text(["Resolved", "→ Open", "→ Closed"])
    expect(assignee).to_have_value(str(agent.pk))
    expect(actions.get_by_test_id("resolve")).to_have_count(0)
    expect(actions.get_by_test_id("assign-to-me")).to_have_count(0)
    expect(actions.get_by_test_id("reopen")).to_be_visible()
    expect(actions.get_by_test_id("close")).to_be_visible()
    page.locator('#ticket-header .badge[data-status="resolved"]').wait_for()
    page.get_by_test_id("timeline").filter(has_text="Resolved").wait_for()

    ticket.refresh_from_db()
    assert ticket.status == Status.RESOLVED
    assert ticket.assignee_id == agent.pk
    assert ticket.first_responded_at is not None
    assert list(
        Comment.objects.filter(ticket=ticket).order_by("id").values_list("is_internal", flat=True)
    ) == [True, False]

    # The colleague's page learns that someone else changed the ticket.
    other_page.get_by_test_id("stale-notice").filter(has_text="Sam Carter").wait_for(
        timeout=POLL_TIMEOUT_MS
    )
    screenshot(other_page, "support-ticket-dark-collision", full_page=False)
    other_page.get_by_test_id("stale-notice").get_by_role("link", name="Reload").click()
    other_page.locator('.comment[data-internal="true"]').wait_for()
    screenshot(other_page, "support-ticket-dark", full_page=False)
    screenshot(page, "support-ticket-light", full_page=False)
    other_page.goto("/admin/support/")
    screenshot(other_page, "support-queue-dark", full_page=False)

    # The customer signs in where customers do and sees the reply, not the note.
    customer_session = browsing()
    customer_page = customer_session.login(customer.username, PASSWORD, path="/accounts/login/")
    customer_page.goto("/help/tickets/")
    customer_page.get_by_test_id("help-tickets").get_by_role(
        "link", name=re.compile(re.escape(ticket.subject))
    ).click()
    customer_page.wait_for_url(f"**/help/tickets/{ticket.pk}/")
    thread = customer_page.get_by_test_id("thread")
    assert REPLY in thread.inner_text()
    content = customer_page.content()
    assert "OAuth token expired" not in content
    assert "Internal note" not in content
    header = customer_page.get_by_test_id("ticket-header")
    assert header.locator('.badge[data-status="resolved"]').count() == 1
    screenshot(customer_page, "support-help-ticket-light", full_page=True)
    assert Ticket.objects.get(pk=ticket.pk).status == Status.RESOLVED


def test_bulk_selection_and_saved_views_in_the_queue(browsing, screenshot):
    agent = StaffFactory(
        username="bulk.e2e", role=roles.SUPPORT_AGENT, first_name="Sam", last_name="Carter"
    )
    customer = CustomerFactory(username="bulk.customer", first_name="Ines", last_name="Moreau")
    category = categories()["billing"]
    tickets = [
        services.create_ticket(
            actor=customer,
            requester=customer,
            subject=f"Invoice question {n}",
            description="Which VAT rate applies?",
            category=category,
            priority="normal",
        )
        for n in range(4)
    ]
    session = browsing()
    page = session.login(agent.username, PASSWORD)
    page.goto("/admin/support/?ordering=createdAt")

    bulk = page.locator("[data-bulk-form]")
    assign_button = bulk.get_by_role("button", name="Assign", exact=True)
    assert assign_button.is_disabled()
    page.locator("[data-select-all]").check()
    assert bulk.locator("[data-selected-count]").inner_text() == "4"
    page.locator("[data-select-all]").uncheck()
    # A click on a row's cell selects it, like the checkbox.
    for ticket in tickets[:2]:
        page.locator(f'tr[data-ticket="{ticket.pk}"] td.col-category').click()
    assert bulk.locator("[data-selected-count]").inner_text() == "2"
    assert assign_button.is_enabled()
    page.select_option("#bulk-assignee", "me")
    assign_button.click()
    page.get_by_test_id("queue-notice").filter(
        has_text="Assigned 2 tickets to Sam Carter."
    ).wait_for()
    assert bulk.locator("[data-selected-count]").inner_text() == "0"
    assert page.url.endswith("/admin/support/?ordering=createdAt")
    assigned = set(Ticket.objects.filter(assignee=agent).values_list("pk", flat=True))
    assert assigned == {tickets[0].pk, tickets[1].pk}

    # Save the current filters as a view; it is listed, active, and opens the same list.
    page.get_by_text("+ Save view").click()
    page.fill("#view-name", "Billing, oldest first")
    page.get_by_role("button", name="Save", exact=True).click()
    pill = page.locator(".view-pill.is-active").filter(has_text="Billing, oldest first")
    pill.wait_for()
    page.locator(".view-pill").filter(has_text="My open").get_by_role("link").click()
    page.wait_for_url(re.compile(r"assignee=me"))
    rows = page.locator("tbody tr[data-ticket]")
    assert sorted(
        int(pk) for pk in rows.evaluate_all("rs => rs.map(r => r.dataset.ticket)")
    ) == sorted(assigned)
    screenshot(page, "support-queue-my-open-light", full_page=False)
