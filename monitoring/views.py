"""The monitoring console: the live dashboard, the metric explorer, and /metrics for Prometheus."""

from __future__ import annotations

from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from adminsite.decorators import permission_required
from monitoring import prometheus, queries
from monitoring.metrics import NAME_RE, PREDEFINED, TAG_KEY_RE

VIEW = "monitoring.view_metric"
REFRESH_SECONDS = 10


@require_GET
@permission_required(VIEW)
def dashboard(request):
    rng = queries.parse_range(request.GET.get("range"))
    checks = queries.health_checks()
    context = {
        "range": rng,
        "ranges": queries.RANGES.values(),
        "checks": checks,
        "overall": queries.overall(checks),
        "charts": queries.dashboard_charts(rng),
        "refresh_seconds": REFRESH_SECONDS,
    }
    template = "monitoring/dashboard.html"
    if request.htmx:
        template += "#live"
    return TemplateResponse(request, template, context)


def _parse_tags(raw: str) -> tuple[dict[str, str], str]:
    """``key=value, key=value`` into a map; an error message naming the bad part, or ''."""
    tags: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not TAG_KEY_RE.fullmatch(key):
            return (
                {},
                f"Tag filter {part!r} must look like key=value (key: letters, digits, _ . -).",
            )
        tags[key] = value
    return tags, ""


@require_GET
@permission_required(VIEW)
def explorer(request):
    rng = queries.parse_range(request.GET.get("range"))
    name = request.GET.get("metric", "").strip() or next(iter(PREDEFINED))
    errors = []
    if not NAME_RE.fullmatch(name):
        errors.append(
            f"Metric {name[:100]!r} is not a valid name (lowercase letters, digits, _ and .)."
        )
    raw_tags = request.GET.get("tags", "")
    tags, tag_error = _parse_tags(raw_tags)
    if tag_error:
        errors.append(tag_error)
    chart = None
    if not errors:
        data = queries.series([name], rng, tags=tags or None)[name]
        unit, label = PREDEFINED.get(name, ("", name))
        chart = {"name": name, "unit": unit, "label": label, **data}
    context = {
        "range": rng,
        "ranges": queries.RANGES.values(),
        "metric": name,
        "metrics": queries.known_metrics(),
        "raw_tags": raw_tags,
        "tag_sets": queries.tag_sets(name) if not errors else [],
        "errors": errors,
        "chart": chart,
        "refresh_seconds": REFRESH_SECONDS,
    }
    template = "monitoring/explorer.html"
    if request.htmx:
        template += "#result"
    return TemplateResponse(request, template, context, status=400 if errors else 200)


@require_GET
@never_cache
def metrics_exposition(request):
    """Prometheus text format; ``Authorization: Bearer <token>`` of a user with view_metric."""
    user = prometheus.token_user(request)
    if user is None:
        response = HttpResponse(
            "A valid Bearer token is required.\n", status=401, content_type="text/plain"
        )
        response["WWW-Authenticate"] = "Bearer"
        return response
    if not (user.is_active and user.is_staff and user.has_perm(VIEW)):
        return HttpResponse(
            f"The token's user lacks the permission {VIEW}.\n",
            status=403,
            content_type="text/plain",
        )
    return HttpResponse(prometheus.render(), content_type=prometheus.CONTENT_TYPE)
