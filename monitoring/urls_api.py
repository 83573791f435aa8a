"""Monitoring API routes, included under ``api/admin/monitoring/``; with or without the slash."""

from django.urls import re_path

from monitoring import api

urlpatterns = [
    re_path(r"^metrics/?$", api.ingest_metrics, name="api-monitoring-metrics"),
]
