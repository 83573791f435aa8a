"""JSON API: batch ingestion of metric points (``POST /api/admin/monitoring/metrics``), alerts
(list, resolve, acknowledge) and alert rule CRUD."""

from __future__ import annotations

import json
import re
from datetime import datetime

from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.decorators import (
    api_view,
    parser_classes,
    permission_classes,
    renderer_classes,
)
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.response import Response

from adminsite.api import CamelCased, CamelCasedRenderer, conflict, iso
from adminsite.pagination import StandardPagination
from adminsite.permissions import IsStaff, has_model_perms
from adminsite.users import user_label
from monitoring import queries, services, storage
from monitoring.forms import AlertFilterForm
from monitoring.metrics import (
    InvalidPointError,
    encode_tags,
    validate_name,
    validate_time,
    validate_value,
)
from monitoring.models import Alert, AlertRule

MAX_POINTS = 10_000
FIELDS = {"name", "value", "tags", "time"}


class RawJSONParser(BaseParser):
    """Plain JSON: tag keys are the caller's own and must not be camel-case converted."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            raw = stream.read().decode("utf-8")
            # An empty body is an empty object: a resolve or acknowledge without a note.
            return json.loads(raw) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc


def parse_point(raw) -> tuple[str, float, int, str]:
    if not isinstance(raw, dict):
        raise InvalidPointError("point", "must be an object with name, value, tags and time")
    unknown = sorted(set(raw) - FIELDS)
    if unknown:
        raise InvalidPointError(unknown[0], "is not a field of a point (name, value, tags, time)")
    if "name" not in raw:
        raise InvalidPointError("name", "is required")
    if "value" not in raw:
        raise InvalidPointError("value", "is required")
    name = validate_name(raw["name"])
    value = validate_value(raw["value"])
    tags_json = encode_tags(raw.get("tags"))
    at = raw.get("time")
    if at is not None:
        if not isinstance(at, str):
            raise InvalidPointError("time", "must be an ISO 8601 string with a time zone")
        try:
            at = datetime.fromisoformat(at)
        except ValueError as exc:
            raise InvalidPointError("time", "must be an ISO 8601 string with a time zone") from exc
    stamp = validate_time(at)
    return name, value, int(stamp * 1_000_000), tags_json


class PointSerializer(serializers.Serializer):
    """One point, for the API schema (points are validated by parse_point, not by DRF)."""

    name = serializers.RegexField(r"^[a-z0-9_.]{1,100}$")
    value = serializers.FloatField()
    tags = serializers.DictField(child=serializers.CharField(max_length=200), required=False)
    time = serializers.DateTimeField(required=False, help_text="ISO 8601 with a time zone")


@extend_schema(
    request=PointSerializer(many=True),
    responses={
        202: inline_serializer("MetricBatchAccepted", {"accepted": serializers.IntegerField()}),
        400: OpenApiTypes.OBJECT,
        413: OpenApiTypes.OBJECT,
    },
    description=f"Store a JSON list of up to {MAX_POINTS} points, all or none. A 400 lists "
    "each bad point's index and field.",
)
@api_view(["POST"])
@parser_classes([RawJSONParser])
@permission_classes([has_model_perms("monitoring.add_metric")])
def ingest_metrics(request):
    """Store a JSON list of points ``{"name", "value", "tags"?, "time"?}``, all or none."""
    body = request.data
    if isinstance(body, dict) and "points" in body:
        body = body["points"]
    if not isinstance(body, list):
        return Response(
            {"detail": "The body must be a JSON list of points."},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if len(body) > MAX_POINTS:
        return Response(
            {"detail": f"At most {MAX_POINTS} points per request; this one has {len(body)}."},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    points, errors = [], []
    for index, raw in enumerate(body):
        try:
            points.append(parse_point(raw))
        except InvalidPointError as exc:
            errors.append({"index": index, "field": exc.field, "message": exc.message})
    if errors:
        first = errors[0]
        return Response(
            {
                "detail": f"{len(errors)} invalid point(s); none were stored. First: point "
                f"{first['index']} {first['field']} {first['message']}.",
                "errors": errors,
            },
            status=status.HTTP_400_BAD_REQUEST,
        )
    storage.write_points(points)
    return Response({"accepted": len(points)}, status=status.HTTP_202_ACCEPTED)


# --- alerting: alerts and rules ----------------------------------------------------------------
#
#   GET   /api/admin/monitoring/alerts                  list (status, severity, rule, metric, since)
#   POST  /api/admin/monitoring/alerts/<id>/resolve     optional {"note"}; 409 when resolved
#   POST  /api/admin/monitoring/alerts/<id>/acknowledge optional {"note"}; 409 unless firing
#   GET, POST               /api/admin/monitoring/rules
#   GET, PATCH, PUT, DELETE /api/admin/monitoring/rules/<id>
#
# Bodies are parsed as plain JSON and only their top-level keys are converted from camelCase:
# tag names inside ``tagFilter`` are the caller's own and must stay as written.


def _person(user) -> dict | None:
    return {"id": user.pk, "name": user_label(user)} if user is not None else None


def alert_json(alert: Alert) -> dict:
    return {
        "id": alert.pk,
        "ruleId": alert.rule_id,
        "ruleName": alert.rule_name,
        "metric": alert.metric,
        "tags": services.tags_of(alert.tags_key),
        "condition": alert.condition,
        "status": alert.status,
        "severity": alert.severity,
        "value": alert.value,
        "threshold": alert.threshold,
        "startedAt": iso(alert.started_at),
        "firedAt": iso(alert.fired_at),
        "acknowledgedAt": iso(alert.acknowledged_at),
        "acknowledgedBy": _person(alert.acknowledged_by),
        "acknowledgementNote": alert.acknowledgement_note,
        "resolvedAt": iso(alert.resolved_at),
        "resolvedBy": _person(alert.resolved_by),
        "resolutionNote": alert.resolution_note,
        "lastEvaluatedAt": iso(alert.last_evaluated_at),
    }


def rule_json(rule: AlertRule) -> dict:
    return {
        "id": rule.pk,
        "name": rule.name,
        "description": rule.description,
        "metric": rule.metric,
        "operator": rule.operator,
        "threshold": rule.threshold,
        "severity": rule.severity,
        "criticalThreshold": rule.critical_threshold,
        "recoveryThreshold": rule.recovery_threshold,
        "aggregation": rule.aggregation,
        "windowSeconds": rule.window_seconds,
        "pendingSeconds": rule.pending_seconds,
        "tagFilter": rule.tag_filter,
        "noData": rule.no_data,
        "renotifySeconds": rule.renotify_seconds,
        "autoResolve": rule.auto_resolve,
        "enabled": rule.enabled,
        "notificationChannels": rule.notification_channels,
        "condition": rule.condition,
        "lastEvaluatedAt": iso(rule.last_evaluated_at),
        "lastValue": rule.last_value,
        "lastError": rule.last_error,
        "lastErrorAt": iso(rule.last_error_at),
        "createdAt": iso(rule.created_at),
        "updatedAt": iso(rule.updated_at),
    }


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _rule_input(request) -> dict:
    body = request.data
    if not isinstance(body, dict):
        raise exceptions.ValidationError({"non_field_errors": ["The body must be a JSON object."]})
    return {_snake(key): value for key, value in body.items()}


def _rule_errors(error: DjangoValidationError) -> exceptions.ValidationError:
    return exceptions.ValidationError(
        CamelCased({_camel(field): messages for field, messages in error.message_dict.items()})
    )


def _note(request) -> str:
    body = request.data if isinstance(request.data, dict) else None
    if body is None:
        raise exceptions.ValidationError({"non_field_errors": ["The body must be a JSON object."]})
    unknown = sorted(set(body) - {"note"})
    if unknown:
        raise exceptions.ValidationError({unknown[0]: ["Unknown field. Allowed fields: note."]})
    note = body.get("note") or ""
    if not isinstance(note, str):
        raise exceptions.ValidationError({"note": ["Enter text."]})
    return note


class _Pagination(StandardPagination):
    def response(self, results: list[dict]) -> Response:
        return Response(
            CamelCased(
                count=self.page.paginator.count,
                next=self.get_next_link(),
                previous=self.get_previous_link(),
                results=results,
            )
        )


def _alert_access(**perms):
    class AlertAccess(IsStaff):
        message = "You do not have permission to perform this action."

        def has_permission(self, request, view):
            perm = perms.get(request.method) or perms["GET"]
            return super().has_permission(request, view) and request.user.has_perm(perm)

    return AlertAccess


ALERT_PARAMETERS = [
    OpenApiParameter("status", str, description="open, pending, firing or resolved."),
    OpenApiParameter("severity", str, description="info, warning or critical."),
    OpenApiParameter("rule", int, description="A rule id."),
    OpenApiParameter("metric", str, description="A metric name."),
    OpenApiParameter(
        "since", OpenApiTypes.DATETIME, description="Started at or after: a date or ISO 8601."
    ),
    OpenApiParameter("page", int),
    OpenApiParameter("pageSize", int, description="1 to 500, default 50."),
]
NOTE_REQUEST = inline_serializer("AlertNote", {"note": serializers.CharField(required=False)})
ALERT_SCHEMA = inline_serializer(
    "Alert",
    {
        "id": serializers.IntegerField(),
        "ruleId": serializers.IntegerField(allow_null=True),
        "ruleName": serializers.CharField(),
        "metric": serializers.CharField(),
        "tags": serializers.DictField(child=serializers.CharField()),
        "condition": serializers.CharField(),
        "status": serializers.ChoiceField(choices=["pending", "firing", "resolved"]),
        "severity": serializers.ChoiceField(choices=["info", "warning", "critical"]),
        "value": serializers.FloatField(allow_null=True),
        "threshold": serializers.FloatField(),
        "startedAt": serializers.DateTimeField(),
        "firedAt": serializers.DateTimeField(allow_null=True),
        "acknowledgedAt": serializers.DateTimeField(allow_null=True),
        "acknowledgementNote": serializers.CharField(),
        "resolvedAt": serializers.DateTimeField(allow_null=True),
        "resolutionNote": serializers.CharField(),
    },
)


class RuleSchemaSerializer(serializers.Serializer):
    """An alert rule, for the API schema (rules are validated by services.clean_rule)."""

    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False)
    metric = serializers.RegexField(r"^[a-z0-9_.]{1,100}$")
    operator = serializers.ChoiceField(choices=["gt", "gte", "lt", "lte", "eq"])
    threshold = serializers.FloatField()
    severity = serializers.ChoiceField(choices=["info", "warning", "critical"])
    criticalThreshold = serializers.FloatField(required=False, allow_null=True)  # noqa: N815
    recoveryThreshold = serializers.FloatField(required=False, allow_null=True)  # noqa: N815
    aggregation = serializers.ChoiceField(
        choices=["last", "avg", "min", "max", "sum", "count", "p95"], required=False
    )
    windowSeconds = serializers.IntegerField(required=False, min_value=10)  # noqa: N815
    pendingSeconds = serializers.IntegerField(required=False, min_value=0)  # noqa: N815
    tagFilter = serializers.DictField(child=serializers.CharField(), required=False)  # noqa: N815
    noData = serializers.ChoiceField(choices=["ok", "alerting", "keep"], required=False)  # noqa: N815
    renotifySeconds = serializers.IntegerField(required=False, min_value=0)  # noqa: N815
    autoResolve = serializers.BooleanField(required=False)  # noqa: N815
    enabled = serializers.BooleanField(required=False)
    notificationChannels = serializers.DictField(  # noqa: N815
        child=serializers.ListField(child=serializers.CharField()), required=False,
        help_text='{"email": [...], "slack": [webhook URLs], "webhook": [URLs]}',
    )  # fmt: skip


@extend_schema(
    summary="List alerts",
    parameters=ALERT_PARAMETERS,
    responses=ALERT_SCHEMA,
    tags=["monitoring"],
)
@api_view(["GET"])
@renderer_classes([CamelCasedRenderer])
@permission_classes([_alert_access(GET="monitoring.view_alert")])
def alerts_collection(request):
    form = AlertFilterForm(request.query_params)
    if not form.is_valid():
        raise exceptions.ValidationError(
            {field: [str(m) for m in messages] for field, messages in form.errors.items()}
        )
    paginator = _Pagination()
    page = paginator.paginate_queryset(queries.alert_list(form.filters()), request)
    return paginator.response([alert_json(alert) for alert in page])


def _alert_action(request, pk: int, service):
    alert = get_object_or_404(Alert, pk=pk)
    note = _note(request)
    try:
        alert = service(actor=request.user, alert=alert, note=note)
    except services.AlertStateError as error:
        return conflict(str(error))
    except DjangoValidationError as error:
        raise _rule_errors(error) from None
    alert = Alert.objects.select_related("resolved_by", "acknowledged_by").get(pk=alert.pk)
    return Response(CamelCased(alert_json(alert)))


@extend_schema(
    summary="Resolve an alert",
    request=NOTE_REQUEST,
    responses={200: ALERT_SCHEMA, 409: OpenApiTypes.OBJECT},
    description="Resolve with an optional note (who and when are kept). 409 when the alert "
    "is already resolved.",
    tags=["monitoring"],
)
@api_view(["POST"])
@parser_classes([RawJSONParser])
@renderer_classes([CamelCasedRenderer])
@permission_classes([_alert_access(GET="monitoring.change_alert")])
def alert_resolve(request, pk: int):
    return _alert_action(request, pk, services.resolve_alert)


@extend_schema(
    summary="Acknowledge a firing alert",
    request=NOTE_REQUEST,
    responses={200: ALERT_SCHEMA, 409: OpenApiTypes.OBJECT},
    description="Shows who is on it and stops re-notification until it resolves or escalates "
    "to critical. 409 unless the alert is firing and not yet acknowledged.",
    tags=["monitoring"],
)
@api_view(["POST"])
@parser_classes([RawJSONParser])
@renderer_classes([CamelCasedRenderer])
@permission_classes([_alert_access(GET="monitoring.change_alert")])
def alert_acknowledge(request, pk: int):
    return _alert_action(request, pk, services.acknowledge_alert)


@extend_schema(
    methods=["GET"],
    summary="List alert rules",
    parameters=[OpenApiParameter("page", int), OpenApiParameter("pageSize", int)],
    responses=RuleSchemaSerializer(many=True),
    tags=["monitoring"],
)
@extend_schema(
    methods=["POST"],
    summary="Create an alert rule",
    request=RuleSchemaSerializer,
    responses={201: RuleSchemaSerializer},
    tags=["monitoring"],
)
@api_view(["GET", "POST"])
@parser_classes([RawJSONParser])
@renderer_classes([CamelCasedRenderer])
@permission_classes(
    [_alert_access(GET="monitoring.view_alertrule", POST="monitoring.add_alertrule")]
)
def rules_collection(request):
    if request.method == "POST":
        try:
            rule = services.create_rule(actor=request.user, data=_rule_input(request))
        except DjangoValidationError as error:
            raise _rule_errors(error) from None
        return Response(CamelCased(rule_json(rule)), status=status.HTTP_201_CREATED)
    paginator = _Pagination()
    page = paginator.paginate_queryset(AlertRule.objects.order_by("name", "id"), request)
    return paginator.response([rule_json(rule) for rule in page])


@extend_schema(methods=["GET"], summary="Read an alert rule", responses=RuleSchemaSerializer,
               tags=["monitoring"])  # fmt: skip
@extend_schema(
    methods=["PATCH", "PUT"],
    summary="Update an alert rule",
    request=RuleSchemaSerializer,
    responses=RuleSchemaSerializer,
    description="PATCH changes the fields given; PUT replaces the rule (omitted optional "
    "fields return to their defaults).",
    tags=["monitoring"],
)
@extend_schema(methods=["DELETE"], summary="Delete an alert rule", responses={204: None},
               tags=["monitoring"])  # fmt: skip
@api_view(["GET", "PATCH", "PUT", "DELETE"])
@parser_classes([RawJSONParser])
@renderer_classes([CamelCasedRenderer])
@permission_classes(
    [
        _alert_access(
            GET="monitoring.view_alertrule",
            PATCH="monitoring.change_alertrule",
            PUT="monitoring.change_alertrule",
            DELETE="monitoring.delete_alertrule",
        )
    ]
)
def rule_detail(request, pk: int):
    rule = get_object_or_404(AlertRule, pk=pk)
    if request.method == "GET":
        return Response(CamelCased(rule_json(rule)))
    if request.method == "DELETE":
        services.delete_rule(actor=request.user, rule=rule)
        return Response(status=status.HTTP_204_NO_CONTENT)
    data = _rule_input(request)
    if request.method == "PUT":
        # Every field not given returns to its default; the required ones must be given.
        data = {**services.RULE_DEFAULTS, **dict.fromkeys(services.REQUIRED_RULE_FIELDS),
                **data}  # fmt: skip
    try:
        rule = services.update_rule(actor=request.user, rule=rule, data=data)
    except DjangoValidationError as error:
        raise _rule_errors(error) from None
    return Response(CamelCased(rule_json(rule)))
