from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from auditlog.registry import auditlog

        from monitoring import models

        # Field diffs of rule and silence changes for the audit trail; the evaluation's
        # bookkeeping columns would only add noise (they are written with update(), too).
        auditlog.register(
            models.AlertRule,
            exclude_fields=[
                "last_evaluated_at",
                "last_value",
                "last_error",
                "last_error_at",
                "updated_at",
            ],
        )
        auditlog.register(models.Silence)
