"""Forms of the impersonation pages: starting a session, and the console's list filters."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from impersonation import queries, services
from impersonation.models import MAX_REASON_LENGTH, EndReason


class StartForm(forms.Form):
    """``POST /admin/impersonation/start``: ``user`` (an id, username or email), ``reason``,
    optional ``ticket`` (an id, or ``#number``) and ``next``."""

    user = forms.CharField(
        label="Customer",
        max_length=254,
        error_messages={
            "required": "Choose the customer: their username, email address or user id."
        },
    )
    reason = forms.CharField(
        max_length=MAX_REASON_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={
            "required": "Give a reason for impersonating: it is recorded in the audit trail."
        },
    )
    ticket = forms.CharField(label="Ticket", required=False, max_length=30)
    next = forms.CharField(required=False, max_length=2000)

    def clean_user(self):
        try:
            return queries.find_user(self.cleaned_data["user"])
        except queries.NotFoundError as exc:
            raise ValidationError(str(exc)) from None

    def clean_reason(self):
        try:
            return services.clean_reason(self.cleaned_data["reason"])
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["reason"]) from None

    def clean_ticket(self):
        try:
            return queries.find_ticket(self.cleaned_data["ticket"])
        except queries.NotFoundError as exc:
            raise ValidationError(str(exc)) from None

    def clean(self):
        data = super().clean()
        user, ticket = data.get("user"), data.get("ticket")
        if user is not None and ticket is not None and ticket.requester_id != user.pk:
            self.add_error(
                "ticket",
                f"Ticket #{ticket.ticket_number} was opened by someone else; link one of "
                f"{user.get_username()}'s tickets, or none.",
            )
        return data


class FilterForm(forms.Form):
    status = forms.ChoiceField(
        required=False, choices=[("", "All"), ("active", "Active"), ("ended", "Ended")]
    )
    end_reason = forms.ChoiceField(
        required=False, label="Ended", choices=[("", "Any way"), *EndReason.choices]
    )
    staff = forms.CharField(required=False, max_length=254, label="Staff member")
    customer = forms.CharField(required=False, max_length=254)
    date_from = forms.DateField(required=False, label="From")
    date_to = forms.DateField(required=False, label="To")
    q = forms.CharField(required=False, max_length=200, label="Reason contains")

    def _user_id(self, name: str, what: str):
        value = self.cleaned_data[name].strip()
        if not value:
            return None
        user_id = queries.user_id_for(value)
        if user_id is None:
            raise ValidationError(f"There is no {what} {value!r} (give a username, email or id).")
        return user_id

    def clean_staff(self):
        return self._user_id("staff", "staff member")

    def clean_customer(self):
        return self._user_id("customer", "customer")

    def clean(self):
        data = super().clean()
        since, until = data.get("date_from"), data.get("date_to")
        if since and until and since > until:
            self.add_error("date_to", "The end date is before the start date.")
        return data

    def filters(self) -> queries.SessionFilters:
        data = self.cleaned_data
        return queries.SessionFilters(
            status=data["status"],
            end_reason=data["end_reason"],
            impersonator_id=data["staff"],
            customer_id=data["customer"],
            since=data["date_from"],
            until=data["date_to"],
            search=data["q"].strip(),
        )
