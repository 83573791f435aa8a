"""URL map. The paths are contracts (DESIGN.md): change none of them."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from adminsite import api_views, views
from monitoring import views as monitoring_views
from shop import views as shop_views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("healthz/", views.healthz),
    path("readyz", views.readyz, name="readyz"),
    path("readyz/", views.readyz),
    # Prometheus scrape endpoint (Bearer token of a user with monitoring.view_metric).
    path("metrics", monitoring_views.metrics_exposition, name="metrics"),
    path("accounts/", include("adminsite.accounts_urls")),
    path("help/tickets/", include("tickets.help_urls")),
    path("shop/", include("shop.customer_urls")),
    # Stripe's deliveries (signature-verified, CSRF-exempt), with or without a trailing slash.
    re_path(r"^stripe/webhook/?$", shop_views.stripe_webhook, name="stripe-webhook"),
    # Console pages (each app adds its own include here, before the model admin).
    path("admin/audit/", include("audit.urls")),
    path("admin/support/", include("tickets.urls")),
    path("admin/impersonation/", include("impersonation.urls")),
    path("admin/monitoring/", include("monitoring.urls")),
    path("admin/shop/", include("shop.urls")),
    path("admin/jobs/", include("adminsite.jobs_urls")),
    path("admin/", admin.site.urls),
    # JSON API: every route matches with and without a trailing slash (re_path "/?$").
    re_path(r"^api/admin/me/?$", api_views.me, name="api-me"),
    path("api/admin/support/", include("tickets.urls_api")),
    path("api/admin/monitoring/", include("monitoring.urls_api")),
    re_path(r"^api/schema/?$", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script from this same URL (?script), so the
    # CSP needs no inline script.
    re_path(
        r"^api/docs/?$", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"
    ),
]
