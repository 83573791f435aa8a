"""URL map. The paths are contracts (DESIGN.md): change none of them."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from adminsite import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("healthz/", views.healthz),
    path("readyz", views.readyz, name="readyz"),
    path("readyz/", views.readyz),
    path("accounts/", include("adminsite.accounts_urls")),
    # Console pages (each app adds its own include here, before the model admin).
    path("admin/", admin.site.urls),
    # JSON API
    re_path(r"^api/schema/?$", SpectacularAPIView.as_view(), name="api-schema"),
    re_path(r"^api/docs/?$", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("hijack/", include("hijack.urls")),
]
