"""The "Background job failing" rule exists in every install: the background jobs emit
``job_consecutive_failures`` (tag ``job``) after each run, and three failures in a row of any
one job raise a critical alert for that job (one alert per tag set)."""

from django.db import migrations

RULE = {
    "name": "Background job failing",
    "description": "A background job failed three times in a row; one alert per job.",
    "metric": "job_consecutive_failures",
    "operator": "gte",
    "threshold": 3.0,
    "severity": "critical",
    "aggregation": "last",
    # The counter is emitted once per run, and a job may run only every few minutes: its last
    # value stays relevant for an hour. Back under 3 (a success resets it to 0) resolves.
    "window_seconds": 3600,
    "no_data": "keep",
    "auto_resolve": True,
}


def create_rule(apps, schema_editor):
    rule_model = apps.get_model("monitoring", "AlertRule")
    if not rule_model.objects.filter(name=RULE["name"]).exists():
        rule_model.objects.create(notification_channels={}, tag_filter={}, **RULE)


def delete_rule(apps, schema_editor):
    apps.get_model("monitoring", "AlertRule").objects.filter(name=RULE["name"]).delete()


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0004_alerting")]

    operations = [migrations.RunPython(create_rule, delete_rule)]
