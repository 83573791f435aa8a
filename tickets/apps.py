from django.apps import AppConfig


class TicketsConfig(AppConfig):
    name = "tickets"
    verbose_name = "Support tickets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from auditlog.registry import auditlog

        from tickets import models

        # Field diffs for the audit trail. Derived columns (kept by PostgreSQL) and the
        # timestamp every save touches would only add noise.
        auditlog.register(
            models.Ticket,
            exclude_fields=["search_vector", "priority_rank", "next_due_at", "updated_at"],
        )
        auditlog.register(models.Comment)
        auditlog.register(models.Category)
        auditlog.register(models.CannedReply)
        # SLA and assignment settings: their services record domain events too; the field
        # diffs cover every change, the model admin's included.
        auditlog.register(models.SLAPolicy)
        auditlog.register(models.BusinessCalendar)
        auditlog.register(models.CustomerProfile)
        auditlog.register(models.SupportTeam)
