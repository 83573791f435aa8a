"""Staff roles as groups with permissions (see adminsite/roles.py).

Permissions are normally created after all migrations ran (post_migrate), so on a fresh
database none exist yet at this point: create those of the models known so far first. Models
added by later migrations are attached by the post_migrate handler in adminsite/apps.py.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def create_roles(apps, schema_editor):
    from adminsite.roles import sync_roles

    for app_config in apps.get_app_configs():
        # create_permissions skips app configs without a models module, as the migration
        # state's app configs are; flag it for the call and put it back after.
        previous = getattr(app_config, "models_module", None)
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
        app_config.models_module = previous
    sync_roles(apps=apps, using=schema_editor.connection.alias)


def delete_roles(apps, schema_editor):
    from adminsite.roles import ROLES

    apps.get_model("auth", "Group").objects.using(schema_editor.connection.alias).filter(
        name__in=list(ROLES)
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("adminsite", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, delete_roles)]
