from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from auditlog.registry import auditlog
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group

        from adminsite.models import ApiToken
        from audit import signals

        signals.connect()
        # Field diffs of the accounts and roles from the start. Secrets are masked whole;
        # last_login changes on every sign-in, which auth.login records already.
        auditlog.register(
            get_user_model(),
            exclude_fields=["last_login"],
            mask_fields=["password"],
            mask_callable="audit.masking.mask_secret",
            m2m_fields={"groups", "user_permissions"},
        )
        auditlog.register(Group, m2m_fields={"permissions"})
        # last_used_at is bumped by authentication, at most once a minute; not an audit event.
        auditlog.register(
            ApiToken,
            exclude_fields=["last_used_at"],
            mask_fields=["token_hash"],
            mask_callable="audit.masking.mask_secret",
        )
