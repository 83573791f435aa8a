from __future__ import annotations

from django.contrib import admin, messages

from adminsite import services
from adminsite.models import ApiToken


class RevokedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are listed and revoked here, never made or edited: ``create_api_token`` (or the
    service) makes them and shows the raw token once; the stored hash is never displayed."""

    list_display = ["prefix", "user", "name", "created_at", "last_used_at", "revoked"]
    list_select_related = ["user"]
    list_filter = [RevokedFilter]
    search_fields = ["prefix", "name", "user__username", "user__email"]
    fields = ["user", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    actions = ["revoke_selected"]
    date_hierarchy = "created_at"

    @admin.display(boolean=True, description="Revoked", ordering="revoked_at")
    def revoked(self, obj: ApiToken) -> bool:
        return obj.revoked_at is not None

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # Read-only detail page; revocation goes through the action (and the service).
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Revoked rows stay, so the record of who held which token survives.
        return False

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm("adminsite.change_apitoken")

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke_selected(self, request, queryset):
        active = list(queryset.filter(revoked_at__isnull=True).order_by("pk"))
        for token in active:
            services.revoke_api_token(actor=request.user, token=token)
        skipped = queryset.count() - len(active)
        message = f"Revoked {len(active)} token(s)."
        if skipped:
            message += f" {skipped} already revoked."
        self.message_user(request, message, messages.SUCCESS)
