"""The staff console's AdminSite: Django's model admin stays under /admin/ (its index at
/admin/data/), with our dashboard as the site's index and our login page."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import path
from django.views.decorators.http import require_GET

from adminsite.decorators import staff_required


class ConsoleAdminSite(admin.AdminSite):
    site_header = "Adminsite"
    site_title = "Adminsite"
    index_title = "Dashboard"
    index_template = "adminsite/dashboard.html"
    login_template = "adminsite/login.html"
    enable_nav_sidebar = True

    def index(self, request, extra_context=None):
        from adminsite.dashboard import dashboard_context

        context = {
            "title": self.index_title,
            **dashboard_context(request),
            **(extra_context or {}),
        }
        request.current_app = self.name
        return TemplateResponse(request, self.index_template, context)

    def data_admin(self, request, extra_context=None):
        """Django's own model index, kept one click away from the dashboard."""
        context = {
            **self.each_context(request),
            "title": "Data admin",
            "subtitle": None,
            "app_list": self.get_app_list(request),
            **(extra_context or {}),
        }
        request.current_app = self.name
        return TemplateResponse(request, "admin/index.html", context)

    def get_urls(self):
        urls = super().get_urls()
        return [
            path("data/", self.admin_view(self.data_admin), name="data"),
            path("panels/<slug:key>/", panel_view, name="panel"),
            *urls,
        ]


@require_GET
@staff_required
def panel_view(request, key):
    """One dashboard panel, rendered alone: what the dashboard's htmx refresh swaps in."""
    from adminsite.dashboard import get_panel, may_see, render_panel

    panel = get_panel(key)
    if panel is None:
        raise Http404(f"There is no dashboard panel named {key!r}.")
    if not may_see(request.user, panel):
        raise PermissionDenied(f"The {panel.title} panel needs the {panel.permission} permission.")
    return TemplateResponse(
        request, "adminsite/dashboard.html#panel", {"panel": render_panel(request, panel)}
    )
