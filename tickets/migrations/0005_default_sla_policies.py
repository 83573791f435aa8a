"""The default SLA policies: one per priority, around the clock (no calendar), until a lead
narrows them or attaches a business calendar."""

from django.db import migrations

DEFAULTS = [
    # (priority, first response minutes, resolution minutes)
    ("urgent", 60, 4 * 60),
    ("high", 4 * 60, 24 * 60),
    ("normal", 8 * 60, 3 * 24 * 60),
    ("low", 24 * 60, 5 * 24 * 60),
]


def add_defaults(apps, schema_editor):
    policy = apps.get_model("tickets", "SLAPolicy")
    for position, (priority, first, resolution) in enumerate(DEFAULTS, start=1):
        policy.objects.get_or_create(
            name=f"{priority.capitalize()} (default)",
            defaults={
                "position": 1000 + position,
                "priority": priority,
                "first_response_minutes": first,
                "resolution_minutes": resolution,
            },
        )


def remove_defaults(apps, schema_editor):
    policy = apps.get_model("tickets", "SLAPolicy")
    policy.objects.filter(
        name__in=[f"{p.capitalize()} (default)" for p, _f, _r in DEFAULTS]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("tickets", "0004_sla_and_assignment")]

    operations = [migrations.RunPython(add_defaults, remove_defaults)]
