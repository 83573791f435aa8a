from django.apps import AppConfig


class AdminsiteConfig(AppConfig):
    name = "adminsite"
    verbose_name = "Console"
    default_auto_field = "django.db.models.BigAutoField"
