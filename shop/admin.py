"""Raw records of the shop in Django's model admin (read-only: changes go through services)."""

from django.contrib import admin

from shop import models


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(models.Product)
class ProductAdmin(ReadOnlyAdmin):
    list_display = ["name", "stripe_id", "source", "active", "deleted", "synced_at"]
    list_filter = ["source", "active", "deleted"]
    search_fields = ["name", "stripe_id"]


@admin.register(models.Price)
class PriceAdmin(ReadOnlyAdmin):
    list_display = [
        "stripe_id",
        "product",
        "unit_amount",
        "currency",
        "recurring_interval",
        "active",
    ]
    list_filter = ["currency", "active", "recurring_interval"]
    search_fields = ["stripe_id", "product__name"]
    list_select_related = ["product"]


@admin.register(models.Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ["id", "customer", "status", "amount_total", "currency", "created_at"]
    list_filter = ["status", "currency"]
    search_fields = ["id", "stripe_checkout_session_id", "stripe_payment_intent_id"]
    list_select_related = ["customer"]


@admin.register(models.Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ["id", "order", "amount", "currency", "status", "stripe_refund_id", "created_at"]
    list_filter = ["status"]


@admin.register(models.WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ["stripe_id", "type", "status", "attempts", "received_at"]
    list_filter = ["status", "type"]
    search_fields = ["stripe_id", "object_id"]


@admin.register(models.CatalogueSync)
class CatalogueSyncAdmin(ReadOnlyAdmin):
    list_display = ["id", "trigger", "status", "started_at", "finished_at"]
