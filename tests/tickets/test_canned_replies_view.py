"""The canned replies pages (/admin/support/canned-replies/): the list with its query bound,
adding, editing and deleting (with a confirmation step) by Support Leads and Admins, agents and
Ops reading only, and every validation error answered with 400 and nothing changed."""

from __future__ import annotations

import re

import pytest

from audit.models import AuditEntry
from tests.factories import StaffFactory
from tests.roles import assert_access_matrix
from tickets import services
from tickets.models import CannedReply

pytestmark = pytest.mark.django_db

LIST = "/admin/support/canned-replies/"
MANAGERS = {"admin", "lead"}
READERS = {"admin", "lead", "agent", "ops"}


def html(response) -> str:
    return response.content.decode()


def edit_url(reply) -> str:
    return f"{LIST}{reply.pk}/"


def delete_url(reply) -> str:
    return f"{LIST}{reply.pk}/delete/"


def snapshot() -> list[tuple]:
    return list(CannedReply.objects.order_by("pk").values_list("pk", "title", "body"))


@pytest.fixture
def reply(lead):
    return services.create_canned_reply(
        actor=lead, title="Reconnect Gmail", body="Please remove and re-add your Gmail account."
    )


# --- the list --------------------------------------------------------------------------------------


def test_list_shows_title_preview_author_and_last_change_in_fixed_queries(
    client, lead, django_assert_max_num_queries
):
    long_body = "Thanks for writing in. " * 20
    for n in range(3):
        services.create_canned_reply(actor=lead, title=f"Reply {n}", body=long_body)
    client.force_login(lead)
    with django_assert_max_num_queries(6) as few:
        response = client.get(LIST)
    assert response.status_code == 200
    for n in range(3, 30):
        services.create_canned_reply(
            actor=StaffFactory(first_name=f"Writer{n}", last_name="Lead"),
            title=f"Reply {n}",
            body=long_body,
        )
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(LIST)
    page = html(response)
    assert page.count('<tr data-reply="') == 30
    assert "30 replies" in page
    assert "Writer29 Lead" in page
    # The body is previewed in the cell, not shown whole.
    cells = re.findall(r'<td class="canned-preview muted"[^>]*>([^<]*)</td>', page)
    assert len(cells) == 30
    assert all(cell.startswith("Thanks for writing in.") and cell.endswith("…") for cell in cells)
    assert all(len(cell) == 140 for cell in cells)
    assert 'data-testid="canned-add"' in page and "Edit</a>" in page and "Delete…</a>" in page


def test_empty_list_says_what_the_page_is_for(client, lead):
    client.force_login(lead)
    page = html(client.get(LIST))
    assert "No canned replies yet" in page


def test_agents_and_ops_read_the_list_without_controls(client, agent, ops, reply):
    for user in (agent, ops):
        client.force_login(user)
        page = html(client.get(LIST))
        assert "Reconnect Gmail" in page
        assert 'data-testid="read-only"' in page
        assert 'data-testid="canned-add"' not in page
        assert "Delete…" not in page and ">Edit</a>" not in page
        detail = html(client.get(edit_url(reply)))
        assert "<fieldset disabled>" in detail and "Save canned reply" not in detail


def test_queue_header_links_to_the_canned_replies(client, agent):
    client.force_login(agent)
    page = html(client.get("/admin/support/"))
    assert f'href="{LIST}" data-testid="canned-replies-link"' in page


# --- add --------------------------------------------------------------------------------------------


def test_lead_adds_a_canned_reply(client, lead):
    client.force_login(lead)
    response = client.post(
        LIST, {"title": "  Refund   on its way ", "body": "Your refund is on its way.\n\nBest"}
    )
    assert response.status_code == 303 and response["Location"] == LIST
    reply = CannedReply.objects.get()
    assert (reply.title, reply.body, reply.created_by) == (
        "Refund on its way",
        "Your refund is on its way.\n\nBest",
        lead,
    )
    assert AuditEntry.objects.filter(event="canned_reply.created", actor=lead).exists()
    page = html(client.get(LIST))
    assert "Added the canned reply “Refund on its way”." in page


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"title": "", "body": "Text"}, "Title: A title is required."),
        ({"title": "   ", "body": "Text"}, "Title: A title is required."),
        ({"body": "Text"}, "Title: A title is required."),
        ({"title": "x" * 101, "body": "Text"}, "Title: At most 100 characters (this one has 101)."),
        ({"title": "Hello", "body": ""}, "Reply: The reply text is required."),
        ({"title": "Hello", "body": " \n "}, "Reply: The reply text is required."),
        (
            {"title": "Hello", "body": "y" * 20_001},
            "Reply: At most 20000 characters (this one has 20001).",
        ),
        ({"title": "reconnect GMAIL", "body": "Text"}, "A canned reply titled"),
    ],
)
def test_add_refuses_bad_input_and_changes_nothing(client, lead, reply, data, message):
    client.force_login(lead)
    before = snapshot()
    response = client.post(LIST, data)
    assert response.status_code == 400
    page = html(response)
    assert message in page
    assert 'data-testid="form-errors"' in page
    assert snapshot() == before


def test_the_duplicate_title_message_names_the_title(client, lead, reply):
    client.force_login(lead)
    response = client.post(LIST, {"title": "Reconnect gmail", "body": "Again"})
    assert "Title: A canned reply titled &#x27;Reconnect gmail&#x27; already exists." in html(
        response
    )
    # What was typed stays in the form to fix.
    assert 'value="Reconnect gmail"' in html(response) and ">Again</textarea>" in html(response)


# --- edit --------------------------------------------------------------------------------------------


def test_lead_edits_a_canned_reply(client, lead, admin_user, reply):
    client.force_login(admin_user)
    form = html(client.get(edit_url(reply)))
    assert 'value="Reconnect Gmail"' in form and "Save canned reply" in form
    response = client.post(
        edit_url(reply), {"title": "Reconnect Gmail account", "body": "Remove and re-add it."}
    )
    assert response.status_code == 303 and response["Location"] == LIST
    reply.refresh_from_db()
    assert (reply.title, reply.body) == ("Reconnect Gmail account", "Remove and re-add it.")
    entry = AuditEntry.objects.get(event="canned_reply.updated")
    assert entry.actor == admin_user
    assert "Saved the canned reply “Reconnect Gmail account”." in html(client.get(LIST))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"title": "", "body": "Text"}, "Title: A title is required."),
        ({"title": "t" * 130, "body": "Text"}, "Title: At most 100 characters (this one has 130)."),
        ({"title": "Fine", "body": "   "}, "Reply: The reply text is required."),
        ({"title": "Refunds", "body": "Text"}, "A canned reply titled &#x27;Refunds&#x27;"),
    ],
)
def test_edit_refuses_bad_input_and_changes_nothing(client, lead, reply, data, message):
    services.create_canned_reply(actor=lead, title="Refunds", body="About refunds.")
    client.force_login(lead)
    before = snapshot()
    response = client.post(edit_url(reply), data)
    assert response.status_code == 400
    assert message in html(response)
    assert snapshot() == before


def test_renaming_to_its_own_title_in_another_case_is_allowed(client, lead, reply):
    client.force_login(lead)
    response = client.post(edit_url(reply), {"title": "Reconnect GMAIL", "body": reply.body})
    assert response.status_code == 303
    assert CannedReply.objects.get().title == "Reconnect GMAIL"


def test_agents_cannot_add_edit_or_delete(client, agent, ops, reply):
    before = snapshot()
    for user in (agent, ops):
        client.force_login(user)
        assert client.post(LIST, {"title": "Mine", "body": "Text"}).status_code == 403
        assert client.post(edit_url(reply), {"title": "Changed", "body": "x"}).status_code == 403
        assert client.get(delete_url(reply)).status_code == 403
        assert client.post(delete_url(reply)).status_code == 403
    assert snapshot() == before


def test_unknown_reply_is_404(client, lead):
    client.force_login(lead)
    assert client.get(f"{LIST}999999/").status_code == 404
    assert client.post(f"{LIST}999999/", {"title": "A", "body": "B"}).status_code == 404
    assert client.get(f"{LIST}999999/delete/").status_code == 404
    assert client.post(f"{LIST}999999/delete/").status_code == 404


# --- delete ---------------------------------------------------------------------------------------------


def test_delete_asks_first_then_deletes(client, lead, reply):
    client.force_login(lead)
    confirm = client.get(delete_url(reply))
    assert confirm.status_code == 200
    page = html(confirm)
    assert "Delete “Reconnect Gmail”?" in page
    assert f'action="{delete_url(reply)}"' in page and "Delete canned reply" in page
    assert CannedReply.objects.filter(pk=reply.pk).exists()  # asking deletes nothing

    response = client.post(delete_url(reply))
    assert response.status_code == 303 and response["Location"] == LIST
    assert not CannedReply.objects.filter(pk=reply.pk).exists()
    assert AuditEntry.objects.get(event="canned_reply.deleted").additional_data == {
        "title": "Reconnect Gmail"
    }
    assert "Deleted the canned reply “Reconnect Gmail”." in html(client.get(LIST))


def test_a_deleted_reply_leaves_the_ticket_composer(client, lead, agent, reply, make_ticket):
    ticket = make_ticket()
    option = f'<option value="{reply.pk}" data-body="'
    client.force_login(agent)
    assert option in html(client.get(f"/admin/support/{ticket.pk}/"))
    client.force_login(lead)
    client.post(delete_url(reply))
    client.force_login(agent)
    assert option not in html(client.get(f"/admin/support/{ticket.pk}/"))


# --- the role matrix ----------------------------------------------------------------------------------


def test_role_matrix_for_canned_reply_pages(client, lead, reply):
    assert_access_matrix(client, LIST, READERS)
    assert_access_matrix(client, edit_url(reply), READERS)
    # POSTs that pass the gate are judged as input (an empty form) or saved unchanged.
    assert_access_matrix(client, LIST, MANAGERS, method="post", data={}, status=400)
    assert_access_matrix(
        client,
        edit_url(reply),
        MANAGERS,
        method="post",
        data={"title": reply.title, "body": reply.body},
        status=303,
    )
    assert_access_matrix(client, delete_url(reply), MANAGERS)
    # Deleting succeeds once: everyone but the managers is refused first, then a lead deletes.
    assert_access_matrix(
        client,
        delete_url(reply),
        MANAGERS,
        method="post",
        status=303,
        roles_to_check=("agent", "ops", "customer", "anonymous"),
    )
    assert CannedReply.objects.filter(pk=reply.pk).exists()
    assert_access_matrix(
        client, delete_url(reply), MANAGERS, method="post", status=303, roles_to_check=("lead",)
    )
    assert not CannedReply.objects.filter(pk=reply.pk).exists()
