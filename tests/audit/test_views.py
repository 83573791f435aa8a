"""The viewer at /admin/audit/: who may open it, filters in the URL, htmx partials, keyset
pages, query counts, the entry page and the streamed, audited exports."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.db import connection
from django.http import StreamingHttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.context import audit_context
from audit.models import AuditEntry
from audit.queries import history_url
from audit.services import record
from tests.audit.conftest import as_superuser, seal
from tests.roles import assert_access_matrix

LIST = "/admin/audit/"


@pytest.fixture
def client_for():
    def make(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


def rows(response) -> list[int]:
    """Entry ids in the table, in page order."""
    html = response.content.decode()
    return [int(part.split('"', 1)[0]) for part in html.split('data-entry="')[1:]]


# --- access ---------------------------------------------------------------------------------


def test_only_admin_and_support_lead_may_open_the_viewer(client, db):
    entry = record("ticket.created")
    assert_access_matrix(client, LIST, allowed={"admin", "lead"})
    assert_access_matrix(client, f"{LIST}{entry.pk}/", allowed={"admin", "lead"})
    assert_access_matrix(client, f"{LIST}export.csv", allowed={"admin", "lead"})
    assert_access_matrix(client, f"{LIST}export.jsonl", allowed={"admin", "lead"})


def test_the_sidebar_shows_the_audit_entry_to_those_who_may_open_it(
    client_for, admin_user, lead, agent
):
    assert 'href="/admin/audit/"' in client_for(lead).get("/admin/").content.decode()
    assert 'href="/admin/audit/"' not in client_for(agent).get("/admin/").content.decode()


# --- filters --------------------------------------------------------------------------------


@pytest.fixture
def trail(admin_user, lead, agent, customer):
    """A small trail: who did what to whom, when."""
    now = timezone.now()
    made = {}
    with (
        time_machine.travel(now - timedelta(days=10), tick=False),
        audit_context(actor=agent, request_id="req-old"),
    ):
        made["old"] = record("ticket.created", target=customer, data={"subject": "Cannot send"})
    with audit_context(
        actor=lead, impersonator=admin_user, request_id="req-imp", ip="198.51.100.4"
    ):
        made["impersonated"] = record(
            "ticket.updated", target=customer, changes={"status": ["new", "open"]}
        )
    with audit_context(actor=agent, request_id="req-new"):
        made["assigned"] = record(
            "ticket.assigned", target=lead, changes={"assignee": [None, "lee"]}
        )
        made["viewed"] = record("customer.viewed", target=customer, data={"what": "context_panel"})
    made["alert"] = record("alert.resolved", data={"rule": "High API Latency"})
    seal()
    return made


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("actor=sam", ["viewed", "assigned", "old"]),
        ("actor=SAM", ["viewed", "assigned", "old"]),
        ("actor=system&event=alert.resolved", ["alert"]),
        ("event=ticket.assigned", ["assigned"]),
        ("event=ticket.*", ["assigned", "impersonated", "old"]),
        ("target_type=auth.user&target_id={customer}&event=ticket.*", ["impersonated", "old"]),
        ("target_type=auth.user&target_id={customer}&actor=sam", ["viewed", "old"]),
        ("impersonated=1", ["impersonated"]),
        ("q=alert.res", ["alert"]),
        ("q=carol+ticket", ["impersonated", "old"]),
        ("q=lee@example.com", ["impersonated"]),
        ("request_id=req-imp", ["impersonated"]),
        ("date_to={ten_days_ago}&event=ticket.created", ["old"]),
        ("date_from={today}&event=ticket.created", []),
    ],
)
def test_filters(client_for, admin_user, customer, trail, query, expected):
    today = timezone.localdate()
    query = query.format(customer=customer.pk, today=today.isoformat(),
                         ten_days_ago=(today - timedelta(days=10)).isoformat())  # fmt: skip
    response = client_for(admin_user).get(f"{LIST}?{query}")
    assert response.status_code == 200
    found = rows(response)
    assert list(expected) == [
        name for pk in found for name, entry in trail.items() if entry.pk == pk
    ]


def test_the_actor_filter_takes_a_user_id(client_for, admin_user, agent, trail):
    response = client_for(admin_user).get(f"{LIST}?actor={agent.pk}")
    assert rows(response) == [trail["viewed"].pk, trail["assigned"].pk, trail["old"].pk]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("actor=nobody", "There is no user &#x27;nobody&#x27;"),
        ("event=Ticket Created", "is not an event name"),
        ("target_type=tickets.nothing", "Unknown target type &#x27;tickets.nothing&#x27;"),
        ("target_id=5", "Choose the target type the target id belongs to."),
        ("date_from=2026-02-30", "Enter a valid date."),
        ("date_from=2026-03-02&date_to=2026-03-01", "The end date is before the start date."),
        ("q=!!!", "the text has no letters or digits"),
        ("before=yesterday", "Page position &#x27;yesterday&#x27; is invalid"),
        ("request_id=a b", "A request id has letters, digits"),
    ],
)
def test_bad_filters_are_named_with_400_and_never_a_500(
    client_for, admin_user, trail, query, message
):
    response = client_for(admin_user).get(f"{LIST}?{query}")
    assert response.status_code == 400
    assert message in response.content.decode()
    assert 'data-testid="filter-errors"' in response.content.decode()


def test_htmx_gets_only_the_results_partial(client_for, admin_user, trail):
    client = client_for(admin_user)
    response = client.get(f"{LIST}?event=ticket.assigned", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="audit-results"') and "<html" not in html
    assert rows(response) == [trail["assigned"].pk]
    bad = client.get(f"{LIST}?actor=nobody", HTTP_HX_REQUEST="true")
    assert bad.status_code == 200 and "There is no user" in bad.content.decode()


def test_the_filter_form_pushes_its_filters_into_the_url(client_for, admin_user, trail):
    html = client_for(admin_user).get(LIST).content.decode()
    assert 'hx-push-url="true"' in html and 'hx-target="#audit-results"' in html


# --- pages and query counts -----------------------------------------------------------------


def test_keyset_pages_walk_the_whole_trail_newest_first(client_for, admin_user, db):
    made = [record("ticket.updated", data={"n": n}) for n in range(120)]
    client = client_for(admin_user)
    seen, url = [], f"{LIST}?event=ticket.updated"
    pages = 0
    while url:
        response = client.get(url)
        seen += rows(response)
        pages += 1
        html = response.content.decode()
        marker = 'data-testid="older"'
        if marker in html:
            href = (
                html.split(marker)[0].rsplit('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
            )
            url = LIST + href
        else:
            url = None
    assert pages == 3
    assert seen == [entry.pk for entry in reversed(made)]


def test_the_newer_link_goes_back_a_page(client_for, admin_user, db):
    made = [record("ticket.updated") for _ in range(60)]
    client = client_for(admin_user)
    second = client.get(f"{LIST}?event=ticket.updated&before={_cursor(made[10])}")
    assert rows(second) == [entry.pk for entry in reversed(made[:10])]
    back = client.get(f"{LIST}?event=ticket.updated&after={_cursor(made[9])}")
    assert rows(back) == [entry.pk for entry in reversed(made[10:60])]


def _cursor(entry) -> str:
    from audit.queries import Cursor

    return Cursor.of(entry).encode()


def test_the_list_runs_a_fixed_number_of_queries(
    client_for, admin_user, django_assert_max_num_queries, db
):
    client = client_for(admin_user)
    for index in range(3):
        record("ticket.updated", target=admin_user, data={"n": index})
    client.get(LIST)  # warm per-process caches (content types, permissions of this request)

    def count(url):
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    few = count(LIST), count(f"{LIST}?actor=ada&q=ada")
    for index in range(80):
        record("ticket.updated", target=admin_user, data={"n": index})
    many = count(LIST), count(f"{LIST}?actor=ada&q=ada")
    assert few == many
    with django_assert_max_num_queries(10):
        client.get(f"{LIST}?event=ticket.updated&target_type=auth.user&target_id={admin_user.pk}")


def test_history_url_leads_to_the_entries_of_an_object(client_for, admin_user, customer, trail):
    url = history_url(customer)
    assert url == f"/admin/audit/?target_type=auth.user&target_id={customer.pk}"
    about_customer = AuditEntry.objects.filter(
        content_type__model="user", object_pk=str(customer.pk)
    )
    found = rows(client_for(admin_user).get(url))
    assert found == list(about_customer.order_by("-timestamp", "-id").values_list("pk", flat=True))
    assert {trail["viewed"].pk, trail["impersonated"].pk, trail["old"].pk} < set(found)
    assert about_customer.filter(event="user.customer_created").exists()


# --- the entry page -------------------------------------------------------------------------


def test_the_entry_page_shows_the_field_diff_and_the_chain(client_for, lead, trail):
    entry = trail["impersonated"]
    response = client_for(lead).get(f"{LIST}{entry.pk}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert (
        "<code>status</code>" in html
        and '<td class="old">new</td>' in html
        and '<td class="new">open</td>' in html
    )
    assert "impersonation" in html and "Ada Admin (ada)" in html
    assert 'badge-green">intact' in html
    assert f"target_type=auth.user&amp;target_id={entry.object_pk}" in html


def test_an_unlinked_entry_says_so_and_a_missing_one_is_404(client_for, lead, db):
    entry = record("ticket.created")
    client = client_for(lead)
    assert "not linked into the chain yet" in client.get(f"{LIST}{entry.pk}/").content.decode()
    assert client.get(f"{LIST}999999/").status_code == 404


def test_an_altered_entry_page_shows_the_break(client_for, lead, trail):
    entry = trail["alert"]
    as_superuser(
        "UPDATE audit_auditentry SET event = 'alert.acknowledged' WHERE id = %s", [entry.pk]
    )
    html = client_for(lead).get(f"{LIST}{entry.pk}/").content.decode()
    assert 'badge-red">broken' in html and "was altered after it was sealed" in html


# --- exports --------------------------------------------------------------------------------


def _body(response) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode()


def test_csv_export_streams_the_filtered_set_and_is_audited(client_for, lead, customer, trail):
    response = client_for(lead).get(
        f"{LIST}export.csv?target_type=auth.user&target_id={customer.pk}&event=ticket.*"
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-')
    table = list(csv.DictReader(io.StringIO(_body(response).lstrip("\ufeff"))))
    assert [int(row["id"]) for row in table] == [trail["impersonated"].pk, trail["old"].pk]
    imp = table[0]
    assert (imp["event"], imp["actor"], imp["impersonator"], imp["ip"]) == (
        "ticket.updated",
        "Lee Lead (lee)",
        "Ada Admin (ada)",
        "198.51.100.4",
    )
    assert json.loads(imp["changes"]) == {"status": ["new", "open"]}
    assert imp["seq"] and len(imp["hash"]) == 64

    exported = AuditEntry.objects.get(event="audit.exported")
    assert exported.actor_id == lead.pk
    assert exported.additional_data == {
        "format": "csv", "filters": {"target_type": "auth.user", "target_id": str(customer.pk), "event": "ticket.*"},
    }  # fmt: skip


def test_jsonl_export_has_one_object_per_line(client_for, admin_user, trail):
    response = client_for(admin_user).get(f"{LIST}export.jsonl?event=ticket.*")
    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    lines = [json.loads(line) for line in _body(response).splitlines()]
    assert [line["id"] for line in lines] == [
        trail["assigned"].pk,
        trail["impersonated"].pk,
        trail["old"].pk,
    ]
    assert lines[0]["target_type"] == "auth.user" and lines[0]["changes"] == {
        "assignee": [None, "lee"]
    }
    assert AuditEntry.objects.get(event="audit.exported").additional_data["filters"] == {
        "event": "ticket.*"
    }


def test_csv_cells_that_look_like_formulas_are_neutralised(client_for, admin_user, db):
    get_user_model().objects.filter(pk=admin_user.pk)
    record("ticket.created", data={"subject": '=HYPERLINK("http://evil")'})
    response = client_for(admin_user).get(f"{LIST}export.csv?event=ticket.created")
    row = next(csv.DictReader(io.StringIO(_body(response).lstrip("\ufeff"))))
    assert row["data"].startswith("{")  # JSON cells start with a brace, not a formula
    record("ticket.created", target=None, data=None)
    with audit_context(user_agent="=cmd|' /C calc'!A0"):
        record("ticket.viewed")
    response = client_for(admin_user).get(f"{LIST}export.csv?event=ticket.viewed")
    row = next(csv.DictReader(io.StringIO(_body(response).lstrip("\ufeff"))))
    assert row["user_agent"] == "'=cmd|' /C calc'!A0"


def test_an_export_with_bad_filters_is_400_and_not_audited(client_for, admin_user, db):
    response = client_for(admin_user).get(f"{LIST}export.csv?date_from=soon")
    assert response.status_code == 400
    assert response.content.decode() == "Cannot export: date_from: Enter a valid date.\n"
    assert client_for(admin_user).get(f"{LIST}export.xml").status_code == 404
    assert not AuditEntry.objects.filter(event="audit.exported").exists()


def test_the_export_reads_through_a_server_side_cursor_in_constant_memory(
    client_for, admin_user, db
):
    """Rows are fetched from a named cursor in chunks while the response streams: the first
    chunk goes out before the query's result has been read to the end."""
    for index in range(30):
        record("ticket.updated", data={"n": index})
    response = client_for(admin_user).get(f"{LIST}export.jsonl?event=ticket.updated")
    chunks = iter(response.streaming_content)
    first = next(chunks)
    assert json.loads(first)["event"] == "ticket.updated"
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_cursors WHERE NOT is_holdable")
        assert cursor.fetchone()[0] == 1  # the export's cursor, open mid-stream
    rest = list(chunks)
    assert len(rest) == 29
    assert datetime.fromisoformat(json.loads(rest[-1])["time"]) <= datetime.fromisoformat(
        json.loads(first)["time"]
    )


def test_entries_of_a_removed_model_still_show(client_for, admin_user, db):
    """Entries outlive the models they describe: a content type that is gone is named by id."""
    entry = record("ticket.created")
    as_superuser(
        "UPDATE audit_auditentry SET content_type_id = 987654, object_pk = '5' WHERE id = %s",
        [entry.pk],
    )
    client = client_for(admin_user)
    listing = client.get(LIST)
    assert listing.status_code == 200 and "removed-type-987654 #5" in listing.content.decode()
    assert client.get(f"{LIST}{entry.pk}/").status_code == 200
    assert "removed-type-987654" in _body(client.get(f"{LIST}export.jsonl?event=ticket.created"))
