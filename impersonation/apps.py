from django.apps import AppConfig


class ImpersonationConfig(AppConfig):
    name = "impersonation"
    default_auto_field = "django.db.models.BigAutoField"
