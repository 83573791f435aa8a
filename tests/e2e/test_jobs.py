"""The background jobs console in Chromium, with a real worker: the jobs page, a job's page,
"run now" making a new run appear without a reload, and the dashboard's Jobs and Audit panels."""

from __future__ import annotations

import pytest

from adminsite.models import JobRun
from tests.factories import PASSWORD, StaffFactory
from tests.processes import wait_until
from tests.roles import STAFF_ROLE_NAMES

pytestmark = pytest.mark.django_db(transaction=True)

PURGE = "adminsite.purge_job_runs"


def test_run_now_shows_the_new_run(browsing, screenshot, celery_worker):
    from adminsite import health
    from adminsite.tasks import heartbeat

    user = StaffFactory(
        username="ops-jobs-e2e", role=STAFF_ROLE_NAMES["ops"], first_name="Noor", last_name="Haddad"
    )
    heartbeat.apply()  # a worker heartbeat on the page, as beat makes every 30 s
    assert health.worker_heartbeats()
    session = browsing()
    page = session.login(user.username, PASSWORD)

    page.goto("/admin/jobs/")
    row = page.locator(f'tr[data-job="{PURGE}"]')
    assert row.locator("td").nth(1).inner_text() == "Daily"
    assert page.get_by_test_id("workers").locator("li[data-worker]").count() >= 1
    screenshot(page, "jobs-ops")

    row.get_by_role("link", name=PURGE).click()
    page.wait_for_url(f"**/admin/jobs/{PURGE}/")
    assert page.locator("[data-run]").count() == 0
    page.get_by_test_id("run-now").get_by_role("button", name="Run now").click()
    page.wait_for_url(f"**/admin/jobs/{PURGE}/")
    assert "was queued" in page.locator(".messages").inner_text()

    # The worker runs it; the runs table refreshes itself every few seconds.
    run = wait_until(
        lambda: JobRun.objects.filter(task_name=PURGE, outcome="success").first(),
        timeout=30,
        what="the worker to run the job",
    )
    new_row = page.locator(f'tr[data-run="{run.pk}"]')
    # The row may first show while the run is still going: its outcome follows at a refresh.
    new_row.locator('[data-outcome="success"]').wait_for(timeout=15_000)
    assert "Noor Haddad" in new_row.inner_text()
    screenshot(page, "job-run-now")

    page.goto("/admin/")
    assert page.locator("#panel-jobs").is_visible()
    assert page.locator("#panel-audit").count() == 0  # Ops do not read the audit trail
    screenshot(page, "dashboard-ops-jobs-panel")


def test_a_failing_job_on_its_page_and_on_the_dashboard(browsing, screenshot):
    from tests.adminsite.jobs_tasks import failing_job, forget

    forget()
    admin = StaffFactory(username="admin-jobs-e2e", role=STAFF_ROLE_NAMES["admin"])
    for reason in ("connection refused", "connection refused", "timed out"):
        failing_job.apply(args=[reason])
    session = browsing()
    page = session.login(admin.username, PASSWORD)

    panel = page.locator("#panel-jobs")
    assert "1 failing" in panel.get_by_test_id("jobs-failing-count").inner_text()
    assert "3 failures in a row" in panel.locator('[data-job="tests.jobs.fail"]').inner_text()
    assert page.locator("#panel-audit [data-entry]").count() >= 1
    screenshot(page, "dashboard-admin-failing-job")

    panel.get_by_role("link", name="tests.jobs.fail").click()
    page.wait_for_url("**/admin/jobs/tests.jobs.fail/")
    assert page.get_by_test_id("failure-streak").inner_text().startswith("3")
    assert page.locator("[data-error-for]").count() == 3
    page.locator("details.jobs-traceback summary").first.click()
    assert (
        "raise JobBoomError(reason)"
        in page.locator("details.jobs-traceback pre").first.inner_text()
    )
    screenshot(page, "job-failing")
    forget()
