"""Customer help pages, included under ``help/tickets/``."""

from django.urls import path

from tickets import help_views

app_name = "help"

urlpatterns = [
    path("", help_views.ticket_list, name="tickets"),
    path("new/", help_views.new_ticket, name="new"),
    path("<int:pk>/", help_views.ticket_detail, name="ticket"),
    path("<int:pk>/reply/", help_views.reply, name="reply"),
]
