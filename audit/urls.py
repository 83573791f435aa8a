from django.urls import path

from audit import views

app_name = "audit"

urlpatterns = [
    path("", views.entry_list, name="list"),
    path("<int:entry_id>/", views.entry_detail, name="detail"),
    path("export.<str:fmt>", views.export, name="export"),
]
