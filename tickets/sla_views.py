"""Console pages of the SLA engine and automatic assignment, under /admin/support/:

    sla/                       compliance report (Plotly charts, table, ?format=csv)
    sla/policies/              SLA policies: list, add; <id>/ edit, <id>/delete/
    sla/calendars/             business calendars: list, add; <id>/ edit with custom holidays
    agents/                    each agent's availability, cap and load; routing per category;
                               teams (leads)
    me/                        the signed-in agent's availability and unread notifications
                               (a fragment the queue and ticket pages load); me/availability/
    notifications/             the signed-in staff member's notifications; notifications/read/

Thin views as in tickets/views.py: forms check the shape, services apply the rules; errors
re-render the page with status 400 (403 for a rule that needs another role) and change
nothing; success redirects (303) with a message.
"""

from __future__ import annotations

import csv
import datetime as dt

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from adminsite.decorators import permission_required
from tickets import queries, services, sla
from tickets.forms import (
    AgentForm,
    AvailabilityForm,
    CalendarForm,
    HolidayForm,
    PolicyForm,
    RoutingForm,
    TeamForm,
)
from tickets.models import (
    AssignmentStrategy,
    BusinessCalendar,
    CalendarHoliday,
    Category,
    SLAPolicy,
    SupportTeam,
    Ticket,
)

User = get_user_model()

VIEW = "tickets.view_ticket"
WORK = "tickets.change_ticket"
VIEW_REPORT = "tickets.view_slatarget"
VIEW_POLICIES = "tickets.view_slapolicy"
EDIT_POLICIES = "tickets.change_slapolicy"
VIEW_CALENDARS = "tickets.view_businesscalendar"
EDIT_CALENDARS = "tickets.change_businesscalendar"
VIEW_AGENTS = "tickets.view_agentprofile"
EDIT_AGENTS = "tickets.change_agentprofile"

REPORT_WEEKS = (4, 8, 12, 26, 52)
DEFAULT_WEEKS = 8


def _errors(error: ValidationError | PermissionDenied) -> list[str]:
    if isinstance(error, PermissionDenied):
        return [str(error) or "You may not do this."]
    if hasattr(error, "error_dict"):
        return [
            f"{k.replace('_', ' ').capitalize()}: {m}" if k != "__all__" else m
            for k, ms in error.message_dict.items()
            for m in ms
        ]
    return list(error.messages)


def _form_errors(form) -> list[str]:
    found = []
    for name, errors in form.errors.items():
        label = form.fields[name].label if name in form.fields else None
        label = label or (name.replace("_", " ").capitalize() if name != "__all__" else "")
        found.extend(f"{label}: {e}" if label else e for e in errors)
    return found


def _status(error) -> int:
    return 403 if isinstance(error, PermissionDenied) else 400


def _redirect(name: str, *args, message: str = "", request=None) -> HttpResponseRedirect:
    if message and request is not None:
        messages.success(request, message)
    return HttpResponseRedirect(reverse(name, args=args), status=303)


# --- the report ------------------------------------------------------------------------------


def _pct(value) -> str:
    return "" if value is None else f"{value:.1f}"


@require_GET
@permission_required(VIEW_REPORT)
def sla_report(request):
    raw = request.GET.get("weeks", "")
    error = None
    weeks = DEFAULT_WEEKS
    if raw:
        if raw.isdigit() and int(raw) in REPORT_WEEKS:
            weeks = int(raw)
        else:
            error = f"weeks: choose one of {', '.join(map(str, REPORT_WEEKS))} (got {raw[:20]!r})."
    fmt = request.GET.get("format", "")
    if fmt not in ("", "csv"):
        error = f"format: only 'csv' is offered (got {fmt[:20]!r})."
    now = timezone.now()
    zone = timezone.get_current_timezone_name()
    local_today = timezone.localtime(now).date()
    start_day = local_today - dt.timedelta(days=local_today.weekday() + 7 * (weeks - 1))
    since = dt.datetime.combine(start_day, dt.time(0), tzinfo=timezone.get_current_timezone())
    report = queries.sla_compliance(since=since, until=now, zone=zone) if not error else {}
    if fmt == "csv" and not error:
        return _report_csv(report, start_day, local_today)
    charts = []
    if report:
        for dimension, title in (
            ("priority", "By priority"),
            ("agent", "By agent"),
            ("category", "By category"),
            ("week", "By week"),
        ):
            rows = report[dimension]
            charts.append(
                {
                    "name": dimension,
                    "title": title,
                    "labels": [r.label for r in rows],
                    "first": [r.first_pct for r in rows],
                    "resolution": [r.resolution_pct for r in rows],
                    "counts": [r.first_total + r.resolution_total for r in rows],
                }
            )
    total = report["total"][0] if report and report["total"] else None
    context = {
        "title": "SLA report",
        "weeks": weeks,
        "week_choices": REPORT_WEEKS,
        "since_day": start_day,
        "report": report,
        "total": total,
        "charts": charts,
        "sections": [
            ("priority", "Priority"),
            ("agent", "Agent"),
            ("category", "Category"),
            ("week", "Week"),
        ],
        "report_error": error,
        "can_edit_policies": request.user.has_perm(EDIT_POLICIES),
    }
    return TemplateResponse(
        request, "tickets/sla_report.html", context, status=400 if error else 200
    )


def _report_csv(report, since_day, until_day) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="sla-report-{since_day.isoformat()}-{until_day.isoformat()}.csv"'
    )
    writer = csv.writer(response)
    writer.writerow(
        [
            "dimension",
            "group",
            "first_response_met",
            "first_response_total",
            "first_response_compliance_pct",
            "resolution_met",
            "resolution_total",
            "resolution_compliance_pct",
            "overall_compliance_pct",
            "avg_overrun_hours",
        ]
    )
    for dimension in (*queries.REPORT_DIMENSIONS, "total"):
        for row in report[dimension]:
            label = str(row.label)
            if label[:1] in ("=", "+", "-", "@"):
                label = "'" + label  # never a formula in a spreadsheet
            writer.writerow(
                [
                    dimension,
                    label,
                    row.first_met,
                    row.first_total,
                    _pct(row.first_pct),
                    row.resolution_met,
                    row.resolution_total,
                    _pct(row.resolution_pct),
                    _pct(row.overall_pct),
                    ""
                    if row.avg_overrun_seconds is None
                    else f"{row.avg_overrun_seconds / 3600:.2f}",
                ]
            )
    return response


# --- policies --------------------------------------------------------------------------------


def _policy_values(form) -> dict:
    data = form.cleaned_data
    return {
        "name": data["name"],
        "position": data["position"],
        "priority": data["priority"],
        "category": data["category"],
        "customer_tier": data["customer_tier"] or "",
        "first_response_minutes": data["first_response_minutes"],
        "resolution_minutes": data["resolution_minutes"],
        "calendar": data["calendar"],
        "is_active": data["is_active"],
    }


def _policies_page(request, *, form, status=200, errors=None):
    policies = list(
        SLAPolicy.objects.select_related("category", "calendar").order_by("position", "id")
    )
    context = {
        "title": "SLA policies",
        "policies": policies,
        "form": form,
        "form_errors": errors or (_form_errors(form) if form.is_bound else []),
        "can_edit": request.user.has_perm(EDIT_POLICIES),
    }
    return TemplateResponse(request, "tickets/sla_policies.html", context, status=status)


@require_http_methods(["GET", "POST"])
@permission_required(VIEW_POLICIES)
def policies(request):
    if request.method == "GET":
        return _policies_page(
            request, form=PolicyForm(initial={"position": 100, "is_active": True})
        )
    if not request.user.has_perm("tickets.add_slapolicy"):
        raise PermissionDenied("Adding SLA policies needs the permission tickets.add_slapolicy.")
    form = PolicyForm(request.POST)
    if not form.is_valid():
        return _policies_page(request, form=form, status=400)
    try:
        policy = services.create_sla_policy(actor=request.user, **_policy_values(form))
    except (ValidationError, PermissionDenied) as error:
        return _policies_page(request, form=form, status=_status(error), errors=_errors(error))
    return _redirect(
        "tickets:sla-policies", message=f"Added the policy “{policy.name}”.", request=request
    )


def _policy_page(request, policy, *, form, status=200, errors=None):
    context = {
        "title": f"SLA policy {policy.name}",
        "policy": policy,
        "form": form,
        "form_errors": errors or (_form_errors(form) if form.is_bound else []),
        "can_edit": request.user.has_perm(EDIT_POLICIES),
        "can_delete": request.user.has_perm("tickets.delete_slapolicy"),
    }
    return TemplateResponse(request, "tickets/sla_policy.html", context, status=status)


@require_http_methods(["GET", "POST"])
@permission_required(VIEW_POLICIES)
def policy_edit(request, pk):
    policy = get_object_or_404(SLAPolicy.objects.select_related("category", "calendar"), pk=pk)
    if request.method == "GET":
        return _policy_page(
            request, policy, form=PolicyForm(initial=PolicyForm.initial_for(policy))
        )
    if not request.user.has_perm(EDIT_POLICIES):
        raise PermissionDenied(f"Changing SLA policies needs the permission {EDIT_POLICIES}.")
    form = PolicyForm(request.POST)
    if not form.is_valid():
        return _policy_page(request, policy, form=form, status=400)
    try:
        services.update_sla_policy(actor=request.user, policy=policy, **_policy_values(form))
    except (ValidationError, PermissionDenied) as error:
        return _policy_page(
            request, policy, form=form, status=_status(error), errors=_errors(error)
        )
    return _redirect(
        "tickets:sla-policies",
        message=f"Saved the policy “{form.cleaned_data['name']}”.",
        request=request,
    )


@require_POST
@permission_required(VIEW_POLICIES, "tickets.delete_slapolicy")
def policy_delete(request, pk):
    policy = get_object_or_404(SLAPolicy, pk=pk)
    services.delete_sla_policy(actor=request.user, policy=policy)
    return _redirect(
        "tickets:sla-policies", message=f"Deleted the policy “{policy.name}”.", request=request
    )


# --- calendars -------------------------------------------------------------------------------


def _calendar_values(form) -> dict:
    data = form.cleaned_data
    return {
        "name": data["name"],
        "time_zone": data["time_zone"],
        "always_open": data["always_open"],
        "weekly_hours": data["weekly_hours"],
        "holiday_country": data["holiday_country"],
        "holiday_subdivision": data["holiday_subdivision"],
    }


def _calendars_page(request, *, form, status=200, errors=None):
    calendars = list(
        BusinessCalendar.objects.annotate(
            policy_count=Count("policies", distinct=True),
            holiday_count=Count("custom_holidays", distinct=True),
        ).order_by("name")
    )
    for calendar in calendars:
        weekly = calendar.weekly_hours or [[]] * 7
        calendar.hours = [
            (day[:3], sla.format_day_hours(weekly[n]) or "closed")
            for n, day in enumerate(sla.WEEKDAYS)
        ]
    context = {
        "title": "Business calendars",
        "calendars": calendars,
        "form": form,
        "form_errors": errors or (_form_errors(form) if form.is_bound else []),
        "can_edit": request.user.has_perm(EDIT_CALENDARS),
    }
    return TemplateResponse(request, "tickets/sla_calendars.html", context, status=status)


@require_http_methods(["GET", "POST"])
@permission_required(VIEW_CALENDARS)
def calendars(request):
    if request.method == "GET":
        return _calendars_page(
            request, form=CalendarForm(initial={"time_zone": timezone.get_current_timezone_name()})
        )
    if not request.user.has_perm("tickets.add_businesscalendar"):
        raise PermissionDenied(
            "Adding calendars needs the permission tickets.add_businesscalendar."
        )
    form = CalendarForm(request.POST)
    if not form.is_valid():
        return _calendars_page(request, form=form, status=400)
    try:
        calendar = services.create_calendar(actor=request.user, **_calendar_values(form))
    except (ValidationError, PermissionDenied) as error:
        return _calendars_page(request, form=form, status=_status(error), errors=_errors(error))
    return _redirect(
        "tickets:sla-calendar",
        calendar.pk,
        message=f"Added the calendar “{calendar.name}”.",
        request=request,
    )


def _calendar_page(request, calendar, *, form, holiday_form=None, status=200, errors=None):
    schedule = sla.schedule_for(calendar)
    today = timezone.localdate()
    public = []
    if calendar.holiday_country and not calendar.always_open:
        import holidays as holiday_package

        found = holiday_package.country_holidays(
            calendar.holiday_country,
            subdiv=calendar.holiday_subdivision or None,
            years=[today.year, today.year + 1],
        )
        public = sorted((day, name) for day, name in found.items() if day >= today)[:12]
    now = timezone.now()
    context = {
        "title": f"Calendar {calendar.name}",
        "calendar": calendar,
        "form": form,
        "holiday_form": holiday_form or HolidayForm(),
        "form_errors": errors or (_form_errors(form) if form.is_bound else []),
        "holidays": list(calendar.custom_holidays.order_by("date")),
        "public_holidays": public,
        "policies": list(calendar.policies.order_by("position", "id")),
        "open_now": sla.is_open(schedule, now),
        "next_open": sla.next_open(schedule, now),
        "can_edit": request.user.has_perm(EDIT_CALENDARS),
    }
    return TemplateResponse(request, "tickets/sla_calendar.html", context, status=status)


@require_http_methods(["GET", "POST"])
@permission_required(VIEW_CALENDARS)
def calendar_edit(request, pk):
    calendar = get_object_or_404(BusinessCalendar, pk=pk)
    if request.method == "GET":
        return _calendar_page(
            request, calendar, form=CalendarForm(initial=CalendarForm.initial_for(calendar))
        )
    if not request.user.has_perm(EDIT_CALENDARS):
        raise PermissionDenied(f"Changing calendars needs the permission {EDIT_CALENDARS}.")
    form = CalendarForm(request.POST)
    if not form.is_valid():
        return _calendar_page(request, calendar, form=form, status=400)
    try:
        services.update_calendar(actor=request.user, calendar=calendar, **_calendar_values(form))
    except (ValidationError, PermissionDenied) as error:
        return _calendar_page(
            request, calendar, form=form, status=_status(error), errors=_errors(error)
        )
    return _redirect(
        "tickets:sla-calendar", calendar.pk, message="Saved the calendar.", request=request
    )


@require_POST
@permission_required(VIEW_CALENDARS, EDIT_CALENDARS)
def calendar_holiday(request, pk):
    calendar = get_object_or_404(BusinessCalendar, pk=pk)
    form = HolidayForm(request.POST)
    page_form = CalendarForm(initial=CalendarForm.initial_for(calendar))
    if not form.is_valid():
        return _calendar_page(
            request,
            calendar,
            form=page_form,
            holiday_form=form,
            status=400,
            errors=_form_errors(form),
        )
    try:
        services.add_calendar_holiday(
            actor=request.user,
            calendar=calendar,
            date=form.cleaned_data["date"],
            name=form.cleaned_data["name"],
        )
    except ValidationError as error:
        return _calendar_page(
            request, calendar, form=page_form, holiday_form=form, status=400, errors=_errors(error)
        )
    return _redirect(
        "tickets:sla-calendar",
        calendar.pk,
        message=f"{form.cleaned_data['date']:%-d %b %Y} is now a closed day.",
        request=request,
    )


@require_POST
@permission_required(VIEW_CALENDARS, EDIT_CALENDARS)
def calendar_holiday_delete(request, pk, holiday_pk):
    holiday = get_object_or_404(CalendarHoliday, pk=holiday_pk, calendar_id=pk)
    services.remove_calendar_holiday(actor=request.user, holiday=holiday)
    return _redirect(
        "tickets:sla-calendar",
        pk,
        message=f"{holiday.date:%-d %b %Y} is open again.",
        request=request,
    )


# --- agents, routing, teams ------------------------------------------------------------------


def _agents_page(request, *, status=200, errors=None):
    categories = list(Category.objects.select_related("team").order_by("position", "name"))
    teams = list(SupportTeam.objects.prefetch_related("members").order_by("name"))
    rows = queries.agent_loads()
    context = {
        "title": "Agents and routing",
        "rows": rows,
        "categories": categories,
        "teams": teams,
        "strategies": AssignmentStrategy.choices,
        "flagged": Ticket.objects.active().filter(needs_assignment=True).count(),
        "agents": [row["agent"] for row in rows],
        "page_errors": errors or [],
        "can_edit": request.user.has_perm(EDIT_AGENTS),
        "can_route": request.user.has_perm("tickets.change_category"),
        "can_edit_teams": request.user.has_perm("tickets.change_supportteam"),
        "queue_url": reverse("tickets:queue"),
    }
    return TemplateResponse(request, "tickets/agents.html", context, status=status)


@require_GET
@permission_required(VIEW_AGENTS)
def agents(request):
    return _agents_page(request)


@require_POST
@permission_required(VIEW_AGENTS, EDIT_AGENTS)
def agent_update(request, pk):
    agent = get_object_or_404(User, pk=pk, is_staff=True)
    form = AgentForm(request.POST)
    if not form.is_valid():
        return _agents_page(request, status=400, errors=_form_errors(form))
    try:
        services.set_agent_cap(
            actor=request.user, agent=agent, max_open_tickets=form.cleaned_data["max_open_tickets"]
        )
        services.set_availability(
            actor=request.user, agent=agent, available=form.cleaned_data["is_available"]
        )
    except (ValidationError, PermissionDenied) as error:
        return _agents_page(request, status=_status(error), errors=_errors(error))
    return _redirect(
        "tickets:agents",
        message=f"Saved {agent.get_full_name() or agent.get_username()}.",
        request=request,
    )


@require_POST
@permission_required(VIEW_AGENTS, "tickets.change_category")
def routing(request):
    form = RoutingForm(request.POST)
    if not form.is_valid():
        return _agents_page(request, status=400, errors=_form_errors(form))
    data = form.cleaned_data
    try:
        services.set_category_routing(
            actor=request.user,
            category=data["category"],
            team=data["team"],
            strategy=data["strategy"],
        )
    except (ValidationError, PermissionDenied) as error:
        return _agents_page(request, status=_status(error), errors=_errors(error))
    return _redirect(
        "tickets:agents", message=f"Saved routing of {data['category'].name}.", request=request
    )


@require_POST
@permission_required(VIEW_AGENTS, "tickets.add_supportteam")
def team_create(request):
    form = TeamForm(request.POST)
    if not form.is_valid():
        return _agents_page(request, status=400, errors=_form_errors(form))
    try:
        team = services.create_team(
            actor=request.user, name=form.cleaned_data["name"], members=form.cleaned_data["members"]
        )
    except (ValidationError, PermissionDenied) as error:
        return _agents_page(request, status=_status(error), errors=_errors(error))
    return _redirect("tickets:agents", message=f"Added the team “{team.name}”.", request=request)


@require_POST
@permission_required(VIEW_AGENTS, "tickets.change_supportteam")
def team_members(request, pk):
    team = get_object_or_404(SupportTeam, pk=pk)
    form = TeamForm({"name": team.name, "members": request.POST.getlist("members")})
    if not form.is_valid():
        return _agents_page(request, status=400, errors=_form_errors(form))
    try:
        services.set_team_members(
            actor=request.user, team=team, members=form.cleaned_data["members"]
        )
    except (ValidationError, PermissionDenied) as error:
        return _agents_page(request, status=_status(error), errors=_errors(error))
    return _redirect(
        "tickets:agents", message=f"Saved the members of “{team.name}”.", request=request
    )


# --- the signed-in agent: availability and notifications -------------------------------------


def _me_fragment(request, *, status=200, error=None):
    context = {
        **queries.my_status(request.user),
        "can_work": request.user.has_perm(WORK),
        "me_error": error,
    }
    return TemplateResponse(request, "tickets/includes/me.html", context, status=status)


@require_GET
@permission_required(VIEW)
def me(request):
    return _me_fragment(request)


@require_POST
@permission_required(VIEW, WORK)
def my_availability(request):
    form = AvailabilityForm(request.POST)
    if form.is_valid():
        try:
            services.set_availability(
                actor=request.user, agent=request.user, available=form.cleaned_data["available"]
            )
        except (ValidationError, PermissionDenied) as error:
            form.add_error(None, _errors(error))
    if not form.is_valid():
        if request.htmx:
            return _me_fragment(request, status=400, error="; ".join(_form_errors(form)))
        return HttpResponse("; ".join(_form_errors(form)), status=400, content_type="text/plain")
    if request.htmx:
        return _me_fragment(request)
    state = "available" if form.cleaned_data["available"] else "away"
    messages.success(request, f"You are now {state}.")
    return HttpResponseRedirect(
        request.POST.get("next") if _safe_next(request) else reverse("tickets:queue"), status=303
    )


def _safe_next(request) -> bool:
    from django.utils.http import url_has_allowed_host_and_scheme

    target = request.POST.get("next", "")
    return bool(target) and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}
    )


@require_GET
@permission_required(VIEW)
def notifications(request):
    context = {
        "title": "Notifications",
        "notifications": queries.notifications_for(request.user),
        **queries.my_status(request.user),
    }
    return TemplateResponse(request, "tickets/notifications.html", context)


@require_POST
@permission_required(VIEW)
def notifications_read(request):
    raw = request.POST.getlist("id")
    ids = None
    if raw:
        try:
            ids = [int(value) for value in raw]
        except ValueError:
            return HttpResponse(
                "id: give notification ids as whole numbers.", status=400, content_type="text/plain"
            )
    count = services.mark_notifications_read(actor=request.user, ids=ids)
    messages.success(request, f"Marked {count} notification{'s' if count != 1 else ''} read.")
    return HttpResponseRedirect(reverse("tickets:notifications"), status=303)
