"""Monitoring API routes, included under ``api/admin/monitoring/``; with or without the slash."""

from django.urls import re_path

from monitoring import api

urlpatterns = [
    re_path(r"^metrics/?$", api.ingest_metrics, name="api-monitoring-metrics"),
    re_path(r"^alerts/?$", api.alerts_collection, name="api-monitoring-alerts"),
    re_path(
        r"^alerts/(?P<pk>[0-9]{1,18})/resolve/?$",
        api.alert_resolve,
        name="api-monitoring-alert-resolve",
    ),
    re_path(
        r"^alerts/(?P<pk>[0-9]{1,18})/acknowledge/?$",
        api.alert_acknowledge,
        name="api-monitoring-alert-acknowledge",
    ),
    re_path(r"^rules/?$", api.rules_collection, name="api-monitoring-rules"),
    re_path(r"^rules/(?P<pk>[0-9]{1,18})/?$", api.rule_detail, name="api-monitoring-rule"),
]
