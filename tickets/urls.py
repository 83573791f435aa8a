"""Console pages of the support module, included under ``admin/support/``."""

from django.urls import path

from tickets import views

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
    path("<int:pk>/presence/", views.ticket_presence, name="presence"),
]
