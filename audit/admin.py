"""Raw audit records in Django's model admin: read-only. The viewer at /admin/audit/ is the
page to read the trail with; these stay for completeness of the data admin."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from audit.models import AuditCheckpoint, AuditEntry

# django-auditlog registers its own admin for the log entry model, which is ours. Its list
# searches the JSON changes and draws a date hierarchy: both scan the whole table, which at
# millions of rows is not an admin page. Ours below stays on the indexes.
if admin.site.is_registered(AuditEntry):
    admin.site.unregister(AuditEntry)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # The database refuses anyway (append-only triggers); do not offer it.
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "timestamp", "event", "actor_name", "object_repr", "viewer_link"]
    list_filter = []
    search_fields = ["=event", "=cid"]
    ordering = ["-timestamp", "-id"]
    show_full_result_count = False
    list_per_page = 50
    fields = [
        "timestamp", "event", "action", "source", "actor", "actor_name", "actor_email", "impersonator",
        "impersonator_name", "content_type", "object_pk", "object_repr", "changes", "additional_data",
        "remote_addr", "user_agent", "cid",
    ]  # fmt: skip
    readonly_fields = fields

    @admin.display(description="Viewer")
    def viewer_link(self, obj: AuditEntry) -> str:
        return format_html('<a href="{}">Open</a>', reverse("audit:detail", args=[obj.pk]))


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "kind", "seq", "entry_id", "archive_name"]
    list_filter = ["kind"]
    fields = [
        "created_at",
        "kind",
        "seq",
        "entry_id",
        "hash_hex",
        "archive_name",
        "archive_sha256",
        "signature",
    ]
    readonly_fields = fields

    @admin.display(description="Hash")
    def hash_hex(self, obj: AuditCheckpoint) -> str:
        return bytes(obj.hash).hex()
