"""Forms of the shop pages: the console's order filters and refund form, the cart's fields."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from shop.models import MAX_QUANTITY, OrderStatus, WebhookStatus
from shop.money import MoneyError, decimals, parse_amount
from shop.queries import OrderFilters


class OrderFilterForm(forms.Form):
    status = forms.ChoiceField(
        required=False,
        choices=[("", "Any status"), ("paid_any", "Paid (incl. refunded)"), *OrderStatus.choices],
    )
    date_from = forms.DateField(required=False, label="From")
    date_to = forms.DateField(required=False, label="To")
    customer = forms.CharField(required=False, max_length=254)
    currency = forms.RegexField(
        required=False,
        regex=r"^[A-Za-z]{3}$",
        label="Currency",
        error_messages={"invalid": "Use a three-letter currency code such as USD."},
    )
    amount_min = forms.CharField(required=False, max_length=20, label="Amount from")
    amount_max = forms.CharField(required=False, max_length=20, label="Amount to")

    def _amount(self, name: str) -> int | None:
        text = self.cleaned_data.get(name, "").strip()
        if not text:
            return None
        currency = (self.cleaned_data.get("currency") or "usd").lower()
        try:
            value = parse_amount(text, currency)
        except MoneyError as error:
            self.add_error(name, str(error))
            return None
        return value

    def clean(self):
        data = super().clean()
        data["amount_min_minor"] = self._amount("amount_min")
        data["amount_max_minor"] = self._amount("amount_max")
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        low, high = data["amount_min_minor"], data["amount_max_minor"]
        if low is not None and high is not None and low > high:
            self.add_error("amount_max", "The upper amount is below the lower one.")
        return data

    def filters(self) -> OrderFilters:
        data = self.cleaned_data
        return OrderFilters(
            status=data.get("status") or "",
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            customer=(data.get("customer") or "").strip(),
            amount_min=data.get("amount_min_minor"),
            amount_max=data.get("amount_max_minor"),
            currency=(data.get("currency") or "").lower(),
        )


class RefundForm(forms.Form):
    """``full`` refunds everything left; otherwise ``amount`` in the order's currency."""

    full = forms.BooleanField(required=False, label="Refund everything left")
    amount = forms.CharField(required=False, max_length=20)
    reason = forms.CharField(
        required=False, max_length=500, widget=forms.Textarea(attrs={"rows": 2})
    )

    def __init__(self, *args, order, refundable: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.order = order
        self.refundable = refundable
        places = decimals(order.currency)
        self.fields["amount"].widget.attrs.update(
            {"inputmode": "decimal", "placeholder": "0" if places == 0 else "0." + "0" * places}
        )

    def clean(self):
        data = super().clean()
        if data.get("full"):
            data["amount_minor"] = self.refundable
            if self.refundable <= 0:
                raise ValidationError("Nothing is left to refund on this order.")
            return data
        text = (data.get("amount") or "").strip()
        if not text:
            self.add_error(
                "amount", "Enter the amount to refund, or tick “Refund everything left”."
            )
            return data
        try:
            data["amount_minor"] = parse_amount(text, self.order.currency)
        except MoneyError as error:
            self.add_error("amount", str(error))
        return data


class WebhookFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *WebhookStatus.choices])


class CartLineForm(forms.Form):
    price = forms.IntegerField(min_value=1, error_messages={"required": "Choose a product."})
    quantity = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_QUANTITY,
        error_messages={
            "min_value": "The quantity cannot be negative.",
            "max_value": f"At most {MAX_QUANTITY} of one item.",
            "invalid": "The quantity must be a whole number.",
        },
    )
