"""The background jobs console: /admin/jobs/ (every job, workers, queue) and a job's page."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from adminsite import jobs, jobs_queries, jobs_services
from adminsite.decorators import permission_required
from adminsite.models import JobRun

VIEW = "adminsite.view_jobs"
RUN = "adminsite.run_jobs"
REFRESH_SECONDS = 10
RUNS_REFRESH_SECONDS = 5


@require_GET
@permission_required(VIEW)
def job_list(request):
    overview = jobs_queries.job_overview()
    context = {
        "periodic": [job for job in overview if job.periodic],
        "on_demand": [job for job in overview if not job.periodic],
        "failing": jobs_queries.failing_jobs(overview),
        "workers": jobs_queries.workers(),
        "queue_depth": jobs_queries.queue_depth(),
        "can_run": request.user.has_perm(RUN),
        "refresh_seconds": REFRESH_SECONDS,
        "frequent_seconds": jobs.FREQUENT_SECONDS,
    }
    template = "adminsite/jobs/list.html"
    if request.htmx:
        template += "#live"
    return TemplateResponse(request, template, context)


def _known_job(name: str) -> jobs_queries.Job:
    job = next((job for job in jobs_queries.job_overview() if job.name == name), None)
    if job is None:
        raise Http404(f"There is no background job named {name[:200]!r}.")
    return job


@require_GET
@permission_required(VIEW)
def job_detail(request, name: str):
    job = _known_job(name)
    outcome = request.GET.get("outcome", "")
    errors = []
    if outcome and outcome not in JobRun.Outcome.values:
        errors.append(
            f"Outcome {outcome[:50]!r} is not one of: {', '.join(JobRun.Outcome.values)}."
        )
        outcome = ""
    before = None
    raw_before = request.GET.get("before", "")
    if raw_before:
        before = (
            JobRun.objects.filter(pk=int(raw_before), task_name=name).first()
            if raw_before.isdigit()
            else None
        )
        if before is None:
            errors.append(f"Run {raw_before[:50]!r} is not a run of this job.")
    runs = jobs_queries.job_runs(name, outcome=outcome, before=before)
    context = {
        "job": job,
        "runs": runs[: jobs_queries.RUNS_PAGE],
        "older": runs[jobs_queries.RUNS_PAGE - 1].pk
        if len(runs) > jobs_queries.RUNS_PAGE
        else None,
        "outcome": outcome,
        "outcomes": JobRun.Outcome.choices,
        "paged": before is not None,
        "errors": errors,
        "can_run": request.user.has_perm(RUN) and job.periodic,
        "refresh_seconds": RUNS_REFRESH_SECONDS,
    }
    template = "adminsite/jobs/detail.html"
    if request.htmx:
        template += "#runs"
    return TemplateResponse(request, template, context, status=400 if errors else 200)


@require_POST
@permission_required(RUN)
def run_now(request, name: str):
    job = _known_job(name)
    if not job.periodic:
        messages.error(request, f"{name} runs on demand only; it cannot be started from here.")
        return _see_job(name)
    task_id = jobs_services.request_run(actor=request.user, task_name=name)
    messages.success(
        request,
        f"{name} was queued (task {task_id[:8]}). Its run appears below as soon as a worker picks it up.",
    )
    return _see_job(name)


def _see_job(name: str):
    # 303: the browser follows a POST's answer with a GET of the job's page.
    response = redirect(reverse("jobs:detail", args=[name]))
    response.status_code = 303
    return response
