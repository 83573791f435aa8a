"""Forms of the support pages: they check the shape of what was posted and name what is
wrong; the rules (transitions, who may be assigned, closed tickets) stay in the services."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from tickets.models import (
    BODY_MAX_LENGTH,
    SUBJECT_MAX_LENGTH,
    AssignmentStrategy,
    BusinessCalendar,
    Category,
    Comment,
    CustomerTier,
    Priority,
    Status,
    SupportTeam,
)
from tickets.services import BULK_LIMIT
from tickets.sla import WEEKDAYS, format_day_hours, parse_day_hours

User = get_user_model()

# Customers choose between these; "urgent" is the agents' call. Urgent tickets jump the whole
# queue and get the tightest SLA targets, so letting every requester pick it would fill the top
# of the queue with whatever each customer feels is urgent, and the urgent tickets that matter
# would drown. An agent raises the priority when the ticket warrants it.
CUSTOMER_PRIORITIES = (Priority.LOW, Priority.NORMAL, Priority.HIGH)


def _choice_error(noun: str, values) -> dict[str, str]:
    return {
        "invalid_choice": f"Unknown {noun} %(value)r. Allowed values: {', '.join(values)}.",
    }


class CommentForm(forms.Form):
    """A staff comment: public reply or internal note, optionally a reply to a comment."""

    body = forms.CharField(
        label="Comment",
        max_length=BODY_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 5}),
        error_messages={"required": "Write a comment before sending."},
    )
    is_internal = forms.BooleanField(label="Internal note", required=False)
    parent = forms.ModelChoiceField(
        queryset=Comment.objects.none(),
        required=False,
        widget=forms.HiddenInput,
        error_messages={"invalid_choice": "The comment you replied to is not on this ticket."},
    )

    def __init__(self, *args, ticket=None, **kwargs):
        super().__init__(*args, **kwargs)
        if ticket is not None:
            self.fields["parent"].queryset = Comment.objects.filter(ticket_id=ticket.pk).only(
                "id", "ticket_id", "is_internal", "author_id", "body"
            )


class CustomerReplyForm(forms.Form):
    """A customer's reply on their own ticket: public, always at the end of the thread."""

    body = forms.CharField(
        label="Your reply",
        max_length=BODY_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 5}),
        error_messages={"required": "Write a reply before sending."},
    )


class NewTicketForm(forms.Form):
    """A customer opening a ticket for themselves."""

    subject = forms.CharField(
        max_length=SUBJECT_MAX_LENGTH,
        error_messages={"required": "Give your request a short subject."},
    )
    category = forms.ChoiceField(label="Topic")
    priority = forms.ChoiceField(
        choices=[(p.value, p.label) for p in CUSTOMER_PRIORITIES],
        initial=Priority.NORMAL,
        error_messages=_choice_error("priority", CUSTOMER_PRIORITIES),
    )
    description = forms.CharField(
        max_length=BODY_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 8}),
        error_messages={"required": "Describe what happened and what you expected."},
    )

    def __init__(self, *args, categories, **kwargs):
        super().__init__(*args, **kwargs)
        self.categories = {category.slug: category for category in categories}
        field = self.fields["category"]
        field.choices = [(slug, c.name) for slug, c in self.categories.items()]
        field.error_messages.update(_choice_error("topic", self.categories))

    def clean_category(self):
        return self.categories[self.cleaned_data["category"]]


def _resolve_user(value: str, *, me) -> object | None:
    """``me``, ``none`` (nobody) or a user id → the user, or None for nobody."""
    if value == "me":
        return me
    if value == "none":
        return None
    try:
        pk = int(value)
    except ValueError:
        raise ValidationError(
            "Choose an agent, 'me' or 'none' (got %(value)r).", params={"value": value[:40]}
        ) from None
    user = User.objects.filter(pk=pk).first() if 0 < pk < 2**63 else None
    if user is None:
        raise ValidationError("No user with id %(pk)s.", params={"pk": pk})
    return user


class AssignForm(forms.Form):
    assignee = forms.CharField(
        max_length=40, error_messages={"required": "Choose who to assign the ticket to."}
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_assignee(self):
        return _resolve_user(self.cleaned_data["assignee"].strip(), me=self.user)


class StatusForm(forms.Form):
    status = forms.ChoiceField(
        choices=Status.choices,
        error_messages={
            "required": "Choose a status.",
            **_choice_error("status", Status.values),
        },
    )


class TierForm(forms.Form):
    tier = forms.ChoiceField(
        choices=CustomerTier.choices,
        error_messages={
            "required": "Choose a support plan.",
            **_choice_error("tier", CustomerTier.values),
        },
    )


class UpdateForm(forms.Form):
    """Priority and/or category; a field left out is left as it is."""

    priority = forms.ChoiceField(
        choices=Priority.choices,
        required=False,
        error_messages=_choice_error("priority", Priority.values),
    )
    category = forms.ChoiceField(required=False)

    def __init__(self, *args, categories, **kwargs):
        super().__init__(*args, **kwargs)
        self.categories = {category.slug: category for category in categories}
        self.fields["category"].choices = [("", "")] + [
            (slug, c.name) for slug, c in self.categories.items()
        ]
        self.fields["category"].error_messages.update(_choice_error("category", self.categories))

    def clean_category(self):
        slug = self.cleaned_data["category"]
        return self.categories[slug] if slug else None

    def clean(self):
        data = super().clean()
        if not self.errors and not data.get("priority") and data.get("category") is None:
            raise ValidationError("Choose a priority or a category to change.")
        return data


class TicketIdsField(forms.Field):
    """The checked rows of the queue: repeated ``ticket`` values, each a ticket id."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value):
        ids = []
        for item in value or []:
            try:
                ids.append(int(item))
            except (TypeError, ValueError):
                raise ValidationError(
                    "Ticket ids are whole numbers (got %(value)r).",
                    params={"value": str(item)[:40]},
                ) from None
        return ids

    def validate(self, value):
        if not value:
            raise ValidationError("Select at least one ticket.")
        if len(set(value)) > BULK_LIMIT:
            raise ValidationError(f"At most {BULK_LIMIT} tickets at once (got {len(set(value))}).")
        if any(not 0 < pk < 2**63 for pk in value):
            raise ValidationError("Ticket ids are positive numbers.")


class BulkForm(forms.Form):
    ACTIONS = {"assign": "Assign", "status": "Change status", "close": "Close"}

    action = forms.ChoiceField(
        choices=list(ACTIONS.items()),
        error_messages={
            "required": "Choose what to do with the selected tickets.",
            **_choice_error("action", ACTIONS),
        },
    )
    ticket = TicketIdsField()
    assignee = forms.CharField(max_length=40, required=False)
    status = forms.ChoiceField(
        choices=[("", "")] + list(Status.choices),
        required=False,
        error_messages=_choice_error("status", Status.values),
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_assignee(self):
        value = self.cleaned_data["assignee"].strip()
        return _resolve_user(value, me=self.user) if value else ""

    def clean(self):
        data = super().clean()
        action = data.get("action")
        if action == "assign" and data.get("assignee") == "":
            self.add_error("assignee", "Choose who to assign the selected tickets to.")
        if action == "status" and not data.get("status"):
            self.add_error("status", "Choose the status to move the selected tickets to.")
        return data


class SavedViewForm(forms.Form):
    name = forms.CharField(
        max_length=60, error_messages={"required": "Name the view before saving it."}
    )
    query = forms.CharField(max_length=1000, required=False)


# --- SLA settings and assignment (tickets/sla_views.py) --------------------------------------


class PolicyForm(forms.Form):
    name = forms.CharField(max_length=100)
    position = forms.IntegerField(min_value=0, max_value=1_000_000, initial=100)
    priority = forms.ChoiceField(
        choices=Priority.choices, error_messages=_choice_error("priority", Priority.values)
    )
    category = forms.ModelChoiceField(
        queryset=None, required=False, empty_label="Any category", to_field_name="slug"
    )
    customer_tier = forms.ChoiceField(
        choices=[("", "Any tier"), *CustomerTier.choices],
        required=False,
        error_messages=_choice_error("tier", CustomerTier.values),
    )
    first_response_minutes = forms.IntegerField(
        min_value=1, max_value=525_600, label="First response (minutes)"
    )
    resolution_minutes = forms.IntegerField(
        min_value=1, max_value=525_600, label="Resolution (minutes)"
    )
    calendar = forms.ModelChoiceField(
        queryset=None, required=False, empty_label="Around the clock (24/7)"
    )
    is_active = forms.BooleanField(required=False, initial=True, label="Active")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["category"].queryset = Category.objects.order_by("position", "name")
        self.fields["calendar"].queryset = BusinessCalendar.objects.order_by("name")

    @classmethod
    def initial_for(cls, policy) -> dict:
        return {
            "name": policy.name,
            "position": policy.position,
            "priority": policy.priority,
            "category": policy.category.slug if policy.category_id else "",
            "customer_tier": policy.customer_tier,
            "first_response_minutes": policy.first_response_minutes,
            "resolution_minutes": policy.resolution_minutes,
            "calendar": policy.calendar_id,
            "is_active": policy.is_active,
        }


class CalendarForm(forms.Form):
    """A business calendar; each weekday's hours as text (``09:00-17:00``, empty = closed)."""

    name = forms.CharField(max_length=100)
    time_zone = forms.CharField(max_length=64, initial="UTC")
    always_open = forms.BooleanField(required=False, label="Around the clock (24/7)")
    holiday_country = forms.CharField(max_length=3, required=False, label="Holidays of country")
    holiday_subdivision = forms.CharField(max_length=10, required=False, label="Subdivision")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for n, day in enumerate(WEEKDAYS):
            self.fields[f"day_{n}"] = forms.CharField(
                max_length=100,
                required=False,
                label=day,
                initial="09:00-17:00" if n < 5 else "",
            )

    def day_fields(self):
        return [self[f"day_{n}"] for n in range(7)]

    def clean(self):
        data = super().clean()
        weekly = []
        for n, day in enumerate(WEEKDAYS):
            try:
                weekly.append(parse_day_hours(data.get(f"day_{n}", ""), day=day))
            except ValidationError as error:
                self.add_error(f"day_{n}", error)
        data["weekly_hours"] = weekly
        return data

    @classmethod
    def initial_for(cls, calendar) -> dict:
        weekly = calendar.weekly_hours or [[]] * 7
        return {
            "name": calendar.name,
            "time_zone": calendar.time_zone,
            "always_open": calendar.always_open,
            "holiday_country": calendar.holiday_country,
            "holiday_subdivision": calendar.holiday_subdivision,
            **{f"day_{n}": format_day_hours(weekly[n]) for n in range(7)},
        }


class HolidayForm(forms.Form):
    date = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    name = forms.CharField(max_length=100, required=False)


class AgentForm(forms.Form):
    max_open_tickets = forms.IntegerField(min_value=0, max_value=10_000, label="Cap")
    is_available = forms.BooleanField(required=False, label="Available")


class RoutingForm(forms.Form):
    category = forms.ModelChoiceField(queryset=Category.objects.all(), to_field_name="slug")
    team = forms.ModelChoiceField(queryset=SupportTeam.objects.all(), required=False)
    strategy = forms.ChoiceField(
        choices=AssignmentStrategy.choices,
        error_messages=_choice_error("strategy", AssignmentStrategy.values),
    )


class TeamForm(forms.Form):
    name = forms.CharField(max_length=100)
    members = forms.ModelMultipleChoiceField(queryset=None, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from tickets.queries import assignable_agents

        self.fields["members"].queryset = assignable_agents()


class AvailabilityForm(forms.Form):
    available = forms.TypedChoiceField(
        choices=[("1", "Available"), ("0", "Away")],
        coerce=lambda value: value == "1",
        error_messages={"invalid_choice": "Send available=1 (available) or available=0 (away)."},
    )
