"""Writing the trail: record(), the audit context, model diffs, sign-in events, access events,
and that an action whose audit entry cannot be written fails with it."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db import DatabaseError, connection, transaction
from django.test import Client

from adminsite import roles
from adminsite import services as console_services
from adminsite.models import ApiToken
from audit import context
from audit.context import audit_context
from audit.models import AuditEntry
from audit.services import MASK, AuditWriteError, Event, record, record_access, record_many
from tests.factories import StaffFactory


def entries(event: str):
    return AuditEntry.objects.filter(event=event).order_by("id")


# --- record() and the context ---------------------------------------------------------------


def test_record_takes_actor_impersonator_ip_agent_and_request_id_from_the_context(lead, customer):
    with audit_context(actor=customer, impersonator=lead, ip="203.0.113.9", user_agent="Firefox/140",
                       request_id="req-42", source="web"):  # fmt: skip
        entry = record(
            "ticket.created", target=lead, changes={"status": [None, "new"]}, data={"via": "web"}
        )

    entry.refresh_from_db()
    assert entry.event == "ticket.created"
    assert entry.action == AuditEntry.Action.EVENT
    assert entry.actor_id == customer.pk
    assert entry.actor_name == "Carol Customer (carol)"
    assert entry.actor_email == "carol@example.com"
    assert entry.impersonator_id == lead.pk
    assert entry.impersonator_name == "Lee Lead (lee)"
    assert entry.remote_addr == "203.0.113.9"
    assert entry.user_agent == "Firefox/140"
    assert entry.cid == "req-42"
    assert entry.source == "web"
    assert entry.content_type == ContentType.objects.get_for_model(get_user_model())
    assert entry.object_pk == str(lead.pk) and entry.object_id == lead.pk
    assert entry.object_repr == "lee"
    assert entry.changes == {"status": [None, "new"]}
    assert entry.additional_data == {"via": "web"}


def test_without_a_context_the_actor_is_system(db):
    entry = record("alert.resolved")
    assert (entry.actor_id, entry.actor_name, entry.remote_addr, entry.cid) == (
        None,
        "system",
        None,
        None,
    )


def test_an_explicit_actor_overrides_the_context_but_keeps_the_request(lead, agent):
    with audit_context(actor=agent, ip="198.51.100.7", request_id="r1"):
        entry = record("ticket.assigned", actor=lead)
    assert entry.actor_id == lead.pk
    assert (entry.remote_addr, entry.cid) == ("198.51.100.7", "r1")


def test_nested_contexts_restore_the_outer_one(agent):
    with audit_context(actor=agent, request_id="outer"):
        with audit_context(actor=context.SYSTEM, source="task:x"):
            inner = record("job.ran")
        outer = record("job.checked")
    assert (inner.actor_name, inner.cid, inner.source) == ("system", "outer", "task:x")
    assert (outer.actor_id, outer.cid, outer.source) == (agent.pk, "outer", "")


def test_values_are_stored_as_plain_json(db):
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    token = uuid.UUID("12345678-1234-5678-1234-567812345678")
    entry = record(
        "order.refunded",
        data={"when": when, "amount": Decimal("12.50"), "id": token, "nul": "a\x00b"},
    )
    entry.refresh_from_db()
    assert entry.additional_data == {
        "when": "2026-01-02T03:04:05Z", "amount": "12.50", "id": str(token), "nul": "a\ufffdb",
    }  # fmt: skip


def test_secret_keys_are_masked_at_any_depth(db):
    entry = record(
        "user.updated",
        changes={
            "password": ["old-hash", "new-hash"],
            "email": ["a@x.io", "b@x.io"],
            "api_token": [None, "t"],
        },
        data={
            "nested": {"client_secret": "s3cr3t", "token_prefix": "ast_abc"},
            "list": [{"password": "p"}],
        },
    )
    entry.refresh_from_db()
    assert entry.changes == {
        "password": [MASK, MASK],
        "email": ["a@x.io", "b@x.io"],
        "api_token": [None, MASK],
    }
    assert entry.additional_data == {
        "nested": {"client_secret": MASK, "token_prefix": "ast_abc"},
        "list": [{"password": MASK}],
    }


def test_secret_words_in_values_stay_and_secret_keys_in_any_case_are_masked(db):
    entry = record(
        "user.updated",
        data={
            "note": "password reset link sent; token expires in 1 h",
            "Password": "hunter2",
            "nested": [{"API_TOKEN": "t0k3n", "tokens_left": 3}],
        },
    )
    stored = AuditEntry.objects.get(pk=entry.pk).additional_data
    assert (
        stored
        == entry.additional_data
        == {
            "note": "password reset link sent; token expires in 1 h",
            "Password": MASK,
            "nested": [{"API_TOKEN": MASK, "tokens_left": 3}],
        }
    )


# --- the insert itself ----------------------------------------------------------------------


def _prepared_audit_inserts() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements "
            "WHERE statement LIKE '%%INSERT INTO audit_auditentry%%'"
        )
        return cursor.fetchone()[0]


def test_one_prepared_insert_serves_entries_with_and_without_target_actor_and_data(lead, customer):
    made = [record("job.ran")]
    with audit_context(actor=customer, impersonator=lead, ip="203.0.113.9", request_id="r-7"):
        made.append(
            record("ticket.created", target=lead, changes={"status": [None, "new"]}, data={"n": 1})
        )
        made.append(record("customer.viewed", target=customer, data={"what": "context_panel"}))
    made.append(record("ticket.assigned", actor=lead, changes={"assignee": [None, 2**40]}))
    assert _prepared_audit_inserts() == 1
    for entry in made:
        stored = AuditEntry.objects.get(pk=entry.pk)
        for field in ("event", "actor_id", "impersonator_id", "content_type_id", "object_pk",
                      "object_id", "object_repr", "remote_addr", "cid", "changes", "additional_data",
                      "timestamp", "action", "actor_name", "impersonator_name"):  # fmt: skip
            assert getattr(stored, field) == getattr(entry, field), field


def test_recording_goes_on_after_a_rollback(db):
    record("job.ran")
    with pytest.raises(RuntimeError), transaction.atomic():
        record("job.failed")
        raise RuntimeError
    # The insert prepared in the rolled-back transaction stays prepared for the next entry.
    after = record("job.retried")
    assert list(AuditEntry.objects.filter(event__startswith="job.").values_list("event", flat=True)
                .order_by("id")) == ["job.ran", "job.retried"]  # fmt: skip
    assert AuditEntry.objects.get(pk=after.pk).event == "job.retried"


@pytest.mark.django_db(transaction=True)
def test_recording_goes_on_over_a_new_connection():
    first = record("job.ran")
    connection.close()
    second = record("job.ran")
    assert list(AuditEntry.objects.filter(pk__in=[first.pk, second.pk]).values_list("pk", flat=True)
                .order_by("pk")) == [first.pk, second.pk]  # fmt: skip


def test_the_insert_is_one_query_seen_by_query_logging(db, django_assert_num_queries):
    record("job.ran")
    with django_assert_num_queries(1) as captured:
        record("job.ran", data={"n": 2})
    assert captured.captured_queries[0]["sql"].startswith(
        "/* audit_insert_entry */ INSERT INTO audit_auditentry ("
    )


def test_the_returned_entry_is_the_stored_row_with_its_related_objects(lead, customer):
    with audit_context(actor=customer, impersonator=lead):
        entry = record("customer.viewed", target=customer)
    assert not entry._state.adding and entry._state.db == "default"
    assert entry.actor == customer and entry.impersonator == lead
    assert entry.content_type == ContentType.objects.get_for_model(get_user_model())
    assert str(entry) == "customer.viewed carol by Carol Customer (carol)"


def test_record_many_writes_each_event_as_record_would_in_one_statement(
    lead, customer, django_assert_num_queries
):
    record_many([Event("job.ran")])  # prepared
    with (
        audit_context(actor=customer, impersonator=lead, ip="203.0.113.9", request_id="req-7"),
        django_assert_num_queries(1),
    ):
        ids = record_many(
            [
                Event("order.paid", target=lead, changes={"status": ["pending", "paid"]}),
                Event("order.expired", data={"api_token": "tok_secret", "note": 'it\'s \\ "x"'}),
                Event("order.fulfilled", actor=context.SYSTEM),
            ]
        )

    stored = list(AuditEntry.objects.filter(pk__in=ids).order_by("id"))
    assert [entry.pk for entry in stored] == ids
    assert [entry.event for entry in stored] == ["order.paid", "order.expired", "order.fulfilled"]
    paid, expired, fulfilled = stored
    assert paid.actor_id == customer.pk and paid.impersonator_id == lead.pk
    assert paid.remote_addr == "203.0.113.9" and paid.cid == "req-7"
    assert paid.object_id == lead.pk and paid.object_repr == "lee"
    assert paid.changes == {"status": ["pending", "paid"]}
    assert expired.additional_data == {"api_token": MASK, "note": 'it\'s \\ "x"'}
    assert expired.content_type_id is None and expired.changes is None
    assert fulfilled.actor_id is None and fulfilled.actor_name == "system"


def test_record_many_checks_every_event_before_writing_any(db):
    with pytest.raises(AuditWriteError, match="audit event name 'Bad Name' is invalid"):
        record_many([Event("order.paid"), Event("Bad Name")])
    assert not AuditEntry.objects.filter(event="order.paid").exists()
    assert record_many([]) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"event": "Ticket Created"}, "audit event name 'Ticket Created' is invalid"),
        ({"event": "ticket"}, "audit event name 'ticket' is invalid"),
        ({"event": "ticket." + "x" * 100}, "is invalid"),
        ({"event": "x.y", "changes": ["status"]}, "audit changes must be a mapping"),
        (
            {"event": "x.y", "changes": {"status": "open"}},
            "audit changes: 'status' must be [old, new]",
        ),
        ({"event": "x.y", "changes": {"": [1, 2]}}, "field names must be non-empty strings"),
        ({"event": "x.y", "data": "text"}, "audit data must be a mapping"),
        ({"event": "x.y", "data": {"f": object()}}, "audit data cannot be stored as JSON"),
        ({"event": "x.y", "data": {"f": float("nan")}}, "audit data cannot be stored as JSON"),
        ({"event": "x.y", "data": {"big": "x" * 300_000}}, "the limit is 262144"),
        (
            {"event": "x.y", "target": "ticket 4"},
            "audit target must be a model instance or None, got str",
        ),
    ],
)
def test_bad_input_is_refused_with_a_message_naming_it(db, kwargs, message):
    event = kwargs.pop("event")
    with pytest.raises(AuditWriteError) as caught:
        record(event, **kwargs)
    assert message in str(caught.value)
    assert not AuditEntry.objects.filter(event=event).exists()


def test_an_unsaved_target_is_refused(db):
    with pytest.raises(AuditWriteError, match="has no primary key: save it before recording"):
        record("user.viewed", target=get_user_model()(username="ghost"))


def test_an_entry_rolls_back_with_its_action(agent):
    with pytest.raises(RuntimeError), transaction.atomic():
        record("ticket.created", target=agent)
        raise RuntimeError("the action failed")
    assert not entries("ticket.created").exists()


# --- an audit write that fails fails its action -------------------------------------------


@pytest.fixture
def failing_audit_inserts():
    """The database refuses audit entries, as a full disk or a revoked privilege would. Needs
    the db or transactional_db fixture first; removed again afterwards either way."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'audit storage unavailable'; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_auditentry "
            "FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER IF EXISTS refuse_audit ON audit_auditentry")
        cursor.execute("DROP FUNCTION IF EXISTS refuse_audit()")


def test_an_action_fails_when_its_audit_entry_cannot_be_written(agent, failing_audit_inserts):
    with pytest.raises(DatabaseError, match="audit storage unavailable"):
        console_services.create_api_token(actor=agent, user=agent, name="ci")
    assert not ApiToken.objects.filter(user=agent).exists()


def test_a_model_change_fails_when_its_diff_cannot_be_written(agent, failing_audit_inserts):
    agent.first_name = "Changed"
    with pytest.raises(DatabaseError, match="audit storage unavailable"), transaction.atomic():
        agent.save()
    agent.refresh_from_db()
    assert agent.first_name == "Sam"


@pytest.fixture
def signin_agent(transactional_db):
    user = StaffFactory(username="sam", role=roles.SUPPORT_AGENT)
    user.set_password("a-long-enough-pass-phrase")
    user.save()
    return user


def test_a_sign_in_fails_when_its_audit_entry_cannot_be_written(
    signin_agent, failing_audit_inserts
):
    """As in production, outside any test transaction: the login is not kept."""
    client = Client(raise_request_exception=False)
    response = client.post(
        "/accounts/login/", {"username": "sam", "password": "a-long-enough-pass-phrase"}
    )
    assert response.status_code == 500
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302  # still signed out


# --- model diffs through django-auditlog ------------------------------------------------------


def test_user_changes_are_diffed_with_the_password_masked(agent, lead):
    with audit_context(actor=lead, request_id="req-7"):
        agent.first_name = "Samuel"
        agent.set_password("another-long-pass-phrase")
        agent.save()
    entry = entries("auth.user.updated").last()
    assert entry.changes["first_name"] == ["Sam", "Samuel"]
    assert entry.changes["password"] == [MASK, MASK]
    assert "another" not in str(entry.changes)
    assert (entry.actor_id, entry.cid, entry.action) == (lead.pk, "req-7", AuditEntry.Action.UPDATE)
    assert entry.object_pk == str(agent.pk)


def test_sign_in_does_not_write_a_last_login_diff(agent):
    before = entries("auth.user.updated").count()
    client = Client()
    client.force_login(agent)
    assert entries("auth.user.updated").count() == before


def test_role_membership_changes_are_recorded(agent):
    group = Group.objects.create(name="Auditors")
    agent.groups.add(group)
    entry = entries("auth.user.updated").last()
    assert entry.changes == {"groups": {"type": "m2m", "operation": "add", "objects": ["Auditors"]}}
    assert entries("auth.group.created").filter(object_pk=str(group.pk)).exists()


def test_token_hashes_never_enter_the_trail(agent):
    token, raw = console_services.create_api_token(actor=agent, user=agent, name="ci")
    created = entries("adminsite.apitoken.created").get()
    assert created.changes["token_hash"] == [MASK, MASK]
    assert token.token_hash not in str(created.changes) and raw not in str(created.changes)
    event = entries("api_token.created").get()
    assert event.actor_id == agent.pk and event.additional_data["prefix"] == raw[:12]
    console_services.revoke_api_token(actor=agent, token=token)
    assert entries("api_token.revoked").get().object_pk == str(token.pk)


# --- sign-in, sign-out and access events ----------------------------------------------------


def test_sign_in_success_failure_and_sign_out_are_recorded(agent):
    agent.set_password("a-long-enough-pass-phrase")
    agent.save()
    client = Client(HTTP_USER_AGENT="pytest-browser", REMOTE_ADDR="192.0.2.10")

    client.post("/accounts/login/", {"username": "sam", "password": "wrong"})
    failed = entries("auth.login_failed").get()
    assert failed.actor_id is None and failed.actor_name == "anonymous"
    assert failed.additional_data == {"username": "sam"}
    assert (failed.remote_addr, failed.user_agent) == ("192.0.2.10", "pytest-browser")
    assert "wrong" not in str(failed.additional_data)

    response = client.post(
        "/accounts/login/", {"username": "sam", "password": "a-long-enough-pass-phrase"}
    )
    assert response.status_code == 302
    login = entries("auth.login").get()
    assert (login.actor_id, login.object_pk, login.remote_addr) == (
        agent.pk,
        str(agent.pk),
        "192.0.2.10",
    )
    assert login.cid == response["X-Request-ID"]

    client.post("/accounts/logout/")
    logout = entries("auth.logout").get()
    assert logout.actor_id == agent.pk


def test_the_client_ip_comes_through_trusted_proxies_only(agent, settings):
    client = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.20")
    client.post("/accounts/login/", {"username": "sam", "password": "wrong"})
    settings.TRUSTED_PROXY_COUNT = 1
    client.post("/accounts/login/", {"username": "sam", "password": "wrong"})
    settings.TRUSTED_PROXY_COUNT = 2
    client.post("/accounts/login/", {"username": "sam", "password": "wrong"})
    settings.TRUSTED_PROXY_COUNT = 3  # more proxies than the header names: the socket address
    client.post("/accounts/login/", {"username": "sam", "password": "wrong"})
    assert [e.remote_addr for e in entries("auth.login_failed")] == [
        "10.0.0.2",
        "198.51.100.20",
        "6.6.6.6",
        "10.0.0.2",
    ]


def test_record_access_writes_a_customer_viewed_event(agent, customer):
    with audit_context(actor=agent):
        entry = record_access(customer=customer, what="context_panel", data={"ticket": 12})
    assert entry.event == "customer.viewed"
    assert (entry.actor_id, entry.object_pk) == (agent.pk, str(customer.pk))
    assert entry.additional_data == {"what": "context_panel", "ticket": 12}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"customer": None, "what": "panel"}, "record_access needs a saved customer"),
        ({"what": ""}, "record_access needs 'what'"),
        ({"what": "x" * 101}, "record_access needs 'what'"),
    ],
)
def test_record_access_refuses_bad_input(customer, kwargs, message):
    kwargs.setdefault("customer", customer)
    with pytest.raises(AuditWriteError, match=message):
        record_access(**kwargs)


def test_the_middleware_takes_the_impersonator_from_the_hijack_session(admin_user, customer):
    """django-hijack keeps who started impersonating in the session; the request's entries
    name them (the impersonation module may also set them explicitly via audit_context)."""
    from django.contrib.sessions.backends.db import SessionStore
    from django.test import RequestFactory

    from audit.middleware import AuditContextMiddleware

    request = RequestFactory().post(
        "/anything", REMOTE_ADDR="192.0.2.44", HTTP_USER_AGENT="Hijacked/1.0"
    )
    request.user = customer
    request.session = SessionStore()
    request.session["hijack_history"] = [str(admin_user.pk)]
    request.request_id = "req-hijack"
    recorded = []
    AuditContextMiddleware(lambda req: recorded.append(record("ticket.updated")))(request)
    entry = recorded[0]
    assert (entry.actor_id, entry.actor_name) == (customer.pk, "Carol Customer (carol)")
    assert (entry.impersonator_id, entry.impersonator_name) == (admin_user.pk, "Ada Admin (ada)")
    assert (entry.remote_addr, entry.user_agent, entry.cid, entry.source) == (
        "192.0.2.44",
        "Hijacked/1.0",
        "req-hijack",
        "web",
    )
    assert context.current().request_id is None  # the request's context ended with it
