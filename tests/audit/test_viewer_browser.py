"""The audit viewer in real Chromium: htmx filtering with the filters pushed into the address
bar, paging, and the entry page with its field diff. No console errors (CSP included)."""

from __future__ import annotations

import re

import pytest

from adminsite import roles
from audit.context import audit_context
from audit.models import AuditEntry
from audit.services import record
from tests.audit.conftest import seal
from tests.factories import PASSWORD, CustomerFactory, StaffFactory

pytestmark = pytest.mark.e2e


@pytest.fixture
def trail(transactional_db):
    lead = StaffFactory(
        username="lead", role=roles.SUPPORT_LEAD, first_name="Lee", last_name="Lead"
    )
    customer = CustomerFactory(username="carol", first_name="Carol", last_name="Customer")
    with audit_context(actor=lead, ip="198.51.100.4", request_id="req-browser"):
        for number in range(60):
            record(
                "ticket.updated",
                target=customer,
                changes={"status": ["open", "pending"]},
                data={"n": number},
            )
        record("customer.viewed", target=customer, data={"what": "context_panel"})
    seal()
    return lead, customer


def test_filtering_paging_and_the_entry_page(browsing, trail, screenshot):  # noqa: F811
    session = browsing()
    page = session.login("lead", PASSWORD)
    page.goto("/admin/audit/")
    assert page.locator("[data-testid=audit-table] tbody tr").count() == 50

    # Typing an event filters through htmx and puts the filter into the address bar.
    page.fill("#f-event", "customer.viewed")
    page.locator("#f-event").dispatch_event("change")
    page.wait_for_url(re.compile(r"event=customer\.viewed"))
    rows = page.locator("[data-testid=audit-table] tbody tr")
    rows.first.wait_for()
    assert rows.count() == 1
    screenshot(page, "audit-viewer-filtered")

    # Back to everything, then the older page.
    page.goto("/admin/audit/?event=ticket.updated")
    page.click("[data-testid=older]")
    page.wait_for_url(re.compile(r"before="))
    assert page.locator("[data-testid=audit-table] tbody tr").count() == 10

    # The entry page: who, what, the diff, the chain.
    entry = AuditEntry.objects.filter(event="ticket.updated").order_by("id").first()
    page.goto(f"/admin/audit/{entry.pk}/")
    diff = page.locator("[data-testid=entry-diff]")
    assert "status" in diff.inner_text() and "pending" in diff.inner_text()
    assert "intact" in page.locator("[data-testid=integrity]").inner_text()
    screenshot(page, "audit-entry")
