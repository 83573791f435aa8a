"""Read-only model admin for the raw records; the console at /admin/impersonation/ is the
place to work with them. Rows are written by impersonation.services only."""

from django.contrib import admin

from impersonation.models import ImpersonationPageView, ImpersonationSession


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ImpersonationSession)
class ImpersonationSessionAdmin(ReadOnlyAdmin):
    list_display = ("id", "started_at", "impersonator", "customer", "end_reason", "page_count")
    list_filter = ("end_reason",)
    list_select_related = ("impersonator", "customer")
    search_fields = ("impersonator__username", "customer__username", "reason")
    date_hierarchy = "started_at"
    raw_id_fields = ("impersonator", "customer", "ticket", "ended_by")


@admin.register(ImpersonationPageView)
class ImpersonationPageViewAdmin(ReadOnlyAdmin):
    list_display = ("id", "session", "at", "method", "path", "status_code", "blocked")
    list_select_related = ("session__impersonator", "session__customer")
    raw_id_fields = ("session",)
