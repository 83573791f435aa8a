"""``/metrics`` in the Prometheus text exposition format (version 0.0.4).

Each metric and tag set seen in the last five minutes is a gauge holding its most recent value
(``adminsite_<name>``, dots as underscores; tag keys become labels), so a Prometheus scraping
every 15-60 s sees the same numbers as the dashboard.
"""

from __future__ import annotations

import json
import re

from rest_framework.exceptions import AuthenticationFailed

from adminsite.authentication import BearerTokenAuthentication
from monitoring import queries
from monitoring.metrics import PREDEFINED, default_buffer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def token_user(request):
    try:
        result = BearerTokenAuthentication().authenticate(request)
    except AuthenticationFailed:
        return None
    return result[0] if result else None


def metric_name(name: str) -> str:
    return "adminsite_" + _INVALID.sub("_", name)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(tags_key: str) -> str:
    if not tags_key:
        return ""
    tags = json.loads(tags_key)
    pairs = ",".join(f'{_INVALID.sub("_", k)}="{_escape(v)}"' for k, v in sorted(tags.items()))
    return "{" + pairs + "}"


def render() -> str:
    lines: list[str] = []
    current = None
    for name, tags_key, last in queries.latest_values():
        if name != current:
            current = name
            unit, label = PREDEFINED.get(name, ("", name))
            help_text = f"{label} ({unit})" if unit else label
            lines.append(f"# HELP {metric_name(name)} {_escape(help_text)}, latest value")
            lines.append(f"# TYPE {metric_name(name)} gauge")
        lines.append(f"{metric_name(name)}{_labels(tags_key)} {last!r}")
    dropped = default_buffer().dropped
    lines.append("# HELP adminsite_metric_points_dropped_total Points this web process dropped")
    lines.append("# TYPE adminsite_metric_points_dropped_total counter")
    lines.extend(
        f'adminsite_metric_points_dropped_total{{reason="{reason}"}} {dropped[reason]}'
        for reason in sorted(dropped) or ["unavailable"]
    )
    return "\n".join(lines) + "\n"
