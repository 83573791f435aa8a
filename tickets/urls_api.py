"""Ticket API routes, included under ``api/admin/support/``; each matches with and without a
trailing slash."""

from django.urls import re_path

from tickets import api

urlpatterns = [
    re_path(r"^tickets/?$", api.tickets_collection, name="api-tickets"),
    re_path(r"^tickets/(?P<pk>[0-9]+)/?$", api.ticket_detail, name="api-ticket"),
    re_path(
        r"^tickets/(?P<pk>[0-9]+)/comments/?$", api.ticket_comments, name="api-ticket-comments"
    ),
]
