"""The background jobs console, included at ``admin/jobs/`` (before the model admin)."""

from django.urls import path

from adminsite import jobs_views

app_name = "jobs"

urlpatterns = [
    path("", jobs_views.job_list, name="list"),
    path("<str:name>/", jobs_views.job_detail, name="detail"),
    path("<str:name>/run", jobs_views.run_now, name="run"),
]
