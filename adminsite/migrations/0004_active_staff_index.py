"""A partial index on active staff: the assignee picker and the console's staff lists read
the handful of staff users among every customer account. Without it each of those queries
scans the whole user table (4-5 ms at 25,000 users, growing with every sign-up)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("adminsite", "0003_job_runs"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS auth_user_active_staff ON auth_user (id) "
            "WHERE is_staff AND is_active",
            reverse_sql="DROP INDEX IF EXISTS auth_user_active_staff",
        )
    ]
