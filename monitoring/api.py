"""JSON API: batch ingestion of metric points (``POST /api/admin/monitoring/metrics``)."""

from __future__ import annotations

import json
from datetime import datetime

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import api_view, parser_classes, permission_classes
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.response import Response

from adminsite.permissions import has_model_perms
from monitoring import storage
from monitoring.metrics import (
    InvalidPointError,
    encode_tags,
    validate_name,
    validate_time,
    validate_value,
)

MAX_POINTS = 10_000
FIELDS = {"name", "value", "tags", "time"}


class RawJSONParser(BaseParser):
    """Plain JSON: tag keys are the caller's own and must not be camel-case converted."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return json.loads(stream.read().decode("utf-8"))
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
