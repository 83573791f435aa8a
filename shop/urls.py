"""The shop console, included at ``admin/shop/`` (before the model admin)."""

from django.urls import path

from shop import views

app_name = "shop"

urlpatterns = [
    path("", views.order_list, name="orders"),
    path("orders/<int:pk>/", views.order_detail, name="order"),
    path("orders/<int:pk>/refund", views.refund, name="refund"),
    path("orders/<int:pk>/fulfil", views.fulfil, name="fulfil"),
    path("catalogue/", views.catalogue, name="catalogue"),
    path("catalogue/sync", views.sync_now, name="sync"),
    path("webhooks/", views.webhooks, name="webhooks"),
    path("webhooks/<int:pk>/reprocess", views.reprocess, name="reprocess"),
]
