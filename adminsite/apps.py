from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AdminsiteConfig(AppConfig):
    name = "adminsite"
    verbose_name = "Console"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        post_migrate.connect(sync_roles_after_migrate, dispatch_uid="adminsite.sync_roles")
        from adminsite import jobs

        jobs.connect()


def sync_roles_after_migrate(sender, app_config=None, using="default", apps=None, **kwargs):
    """Re-sync the role groups once per ``migrate`` (and per test-database flush).

    post_migrate is sent once per app, in INSTALLED_APPS order, and auth creates each app's
    permissions in its own handler for that app. Acting on the last app's signal means every
    app's permissions exist by then, so roles pick up the models added by this migrate.
    """
    from django.apps import apps as global_apps

    from adminsite.roles import sync_roles

    with_models = [
        config for config in global_apps.get_app_configs() if config.models_module is not None
    ]
    if not with_models or sender.label != with_models[-1].label:
        return
    sync_roles(apps=apps or global_apps, using=using)
