"""Forms of the alerting pages: the alert filters (shared with the API), the rule form's
parsing of posted fields into rule values, and the silence form."""

from __future__ import annotations

from datetime import datetime, time

from django import forms
from django.utils import timezone

from monitoring.models import AlertRule, AlertStatus, Severity
from monitoring.services import RULE_FIELDS

STATUS_FILTERS = [("", "Any status"), ("open", "Open (pending or firing)")] + [
    (value, label) for value, label in AlertStatus.choices
]


class AlertFilterForm(forms.Form):
    status = forms.ChoiceField(choices=STATUS_FILTERS, required=False)
    severity = forms.ChoiceField(choices=[("", "Any severity"), *Severity.choices], required=False)
    rule = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    metric = forms.RegexField(regex=r"^[a-z0-9_.]{1,100}$", required=False,
                              error_messages={"invalid": "Use lowercase letters, digits, _ and ."})  # fmt: skip
    since = forms.CharField(required=False, help_text="A date, or an ISO 8601 date-time")

    def clean_since(self):
        raw = self.cleaned_data["since"].strip()
        if not raw:
            return None
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise forms.ValidationError(
                "Use a date (2026-11-26) or an ISO 8601 date-time (2026-11-26T12:00:00Z)."
            ) from None
        if len(raw) == 10:  # a date: from its start
            value = datetime.combine(value.date(), time.min)
        if timezone.is_naive(value):
            value = timezone.make_aware(value, timezone.get_current_timezone())
        return value

    def filters(self) -> dict:
        return {k: v for k, v in self.cleaned_data.items() if v not in (None, "")}


def rule_data_from_post(post) -> dict:
    """The rule form's fields as the values services.clean_rule validates (checkboxes absent
    are false; the three channel boxes make notification_channels)."""
    # Every text field of the rule; the checkboxes and the channels are read below.
    boxes = {"auto_resolve", "enabled", "notification_channels"}
    data = {field: post.get(field, "") for field in RULE_FIELDS if field not in boxes}
    data["auto_resolve"] = "auto_resolve" in post
    data["enabled"] = "enabled" in post
    data["notification_channels"] = {
        channel: post.get(f"channel_{channel}", "") for channel in ("email", "slack", "webhook")
    }
    return data


def rule_form_values(rule: AlertRule | None, data: dict | None = None) -> dict:
    """What the rule form shows: the posted values after an error, else the rule's."""
    if data is not None:
        channels = data.get("notification_channels") or {}
        return {**data, **{f"channel_{k}": v for k, v in channels.items()}}
    from monitoring.services import RULE_DEFAULTS, rule_values

    values = rule_values(rule) if rule else {**RULE_DEFAULTS, "operator": "gt",
                                                 "severity": "warning"}  # fmt: skip
    channels = values.get("notification_channels") or {}
    values["tag_filter"] = ", ".join(f"{k}={v}" for k, v in (values["tag_filter"] or {}).items())
    for channel in ("email", "slack", "webhook"):
        targets = channels.get(channel, []) if isinstance(channels, dict) else []
        values[f"channel_{channel}"] = "\n".join(targets if isinstance(targets, list) else [])
    for key in ("critical_threshold", "recovery_threshold"):
        values[key] = "" if values[key] is None else f"{values[key]:g}"
    if values.get("threshold") is not None and not isinstance(values["threshold"], str):
        values["threshold"] = f"{values['threshold']:g}"
    return values


class SilenceForm(forms.Form):
    target = forms.CharField(
        help_text="rule:<id> or metric:<name>",
        error_messages={"required": "Choose a rule or a metric to silence."},
    )
    ends_at = forms.DateTimeField(
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
        error_messages={"required": "Say when the silence ends.", "invalid": "Enter a date and time."},
    )  # fmt: skip
    reason = forms.CharField(max_length=2000, error_messages={"required": "Say why."})

    def clean_target(self):
        kind, _sep, value = self.cleaned_data["target"].partition(":")
        if kind == "rule" and value.isdigit():
            rule = AlertRule.objects.filter(pk=int(value)).first()
            if rule is None:
                raise forms.ValidationError(f"No rule {value}.")
            return {"rule": rule}
        if kind == "metric" and value:
            return {"metric": value}
        raise forms.ValidationError("Choose a rule or a metric to silence.")
