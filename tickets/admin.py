"""Django admin for raw ticket records. Agents work tickets in the console (/admin/support/);
here admins manage reference data (categories, canned replies) and can inspect rows.

Tickets, comments and timeline events are read-only: every change to them goes through
tickets.services so it gets its timeline entry, audit event and emails. Lists of up to a
million rows skip the full count and load related rows in the same query.
"""

from __future__ import annotations

from django.contrib import admin

from tickets import services
from tickets.models import (
    AgentProfile,
    BusinessCalendar,
    CannedReply,
    Category,
    Comment,
    CustomerProfile,
    SavedView,
    SLAPolicy,
    SLATarget,
    SupportTeam,
    Ticket,
    TicketEvent,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "is_active", "position"]
    list_editable = ["is_active", "position"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    fields = ["name", "slug", "description", "is_active", "position"]

    def get_readonly_fields(self, request, obj=None):
        # The slug is the API's name for a category: fixed once tickets use it.
        return ["slug"] if obj is not None else []

    def has_delete_permission(self, request, obj=None) -> bool:
        # Tickets keep their category; retire one with "active" instead.
        return False

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(
                request, obj, form, change
            )  # registered with auditlog: diffs recorded
            return
        created = services.create_category(
            actor=request.user,
            slug=obj.slug,
            name=obj.name,
            description=obj.description,
            position=obj.position,
        )
        obj.pk = created.pk


@admin.register(CannedReply)
class CannedReplyAdmin(admin.ModelAdmin):
    list_display = ["title", "created_by", "updated_at"]
    list_select_related = ["created_by"]
    search_fields = ["title", "body"]
    fields = ["title", "body"]

    def save_model(self, request, obj, form, change):
        if change:
            services.update_canned_reply(
                actor=request.user, reply=obj, title=obj.title, body=obj.body
            )
        else:
            obj.pk = services.create_canned_reply(
                actor=request.user, title=obj.title, body=obj.body
            ).pk

    def delete_model(self, request, obj):
        services.delete_canned_reply(actor=request.user, reply=obj)

    def delete_queryset(self, request, queryset):
        for reply in queryset:
            services.delete_canned_reply(actor=request.user, reply=reply)


@admin.register(Ticket)
class TicketAdmin(ReadOnlyAdmin):
    list_display = [
        "ticket_number",
        "subject",
        "status",
        "priority",
        "category",
        "requester",
        "assignee",
        "created_at",
    ]
    list_select_related = ["category", "requester", "assignee"]
    list_filter = ["status", "priority", "category", "channel", "sla_breached"]
    search_fields = ["=ticket_number", "subject"]
    raw_id_fields = ["requester", "assignee", "merged_into"]
    ordering = ["-created_at", "-id"]
    exclude = ["search_vector"]


@admin.register(Comment)
class CommentAdmin(ReadOnlyAdmin):
    list_display = ["id", "ticket", "author", "is_internal", "created_at"]
    list_select_related = ["ticket", "author"]
    list_filter = ["is_internal"]
    search_fields = ["=ticket__ticket_number"]
    raw_id_fields = ["ticket", "author", "parent", "merged_from"]
    ordering = ["-created_at", "-id"]


@admin.register(TicketEvent)
class TicketEventAdmin(ReadOnlyAdmin):
    list_display = ["ticket", "kind", "from_value", "to_value", "actor", "created_at"]
    list_select_related = ["ticket", "actor"]
    list_filter = ["kind"]
    search_fields = ["=ticket__ticket_number"]
    ordering = ["-created_at", "-id"]


@admin.register(SavedView)
class SavedViewAdmin(ReadOnlyAdmin):
    list_display = ["name", "user", "query_string", "created_at"]
    list_select_related = ["user"]


# --- SLA and assignment: edited in the console (/admin/support/sla/, /admin/support/agents/);
# here customer tiers are set and the SLA records can be inspected.


@admin.register(CustomerProfile)
class CustomerProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "tier", "updated_at"]
    list_select_related = ["user"]
    list_filter = ["tier"]
    search_fields = ["user__username", "user__email"]
    raw_id_fields = ["user"]
    fields = ["user", "tier"]

    def get_readonly_fields(self, request, obj=None):
        return ["user"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        # Through the service: tier rules and the customer.tier_changed audit event.
        profile = services.set_customer_tier(actor=request.user, customer=obj.user, tier=obj.tier)
        obj.pk = profile.pk


@admin.register(SLAPolicy)
class SLAPolicyAdmin(ReadOnlyAdmin):
    list_display = [
        "position",
        "name",
        "priority",
        "category",
        "customer_tier",
        "first_response_minutes",
        "resolution_minutes",
        "calendar",
        "is_active",
    ]
    list_select_related = ["category", "calendar"]
    ordering = ["position", "id"]


@admin.register(BusinessCalendar)
class BusinessCalendarAdmin(ReadOnlyAdmin):
    list_display = ["name", "time_zone", "always_open", "holiday_country", "updated_at"]


@admin.register(SLATarget)
class SLATargetAdmin(ReadOnlyAdmin):
    list_display = [
        "ticket",
        "kind",
        "cycle",
        "policy_name",
        "due_at",
        "outcome",
        "margin_seconds",
        "completed_at",
    ]
    list_select_related = ["ticket"]
    list_filter = ["kind", "outcome", "priority"]
    search_fields = ["=ticket__ticket_number"]
    raw_id_fields = ["ticket", "policy", "assignee"]
    ordering = ["-started_at", "-id"]


@admin.register(SupportTeam)
class SupportTeamAdmin(ReadOnlyAdmin):
    list_display = ["name", "created_at"]


@admin.register(AgentProfile)
class AgentProfileAdmin(ReadOnlyAdmin):
    list_display = ["user", "is_available", "max_open_tickets", "last_assigned_at"]
    list_select_related = ["user"]
