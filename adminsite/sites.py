"""The staff console's AdminSite: Django's model admin stays under /admin/, with our dashboard
as its index and our login page."""

from __future__ import annotations

from django.contrib import admin
from django.template.response import TemplateResponse


class ConsoleAdminSite(admin.AdminSite):
    site_header = "Adminsite"
    site_title = "Adminsite"
    index_title = "Dashboard"
    index_template = "adminsite/dashboard.html"
    login_template = "adminsite/login.html"
    enable_nav_sidebar = True

    def index(self, request, extra_context=None):
        from adminsite.dashboard import dashboard_context

        context = {**self.each_context(request), **dashboard_context(request), **(extra_context or {})}
        request.current_app = self.name
        return TemplateResponse(request, self.index_template, context)

    def data_admin(self, request, extra_context=None):
        """Django's own model index, kept one click away from the dashboard."""
        return super().index(request, extra_context)

    def get_urls(self):
        from django.urls import path

        urls = super().get_urls()
        return [path("data/", self.admin_view(self.data_admin), name="data")] + urls
