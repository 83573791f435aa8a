"""The audit viewer at /admin/audit/ (Admin and Support Lead: ``audit.view_auditentry``)."""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, timedelta

from django import forms
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from adminsite.decorators import permission_required
from adminsite.htmx import wants_fragment
from audit import chain, queries
from audit.models import EVENT_PATTERN
from audit.services import record

VIEW_PERMISSION = "audit.view_auditentry"
_EVENT_PREFIX = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*\.?\*$")
_EVENT = re.compile(EVENT_PATTERN)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class FilterForm(forms.Form):
    actor = forms.CharField(
        required=False, max_length=150, help_text="Username, user id, or system"
    )
    event = forms.CharField(
        required=False, max_length=101, help_text="e.g. ticket.created, or ticket.* for a family"
    )
    target_type = forms.CharField(
        required=False, max_length=200, help_text="app_label.model, e.g. tickets.ticket"
    )
    target_id = forms.CharField(required=False, max_length=255)
    date_from = forms.DateField(required=False, label="From")
    date_to = forms.DateField(required=False, label="To")
    impersonated = forms.BooleanField(required=False, label="Under impersonation only")
    q = forms.CharField(required=False, max_length=200, label="Search")
    request_id = forms.CharField(required=False, max_length=128, label="Request id")
    before = forms.CharField(required=False, max_length=60)
    after = forms.CharField(required=False, max_length=60)

    def clean_actor(self):
        value = self.cleaned_data["actor"].strip()
        if not value or value.lower() == "system":
            return value.lower()
        actor_id = queries.resolve_actor(value)
        if actor_id is None:
            raise ValidationError(f"There is no user {value!r} (give a username or a user id).")
        return actor_id

    def clean_event(self):
        value = self.cleaned_data["event"].strip().lower()
        if value and not (_EVENT.match(value) or _EVENT_PREFIX.match(value)):
            raise ValidationError(
                f"{value!r} is not an event name: use lowercase dotted words such as ticket.created, "
                "or a family such as ticket.*"
            )
        return value

    def clean_target_type(self):
        value = self.cleaned_data["target_type"].strip().lower()
        if not value:
            return None
        content_type_id = queries.resolve_target_type(value)
        if content_type_id is None:
            raise ValidationError(
                f"Unknown target type {value!r}: use app_label.model, such as tickets.ticket."
            )
        return content_type_id

    def clean_q(self):
        value = self.cleaned_data["q"].strip()
        words = queries.search_words(value)
        if value and not words:
            raise ValidationError(
                "Search for words, names, emails or ids: the text has no letters or digits."
            )
        return words

    def clean_request_id(self):
        value = self.cleaned_data["request_id"].strip()
        if value and not _REQUEST_ID.match(value):
            raise ValidationError("A request id has letters, digits and . _ : - only.")
        return value

    def _cursor(self, name):
        value = self.cleaned_data[name].strip()
        if not value:
            return None
        try:
            return queries.Cursor.decode(value)
        except ValueError as exc:
            raise ValidationError(f"Page position {value!r} is invalid: {exc}.") from None

    def clean_before(self):
        return self._cursor("before")

    def clean_after(self):
        return self._cursor("after")

    def clean(self):
        data = super().clean()
        if (
            data.get("target_id")
            and not data.get("target_type")
            and "target_type" not in self.errors
        ):
            self.add_error("target_type", "Choose the target type the target id belongs to.")
        date_from, date_to = data.get("date_from"), data.get("date_to")
        if date_from and date_to and date_from > date_to:
            self.add_error("date_to", "The end date is before the start date.")
        if data.get("before") and data.get("after"):
            raise ValidationError("Give either an older or a newer page position, not both.")
        return data

    def filters(self) -> queries.Filters:
        data = self.cleaned_data
        actor = data["actor"]
        event = data["event"]
        return queries.Filters(
            actor_id=actor if isinstance(actor, int) else None,
            actor_system=actor == "system",
            event=event if event and not event.endswith("*") else "",
            event_prefix=event.rstrip("*") if event.endswith("*") else "",
            content_type_id=data["target_type"],
            target_id=data["target_id"].strip(),
            since=queries.day_start(data["date_from"]) if data["date_from"] else None,
            until=queries.day_start(data["date_to"] + timedelta(days=1))
            if data["date_to"]
            else None,
            impersonated=data["impersonated"],
            search_words=data["q"],
            request_id=data["request_id"],
        )


@require_GET
@permission_required(VIEW_PERMISSION)
def entry_list(request):
    form = FilterForm(request.GET)
    page = None
    if form.is_valid():
        page = queries.entry_page(
            form.filters(), before=form.cleaned_data["before"], after=form.cleaned_data["after"]
        )
    params = request.GET.copy()
    params.pop("before", None)
    params.pop("after", None)
    context = {
        "title": "Audit trail",
        "form": form,
        "page": page,
        "filter_query": params.urlencode(),
        "events": queries.known_events(),
        "target_types": queries.known_target_types(),
    }
    if wants_fragment(request):
        # A partial is swapped in whatever it holds, errors included (htmx ignores 4xx).
        return TemplateResponse(request, "audit/list.html#results", context)
    return TemplateResponse(
        request, "audit/list.html", context, status=200 if page is not None else 400
    )


def _diff_rows(changes) -> list[dict]:
    rows = []
    if not isinstance(changes, dict):
        return rows
    for name, value in changes.items():
        if isinstance(value, list | tuple) and len(value) == 2:
            rows.append({"field": name, "old": value[0], "new": value[1]})
        elif isinstance(value, dict) and value.get("type") == "m2m":
            verb = "added" if value.get("operation") == "add" else "removed"
            rows.append({"field": name, "m2m": verb, "objects": value.get("objects", [])})
        else:
            rows.append({"field": name, "old": None, "new": value})
    return rows


@require_GET
@permission_required(VIEW_PERMISSION)
def entry_detail(request, entry_id: int):
    entry = queries.entry_detail(entry_id)
    if entry is None:
        raise Http404(f"There is no audit entry {entry_id}.")
    link = getattr(entry, "link", None)
    context = {
        "title": f"Audit entry {entry.pk}",
        "entry": entry,
        "link": link,
        "target_type": queries.target_type_label(entry.content_type_id),
        "diff": _diff_rows(entry.changes),
        "data_json": json.dumps(
            entry.additional_data, indent=2, ensure_ascii=False, cls=DjangoJSONEncoder
        )
        if entry.additional_data is not None
        else "",
        "integrity": chain.check_entry(entry.pk),
    }
    if entry.content_type_id is not None:
        context["history_query"] = (
            f"target_type={context['target_type']}&target_id={entry.object_pk}"
        )
    return TemplateResponse(request, "audit/entry.html", context)


_EXPORT_COLUMNS = [
    "id", "time", "event", "actor_id", "actor", "impersonator_id", "impersonator", "target_type", "target_id",
    "target_text", "changes", "data", "ip", "user_agent", "request_id", "source", "seq", "hash",
]  # fmt: skip


def _export_records(filters):
    """Rows as dicts, streamed; runs inside its own transaction so the server-side cursor can
    stream instead of materialising the result."""
    with transaction.atomic():
        for row in queries.export_rows(filters):
            (entry_id, stamp, event, actor_id, actor, impersonator_id, impersonator, content_type_id, target_id,
             target_text, changes, data, ip, user_agent, request_id, source, seq, hash_) = row  # fmt: skip
            yield {
                "id": entry_id, "time": stamp.astimezone(UTC).isoformat(), "event": event, "actor_id": actor_id,
                "actor": actor, "impersonator_id": impersonator_id, "impersonator": impersonator or None,
                "target_type": queries.target_type_label(content_type_id) or None, "target_id": target_id or None,
                "target_text": target_text or None, "changes": changes, "data": data, "ip": ip,
                "user_agent": user_agent or None, "request_id": request_id, "source": source or None,
                "seq": seq, "hash": bytes(hash_).hex() if hash_ is not None else None,
            }  # fmt: skip


class _Echo:
    def write(self, value):
        return value


def _csv_cell(value) -> str:
    if value is None:
        return ""
    text = (
        json.dumps(value, ensure_ascii=False, cls=DjangoJSONEncoder)
        if isinstance(value, dict | list)
        else str(value)
    )
    # A cell starting like a formula would run in a spreadsheet (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_stream(filters):
    writer = csv.writer(_Echo())
    yield "\ufeff" + writer.writerow(_EXPORT_COLUMNS)  # BOM: spreadsheets then read UTF-8
    for item in _export_records(filters):
        yield writer.writerow([_csv_cell(item[column]) for column in _EXPORT_COLUMNS])


def _jsonl_stream(filters):
    for item in _export_records(filters):
        yield json.dumps(item, ensure_ascii=False, cls=DjangoJSONEncoder) + "\n"


@require_GET
@permission_required(VIEW_PERMISSION)
def export(request, fmt: str):
    if fmt not in ("csv", "jsonl"):
        raise Http404(f"Export format {fmt!r} is not offered: use export.csv or export.jsonl.")
    form = FilterForm(request.GET)
    if not form.is_valid():
        problems = "; ".join(
            f"{name}: {' '.join(errors)}" if name != "__all__" else " ".join(errors)
            for name, errors in form.errors.items()
        )
        return HttpResponse(
            f"Cannot export: {problems}\n", status=400, content_type="text/plain; charset=utf-8"
        )
    filters = form.filters()
    # Recorded (and committed) before the first row goes out: an export the client breaks off
    # is still on record.
    record("audit.exported", data={"format": fmt, "filters": filters.as_params()})
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    if fmt == "csv":
        response = StreamingHttpResponse(
            _csv_stream(filters), content_type="text/csv; charset=utf-8"
        )
    else:
        response = StreamingHttpResponse(
            _jsonl_stream(filters), content_type="application/x-ndjson; charset=utf-8"
        )
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{fmt}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
