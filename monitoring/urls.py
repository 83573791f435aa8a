"""The monitoring console, included at ``admin/monitoring/`` (before the model admin)."""

from django.urls import path

from monitoring import views

app_name = "monitoring"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("explorer/", views.explorer, name="explorer"),
]
