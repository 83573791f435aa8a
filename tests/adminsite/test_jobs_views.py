"""The jobs console: /admin/jobs/, a job's page, "run now", and their query counts."""

from __future__ import annotations

import re

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext

from adminsite.celery import app
from adminsite.models import JobRun
from audit.models import AuditEntry
from tests.adminsite.jobs_tasks import failing_job, forget
from tests.factories import StaffFactory
from tests.roles import STAFF_ROLE_NAMES, assert_access_matrix

pytestmark = pytest.mark.django_db

PURGE = "adminsite.purge_job_runs"  # daily, not sampled: every run is recorded


@pytest.fixture
def ops(db):
    return StaffFactory(
        username="ops-jobs", role=STAFF_ROLE_NAMES["ops"], first_name="Olu", last_name="Ade"
    )


def run_purge(times: int = 1) -> None:
    from adminsite.tasks import purge_job_runs

    for _ in range(times):
        purge_job_runs.apply()


def html(response) -> str:
    return response.content.decode()


def test_the_list_shows_every_periodic_job_with_schedule_and_last_run(client, ops):
    run_purge()
    client.force_login(ops)
    response = client.get("/admin/jobs/")
    assert response.status_code == 200
    page = html(response)
    for entry in app.conf.beat_schedule.values():
        assert f'data-job="{entry["task"]}"' in page
    row = re.search(r'<tr data-job="adminsite.purge_job_runs".*?</tr>', page, re.S).group(0)
    assert "Daily" in row
    assert 'data-outcome="success"' in row
    assert "<polyline" in row  # the duration trend
    assert "Run now" in row
    flush_row = re.search(r'<tr data-job="monitoring.flush_metrics".*?</tr>', page, re.S).group(0)
    assert "Every 2 seconds" in flush_row
    assert 'data-testid="workers"' in page and "Queue depth" in page
    assert 'data-job="tickets.send_reply_email"' in page  # on-demand tasks listed apart


def test_the_list_refreshes_as_a_partial(client, ops):
    client.force_login(ops)
    response = client.get("/admin/jobs/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    page = html(response)
    assert page.lstrip().startswith('<div id="live"')
    assert "<html" not in page


def test_the_list_runs_a_fixed_number_of_queries(client, ops, django_assert_max_num_queries):
    client.force_login(ops)
    client.get("/admin/jobs/")
    with CaptureQueriesContext(connection) as few:
        client.get("/admin/jobs/")
    baseline = len(few)
    assert baseline <= 8
    run_purge(30)
    from adminsite.tasks import heartbeat

    heartbeat.apply()
    with django_assert_max_num_queries(baseline):
        response = client.get("/admin/jobs/", headers={"HX-Request": "true"})
    assert response.status_code == 200


def test_ops_without_run_permission_see_no_run_button(client):
    from django.contrib.auth.models import Permission

    viewer = StaffFactory(username="viewer-jobs", role=STAFF_ROLE_NAMES["agent"])
    viewer.user_permissions.add(Permission.objects.get(codename="view_jobs"))
    client.force_login(viewer)
    page = html(client.get("/admin/jobs/"))
    assert "Run now" not in page
    assert client.post(f"/admin/jobs/{PURGE}/run").status_code == 403


def test_a_jobs_page_lists_its_runs_with_tracebacks(client, ops, django_assert_max_num_queries):
    run_purge(2)
    client.force_login(ops)
    response = client.get(f"/admin/jobs/{PURGE}/")
    assert response.status_code == 200
    page = html(response)
    assert page.count("data-run=") == 2
    assert "Daily" in page and 'data-testid="run-now"' in page

    client.get(f"/admin/jobs/{PURGE}/")
    with CaptureQueriesContext(connection) as few:
        client.get(f"/admin/jobs/{PURGE}/")
    baseline = len(few)
    run_purge(60)
    with django_assert_max_num_queries(baseline):
        response = client.get(f"/admin/jobs/{PURGE}/")
    page = html(response)
    assert page.count("data-run=") == 50
    older = re.search(r'href="\?before=(\d+)"', page).group(1)
    second = client.get(f"/admin/jobs/{PURGE}/?before={older}")
    assert html(second).count("data-run=") == 12
    assert "Newest runs" in html(second)


def test_a_failed_run_shows_its_error_and_traceback(client, ops):
    forget()
    result = failing_job.apply(args=["mailbox quota exceeded"])
    run = JobRun.objects.get(task_id=result.id)
    assert run.outcome == "failure"
    client.force_login(ops)
    page = html(client.get("/admin/jobs/tests.jobs.fail/"))
    assert f'data-error-for="{run.pk}"' in page
    assert "JobBoomError: mailbox quota exceeded" in page
    assert "<summary>Traceback</summary>" in page and "raise JobBoomError(reason)" in page
    assert "&#x27;mailbox quota exceeded&#x27;" in page  # the arguments summary
    page = html(client.get("/admin/jobs/tests.jobs.fail/?outcome=success"))
    assert "data-run=" not in page and "No runs recorded" in page
    forget()


def test_bad_filters_are_named_and_unknown_jobs_are_404(client, ops):
    client.force_login(ops)
    response = client.get(f"/admin/jobs/{PURGE}/?outcome=exploded")
    assert response.status_code == 400
    assert "Outcome &#x27;exploded&#x27; is not one of" in html(response)
    response = client.get(f"/admin/jobs/{PURGE}/?before=abc")
    assert response.status_code == 400
    assert "is not a run of this job" in html(response)
    assert client.get("/admin/jobs/no.such.job/").status_code == 404
    assert client.post("/admin/jobs/no.such.job/run").status_code == 404
    assert client.get(f"/admin/jobs/{PURGE}/?outcome=failure").status_code == 200


def test_run_now_queues_the_job_and_audits_it(client, ops, django_capture_on_commit_callbacks):
    client.force_login(ops)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(f"/admin/jobs/{PURGE}/run")
    assert response.status_code == 303
    assert response["Location"] == f"/admin/jobs/{PURGE}/"
    assert len(callbacks) == 1  # sent to the broker only once the audit entry commits
    entry = AuditEntry.objects.get(event="job.run_requested")
    assert entry.actor_id == ops.pk
    assert entry.additional_data["task"] == PURGE
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert message.startswith(f"{PURGE} was queued (task {entry.additional_data['task_id'][:8]})")


def test_run_now_refuses_on_demand_tasks(client, ops):
    client.force_login(ops)
    response = client.post("/admin/jobs/tickets.send_reply_email/run")
    assert response.status_code == 303
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert "runs on demand only" in message
    assert not AuditEntry.objects.filter(event="job.run_requested").exists()
    assert client.get("/admin/jobs/tickets.send_reply_email/run").status_code == 405


def test_role_matrix_for_a_jobs_page(client):
    run_purge()
    assert_access_matrix(client, f"/admin/jobs/{PURGE}/", allowed={"admin", "ops"})


# --- the dashboard's Jobs and Audit panels ----------------------------------------------------


@pytest.mark.parametrize(
    ("role", "jobs_panel", "audit_panel"),
    [("admin", True, True), ("ops", True, False), ("lead", False, True), ("agent", False, False)],
)
def test_each_role_sees_the_panels_it_may_open(client, role, jobs_panel, audit_panel):
    user = StaffFactory(username=f"{role}-panels", role=STAFF_ROLE_NAMES[role])
    client.force_login(user)
    page = html(client.get("/admin/"))
    assert ('id="panel-jobs"' in page) is jobs_panel
    assert ('id="panel-audit"' in page) is audit_panel
    if jobs_panel:
        assert 'href="/admin/jobs/"' in page
    if audit_panel:
        assert 'href="/admin/audit/"' in page


def test_the_jobs_panel_lists_failing_jobs_worst_first(client, ops, django_assert_max_num_queries):
    forget()
    client.force_login(ops)
    page = html(client.get("/admin/panels/jobs/"))
    assert 'data-testid="jobs-panel-ok"' in page
    for _ in range(2):
        failing_job.apply()
    with django_assert_max_num_queries(8):
        page = html(client.get("/admin/panels/jobs/", headers={"HX-Request": "true"}))
    assert 'data-testid="jobs-failing-count">1 failing' in page
    item = re.search(r'<li data-job="tests.jobs.fail">.*?</li>', page, re.S).group(0)
    assert "2 failures in a row" in item and "2 in 24 h" in item
    assert 'href="/admin/jobs/tests.jobs.fail/"' in item
    forget()


def test_the_audit_panel_shows_the_newest_entries(client, django_assert_max_num_queries):
    lead = StaffFactory(username="lead-audit-panel", role=STAFF_ROLE_NAMES["lead"])
    client.force_login(lead)  # itself an audit entry: auth.login
    with django_assert_max_num_queries(6):
        page = html(client.get("/admin/panels/audit/"))
    newest = AuditEntry.objects.order_by("-timestamp", "-id").first()
    assert f'<li data-entry="{newest.pk}">' in page
    assert f'href="/admin/audit/{newest.pk}/"' in page
    assert page.count("<li data-entry=") <= 6
