"""The impersonation console, included at ``admin/impersonation/`` (before the model admin).
``start`` and ``stop`` are contracts (DESIGN.md), answered with or without a trailing slash."""

from django.urls import path, re_path

from impersonation import views

app_name = "impersonation"

urlpatterns = [
    path("", views.session_list, name="list"),
    re_path(r"^start/?$", views.start, name="start"),
    re_path(r"^stop/?$", views.stop, name="stop"),
    path("<int:session_id>/", views.session_detail, name="detail"),
    path("<int:session_id>/end", views.end, name="end"),
]
