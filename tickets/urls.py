"""Console pages of the support module, included under ``admin/support/``."""

from django.urls import path

from tickets import manage_views, sla_views, views

app_name = "tickets"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("bulk/", views.bulk, name="bulk"),
    path("views/", views.save_view, name="save-view"),
    path("views/<int:pk>/delete/", views.delete_view, name="delete-view"),
    path("<int:pk>/", views.ticket_detail, name="ticket"),
    path("<int:pk>/comments/", views.add_comment, name="comment"),
    path("<int:pk>/assign/", views.assign, name="assign"),
    path("<int:pk>/status/", views.change_status, name="status"),
    path("<int:pk>/update/", views.update, name="update"),
    path("<int:pk>/customer-tier/", views.customer_tier, name="customer-tier"),
    path("<int:pk>/presence/", views.ticket_presence, name="presence"),
    # SLA engine and automatic assignment (tickets/sla_views.py).
    path("sla/", sla_views.sla_report, name="sla-report"),
    path("sla/policies/", sla_views.policies, name="sla-policies"),
    path("sla/policies/<int:pk>/", sla_views.policy_edit, name="sla-policy"),
    path("sla/policies/<int:pk>/delete/", sla_views.policy_delete, name="sla-policy-delete"),
    path("sla/calendars/", sla_views.calendars, name="sla-calendars"),
    path("sla/calendars/<int:pk>/", sla_views.calendar_edit, name="sla-calendar"),
    path("sla/calendars/<int:pk>/holidays/", sla_views.calendar_holiday, name="sla-holiday"),
    path(
        "sla/calendars/<int:pk>/holidays/<int:holiday_pk>/delete/",
        sla_views.calendar_holiday_delete,
        name="sla-holiday-delete",
    ),
    path("agents/", sla_views.agents, name="agents"),
    path("agents/<int:pk>/", sla_views.agent_update, name="agent"),
    path("agents/routing/", sla_views.routing, name="routing"),
    path("agents/teams/", sla_views.team_create, name="teams"),
    path("agents/teams/<int:pk>/", sla_views.team_members, name="team"),
    path("me/", sla_views.me, name="me"),
    path("me/availability/", sla_views.my_availability, name="my-availability"),
    path("notifications/", sla_views.notifications, name="notifications"),
    path("notifications/read/", sla_views.notifications_read, name="notifications-read"),
    # Merging a duplicate ticket and managing canned replies (tickets/manage_views.py).
    path("<int:pk>/merge/", manage_views.merge, name="merge"),
    path("canned-replies/", manage_views.canned_replies, name="canned-replies"),
    path("canned-replies/<int:pk>/", manage_views.canned_reply_edit, name="canned-reply"),
    path(
        "canned-replies/<int:pk>/delete/",
        manage_views.canned_reply_delete,
        name="canned-reply-delete",
    ),
]
