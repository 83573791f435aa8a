"""The monitoring console, included at ``admin/monitoring/`` (before the model admin)."""

from django.urls import path

from monitoring import views

app_name = "monitoring"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("explorer/", views.explorer, name="explorer"),
    path("active-alerts/", views.active_alerts_panel, name="active-alerts"),
    path("rules/", views.rule_list, name="rules"),
    path("rules/new/", views.rule_create, name="rule-create"),
    path("rules/preview/", views.rule_preview, name="rule-preview"),
    path("rules/<int:pk>/", views.rule_edit, name="rule-edit"),
    path("rules/<int:pk>/toggle/", views.rule_toggle, name="rule-toggle"),
    path("rules/<int:pk>/duplicate/", views.rule_duplicate, name="rule-duplicate"),
    path("rules/<int:pk>/delete/", views.rule_delete, name="rule-delete"),
    path("alerts/", views.alert_list, name="alerts"),
    path("alerts/<int:pk>/", views.alert_detail, name="alert"),
    path("alerts/<int:pk>/resolve/", views.alert_resolve, name="alert-resolve"),
    path("alerts/<int:pk>/acknowledge/", views.alert_acknowledge, name="alert-acknowledge"),
    path("silences/", views.silence_list, name="silences"),
    path("silences/new/", views.silence_create, name="silence-create"),
    path("silences/<int:pk>/end/", views.silence_end, name="silence-end"),
]
