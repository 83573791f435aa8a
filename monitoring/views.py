"""The monitoring console: the live dashboard, the metric explorer, and /metrics for Prometheus."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from adminsite.decorators import permission_required
from monitoring import alerts, forms, prometheus, queries, services
from monitoring.metrics import NAME_RE, PREDEFINED, TAG_KEY_RE
from monitoring.models import Aggregation, Alert, AlertRule, NoData, Operator, Severity, Silence

VIEW = "monitoring.view_metric"
REFRESH_SECONDS = 10


@require_GET
@permission_required(VIEW)
def dashboard(request):
    rng = queries.parse_range(request.GET.get("range"))
    alerts_context = _active_alerts_context(request)
    checks = queries.health_checks(firing=alerts_context["firing"])
    context = {
        "range": rng,
        "ranges": queries.RANGES.values(),
        "checks": checks,
        "overall": queries.overall(checks),
        "charts": queries.dashboard_charts(rng),
        "refresh_seconds": REFRESH_SECONDS,
        **alerts_context,
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


# --- alerting --------------------------------------------------------------------------------

VIEW_RULES = "monitoring.view_alertrule"
ADD_RULES = "monitoring.add_alertrule"
CHANGE_RULES = "monitoring.change_alertrule"
DELETE_RULES = "monitoring.delete_alertrule"
VIEW_ALERTS = "monitoring.view_alert"
CHANGE_ALERTS = "monitoring.change_alert"
VIEW_SILENCES = "monitoring.view_silence"
ADD_SILENCES = "monitoring.add_silence"
CHANGE_SILENCES = "monitoring.change_silence"
ALERTS_CHANGED = "alertsChanged"


def _active_alerts_context(request) -> dict:
    return {
        "active_alerts": queries.active_alerts(),
        "firing": queries.firing_counts(),
        "can_resolve": request.user.has_perm(CHANGE_ALERTS),
        "can_view_alerts": request.user.has_perm(VIEW_ALERTS),
    }


def _redirect(url: str) -> HttpResponseRedirect:
    response = HttpResponseRedirect(url)
    response.status_code = 303
    return response


def _back(request, fallback: str) -> str:
    target = request.POST.get("next", "")
    if (
        target.startswith("/")
        and not target.startswith("//")
        and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()})
    ):
        return target
    return fallback


def _errors(error: ValidationError) -> dict[str, str]:
    if hasattr(error, "error_dict"):
        return {field: " ".join(messages_) for field, messages_ in error.message_dict.items()}
    return {"__all__": " ".join(error.messages)}


# rules


@require_GET
@permission_required(VIEW_RULES)
def rule_list(request):
    context = {
        "rules": list(queries.rule_list()),
        "can_add": request.user.has_perm(ADD_RULES),
        "can_change": request.user.has_perm(CHANGE_RULES),
        "can_delete": request.user.has_perm(DELETE_RULES),
        "firing": queries.firing_counts(),
    }
    return TemplateResponse(request, "monitoring/rules.html", context)


def _rule_form(request, rule: AlertRule | None):
    errors: dict[str, str] = {}
    data = None
    if request.method == "POST":
        data = forms.rule_data_from_post(request.POST)
        try:
            if rule is None:
                saved = services.create_rule(actor=request.user, data=data)
                messages.success(request, f"Rule “{saved.name}” created.")
            else:
                saved = services.update_rule(actor=request.user, rule=rule, data=data)
                messages.success(request, f"Rule “{saved.name}” saved.")
            return _redirect(reverse("monitoring:rules"))
        except ValidationError as error:
            errors = _errors(error)
    context = {
        "rule": rule,
        "values": forms.rule_form_values(rule, data),
        "errors": errors,
        "operators": Operator.choices,
        "severities": Severity.choices,
        "aggregations": Aggregation.choices,
        "no_data_modes": NoData.choices,
        "metrics": queries.known_metrics(),
        "preview": _preview(forms.rule_form_values(rule, data) if data is None else data),
    }
    return TemplateResponse(
        request, "monitoring/rule_form.html", context, status=400 if errors else 200
    )


@require_http_methods(["GET", "POST"])
@permission_required(ADD_RULES)
def rule_create(request):
    return _rule_form(request, None)


@require_http_methods(["GET", "POST"])
@permission_required(CHANGE_RULES)
def rule_edit(request, pk: int):
    return _rule_form(request, get_object_or_404(AlertRule, pk=pk))


def _preview(data: dict) -> dict:
    """The metric's current value(s) and whether the rule would fire now; or what to fix."""
    raw = dict(data)
    if "notification_channels" not in raw:
        raw["notification_channels"] = {}
    for key in ("channel_email", "channel_slack", "channel_webhook"):
        raw.pop(key, None)
    raw.pop("auto_resolve", None), raw.pop("enabled", None)
    try:
        values = services.clean_rule(
            {k: v for k, v in raw.items() if k in services.RULE_FIELDS and k != "name"},
            base={"name": "preview"},
        )
    except ValidationError as error:
        fields = _errors(error)
        relevant = {k: v for k, v in fields.items() if k not in ("notification_channels",)}
        return {"problems": relevant} if relevant else {"problems": fields}
    values["notification_channels"] = {}
    return {"problems": {}, **alerts.preview(values), "condition": _condition(values)}


def _condition(values: dict) -> str:
    return (
        f"{values['aggregation']}({values['metric']}) {Operator(values['operator']).label} "
        f"{values['threshold']:g}"
    )


@require_GET
@permission_required(VIEW_RULES)
def rule_preview(request):
    data = forms.rule_data_from_post(request.GET)
    return TemplateResponse(
        request, "monitoring/rule_form.html#preview", {"preview": _preview(data)}
    )


@require_POST
@permission_required(CHANGE_RULES)
def rule_toggle(request, pk: int):
    rule = get_object_or_404(AlertRule, pk=pk)
    rule = services.set_rule_enabled(actor=request.user, rule=rule, enabled=not rule.enabled)
    messages.success(request, f"Rule “{rule.name}” {'enabled' if rule.enabled else 'disabled'}.")
    return _redirect(reverse("monitoring:rules"))


@require_POST
@permission_required(ADD_RULES)
def rule_duplicate(request, pk: int):
    copy = services.duplicate_rule(actor=request.user, rule=get_object_or_404(AlertRule, pk=pk))
    messages.success(request, f"Created “{copy.name}”, disabled: edit it, then enable it.")
    return _redirect(reverse("monitoring:rule-edit", args=[copy.pk]))


@require_POST
@permission_required(DELETE_RULES)
def rule_delete(request, pk: int):
    rule = get_object_or_404(AlertRule, pk=pk)
    name = rule.name
    services.delete_rule(actor=request.user, rule=rule)
    messages.success(request, f"Rule “{name}” deleted; its past alerts stay in the history.")
    return _redirect(reverse("monitoring:rules"))


# alerts


@require_GET
@permission_required(VIEW_ALERTS)
def alert_list(request):
    form = forms.AlertFilterForm(request.GET)
    valid = form.is_valid()
    page = None
    if valid:
        paginator = Paginator(queries.alert_list(form.filters()), queries.ALERT_PAGE_SIZE)
        page = paginator.get_page(request.GET.get("page"))
    params = {key: value for key, value in request.GET.items() if key != "page" and value}
    context = {
        "form": form,
        "page": page,
        "filter_query": urlencode(params),
        "rules": queries.rule_choices(),
        "firing": queries.firing_counts(),
        "can_resolve": request.user.has_perm(CHANGE_ALERTS),
    }
    status = 200 if valid else 400
    template = "monitoring/alerts.html"
    if request.htmx and not request.htmx.boosted:
        template += "#results"
    return TemplateResponse(request, template, context, status=status)


@require_GET
@permission_required(VIEW_ALERTS)
def alert_detail(request, pk: int):
    alert = queries.alert_detail(pk)
    context = {
        "alert": alert,
        "tags": services.tags_of(alert.tags_key),
        "can_resolve": request.user.has_perm(CHANGE_ALERTS),
    }
    return TemplateResponse(request, "monitoring/alert_detail.html", context)


def _alert_action(request, pk: int, service, done: str):
    alert = get_object_or_404(Alert, pk=pk)
    fallback = reverse("monitoring:alert", args=[pk])
    try:
        service(actor=request.user, alert=alert, note=request.POST.get("note", ""))
        messages.success(request, done.format(name=alert.rule_name))
        status = 200
    except services.AlertStateError as error:
        messages.error(request, str(error))
        status = 409
    except ValidationError as error:
        messages.error(request, " ".join(_errors(error).values()))
        status = 400
    if request.htmx:
        # The dashboard's alert list refreshes itself on this event.
        response = HttpResponse(status=204 if status == 200 else status)
        response["HX-Trigger"] = json.dumps({ALERTS_CHANGED: {"alert": pk}})
        if status != 200:
            response["HX-Reswap"] = "none"
        return response
    return _redirect(_back(request, fallback))


@require_POST
@permission_required(CHANGE_ALERTS)
def alert_resolve(request, pk: int):
    return _alert_action(request, pk, services.resolve_alert, "Resolved “{name}”.")


@require_POST
@permission_required(CHANGE_ALERTS)
def alert_acknowledge(request, pk: int):
    return _alert_action(request, pk, services.acknowledge_alert, "Acknowledged “{name}”.")


@require_GET
@permission_required(VIEW_ALERTS)
def active_alerts_panel(request):
    """The dashboard's active-alerts card alone (refreshed after a resolve)."""
    return TemplateResponse(
        request, "monitoring/dashboard.html#active-alerts", _active_alerts_context(request)
    )


# silences


def _silence_page(request, form, *, status=200):
    context = {
        "silences": queries.silence_list(),
        "form": form,
        "rule_targets": [(f"rule:{pk}", name) for pk, name in queries.rule_choices()],
        "metric_targets": [(f"metric:{name}", name) for name in queries.known_metrics()],
        "now": timezone.now(),
        "can_add": request.user.has_perm(ADD_SILENCES),
        "can_change": request.user.has_perm(CHANGE_SILENCES),
    }
    return TemplateResponse(request, "monitoring/silences.html", context, status=status)


@require_GET
@permission_required(VIEW_SILENCES)
def silence_list(request):
    initial = {}
    if request.GET.get("rule", "").isdigit():
        initial["target"] = f"rule:{request.GET['rule']}"
    return _silence_page(request, forms.SilenceForm(initial=initial))


@require_POST
@permission_required(ADD_SILENCES)
def silence_create(request):
    form = forms.SilenceForm(request.POST)
    if form.is_valid():
        try:
            services.create_silence(
                actor=request.user,
                ends_at=form.cleaned_data["ends_at"],
                reason=form.cleaned_data["reason"],
                **form.cleaned_data["target"],
            )
            messages.success(
                request, "Silence created: matching alerts send nothing until it ends."
            )
            return _redirect(reverse("monitoring:silences"))
        except ValidationError as error:
            for field, message in _errors(error).items():
                form.add_error(field if field in form.fields else None, message)
    return _silence_page(request, form, status=400)


@require_POST
@permission_required(CHANGE_SILENCES)
def silence_end(request, pk: int):
    silence = get_object_or_404(Silence, pk=pk)
    try:
        services.end_silence(actor=request.user, silence=silence)
        messages.success(request, "Silence ended.")
    except ValidationError as error:
        messages.error(request, " ".join(_errors(error).values()))
    return _redirect(reverse("monitoring:silences"))
