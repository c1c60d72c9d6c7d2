"""How the API shows each object — ``represent(obj) -> dict`` — and the DRF serializers behind it.

One representation per model, used by every response of the API, by the OpenAPI schema (these serializers are
its response components) and by outgoing webhooks (their payload is the event with ``represent`` of its object).
Every object has ``object`` (its kind) and ``id``. Amounts are decimal strings with exactly the currency's minor
units (``"119.00"`` EUR, ``"500"`` JPY, ``"1.250"`` BHD) next to the object's ``currency``; unit amounts of prices
keep their extra decimals (``"0.0125"``). Never a float. Dates are ISO ``YYYY-MM-DD`` (billing dates, in
``BILLING_TIMEZONE``), times ISO 8601 in UTC.

Lists must load related rows in bounded queries: each serializer's ``prefetch`` names what a queryset of its model
needs (``represent_many`` and the views apply it).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any, ClassVar

from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.models import DomainEvent
from core.money import quantum
from customers.models import Customer
from invoicing.models import CreditNote, CreditNoteLine, Invoice, InvoiceLine
from payments.models import Payment, PaymentAllocation, PaymentAttempt, Refund
from subscriptions.models import Coupon, Price, PriceTier, Product, Subscription, SubscriptionItem


def amount_text(value: Decimal | None, currency: str) -> str | None:
    """An amount with exactly the currency's minor units (the stored value is already rounded to them)."""
    if value is None:
        return None
    return str(Decimal(value).quantize(quantum(currency)))


def unit_amount_text(value: Decimal | None, currency: str) -> str | None:
    """A unit amount: at least the currency's minor units, more where the price has them (0.0125)."""
    if value is None:
        return None
    value = Decimal(value)
    rounded = value.quantize(quantum(currency))
    if rounded == value:
        return str(rounded)
    return format(value.normalize(), "f")


@extend_schema_field(OpenApiTypes.STR)
class AmountField(serializers.Field):
    """A decimal column shown as a string in the currency of ``currency_source`` on the same object."""

    def __init__(self, *, currency_source: str = "currency", unit: bool = False, **kwargs: Any) -> None:
        self.currency_source = currency_source
        self.unit = unit
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def get_attribute(self, instance: Any) -> Any:
        value = super().get_attribute(instance)
        currency = instance
        for part in self.currency_source.split("."):
            currency = getattr(currency, part)
        return (value, str(currency))

    def to_representation(self, value: tuple[Decimal | None, str]) -> str | None:
        amount, currency = value
        return unit_amount_text(amount, currency) if self.unit else amount_text(amount, currency)


class ApiSerializer(serializers.Serializer):
    """Read-only output; ``object`` names the kind. ``prefetch`` / ``select`` are what a list of it needs."""

    object_name: ClassVar[str] = ""
    select: ClassVar[tuple[str, ...]] = ()
    prefetch: ClassVar[tuple[Any, ...]] = ()

    object = serializers.SerializerMethodField()
    id = serializers.IntegerField(read_only=True)

    def get_object(self, instance: Any) -> str:
        return self.object_name


class CustomerOut(ApiSerializer):
    object_name = "customer"
    external_id = serializers.CharField()
    name = serializers.CharField()
    legal_name = serializers.CharField()
    email = serializers.EmailField()
    cc_emails = serializers.CharField()
    phone = serializers.CharField()
    address_line1 = serializers.CharField()
    address_line2 = serializers.CharField()
    postal_code = serializers.CharField()
    city = serializers.CharField()
    region = serializers.CharField()
    country = serializers.CharField()
    tax_id = serializers.CharField()
    tax_status = serializers.CharField()
    currency = serializers.CharField()
    payment_terms_days = serializers.IntegerField()
    language = serializers.CharField()
    metadata = serializers.JSONField()
    parent = serializers.IntegerField(
        source="parent_id", allow_null=True, help_text="The parent account's id (one level), or null."
    )
    billing_mode = serializers.CharField(help_text="own, consolidated or parent_pays (with a parent).")
    is_archived = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ProductOut(ApiSerializer):
    object_name = "product"
    name = serializers.CharField()
    statement_descriptor = serializers.CharField()
    description = serializers.CharField()
    active = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class PriceTierOut(serializers.Serializer):
    up_to = serializers.IntegerField(allow_null=True)
    unit_amount = AmountField(currency_source="price.currency", unit=True)
    flat_amount = AmountField(currency_source="price.currency", unit=True)


class PriceOut(ApiSerializer):
    object_name = "price"
    select = ("product", "metric")
    prefetch = ("tiers",)
    product = serializers.IntegerField(source="product_id")
    nickname = serializers.CharField()
    currency = serializers.CharField()
    unit_amount = serializers.SerializerMethodField()
    interval = serializers.CharField()
    interval_count = serializers.IntegerField()
    pricing_model = serializers.CharField()
    usage_type = serializers.CharField()
    metric = serializers.CharField(
        source="metric.code",
        read_only=True,
        allow_null=True,
        default=None,
        help_text="Metered: the billable metric's code.",
    )
    package_size = serializers.IntegerField(allow_null=True)
    trial_days = serializers.IntegerField()
    tax_behavior = serializers.CharField()
    tiers = serializers.SerializerMethodField()
    active = serializers.BooleanField()
    created_at = serializers.DateTimeField()

    def get_unit_amount(self, price: Price) -> str | None:
        return unit_amount_text(price.unit_amount.amount, price.currency)

    @extend_schema_field(PriceTierOut(many=True))
    def get_tiers(self, price: Price) -> list[dict[str, Any]]:
        tiers = sorted(price.tiers.all(), key=lambda tier: (tier.up_to is None, tier.up_to or 0, tier.pk))
        for tier in tiers:
            tier.price = price  # the currency comes from the price already loaded
        return list(PriceTierOut(tiers, many=True).data)


class CouponOut(ApiSerializer):
    object_name = "coupon"
    prefetch = ("products",)
    code = serializers.CharField()
    name = serializers.CharField()
    percent_off = serializers.DecimalField(max_digits=5, decimal_places=2, allow_null=True)
    amount_off = serializers.SerializerMethodField()
    currency = serializers.SerializerMethodField()
    duration = serializers.CharField()
    duration_in_periods = serializers.IntegerField(allow_null=True)
    max_redemptions = serializers.IntegerField(allow_null=True)
    times_redeemed = serializers.IntegerField()
    redeem_by = serializers.DateField(allow_null=True)
    products = serializers.SerializerMethodField()
    active = serializers.BooleanField()
    created_at = serializers.DateTimeField()

    def get_amount_off(self, coupon: Coupon) -> str | None:
        if coupon.amount_off is None:
            return None
        return amount_text(coupon.amount_off.amount, str(coupon.amount_off.currency.code))

    def get_currency(self, coupon: Coupon) -> str | None:
        return None if coupon.amount_off is None else str(coupon.amount_off.currency.code)

    def get_products(self, coupon: Coupon) -> list[int]:
        return sorted(product.pk for product in coupon.products.all())


class SubscriptionItemOut(serializers.Serializer):
    id = serializers.IntegerField()
    price = serializers.IntegerField(source="price_id")
    quantity = serializers.IntegerField()


class SubscriptionOut(ApiSerializer):
    object_name = "subscription"
    select = ("customer",)
    prefetch = ("items",)
    customer = serializers.IntegerField(source="customer_id")
    customer_external_id = serializers.CharField(source="customer.external_id")
    status = serializers.CharField()
    currency = serializers.CharField()
    interval = serializers.CharField()
    interval_count = serializers.IntegerField()
    start_date = serializers.DateField()
    billing_cycle_anchor = serializers.DateField()
    current_period_start = serializers.DateField()
    current_period_end = serializers.DateField()
    next_billing_date = serializers.DateField(allow_null=True)
    trial_end = serializers.DateField(allow_null=True)
    cancel_at_period_end = serializers.BooleanField()
    canceled_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateField(allow_null=True)
    paused_at = serializers.DateField(allow_null=True)
    collection_method = serializers.CharField()
    days_until_due = serializers.IntegerField(allow_null=True)
    minimum_commitment = AmountField(allow_null=True)
    usage_thresholds = serializers.SerializerMethodField()
    metadata = serializers.JSONField()
    items = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_usage_thresholds(self, subscription: Subscription) -> list[str]:
        return [str(value) for value in subscription.usage_thresholds or []]  # stored in the currency's minor unit

    @extend_schema_field(SubscriptionItemOut(many=True))
    def get_items(self, subscription: Subscription) -> list[dict[str, Any]]:
        live = [item for item in subscription.items.all() if item.removed_on is None]
        return list(SubscriptionItemOut(sorted(live, key=lambda item: item.pk), many=True).data)


class InvoiceLineOut(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    description = serializers.CharField()
    quantity = serializers.DecimalField(max_digits=19, decimal_places=6, normalize_output=True)
    unit_amount = AmountField(currency_source="invoice.currency", unit=True)
    amount = AmountField(currency_source="invoice.currency")
    discount_amount = AmountField(currency_source="invoice.currency")
    net_amount = AmountField(currency_source="invoice.currency")
    tax_name = serializers.CharField()
    tax_percentage = serializers.DecimalField(max_digits=6, decimal_places=3, normalize_output=True)
    tax_inclusive = serializers.BooleanField()
    tax_amount = AmountField(currency_source="invoice.currency")
    total_amount = AmountField(currency_source="invoice.currency")
    period_start = serializers.DateField(allow_null=True)
    period_end = serializers.DateField(allow_null=True)
    proration = serializers.BooleanField()
    price = serializers.IntegerField(source="price_id", allow_null=True)


class InvoiceOut(ApiSerializer):
    object_name = "invoice"
    prefetch = ("lines",)
    number = serializers.CharField()
    status = serializers.CharField()
    customer = serializers.IntegerField(source="customer_id")
    subscription = serializers.IntegerField(source="subscription_id", allow_null=True)
    billing_reason = serializers.CharField()
    currency = serializers.CharField()
    issue_date = serializers.DateField(allow_null=True)
    due_date = serializers.DateField(allow_null=True)
    period_start = serializers.DateField(allow_null=True)
    period_end = serializers.DateField(allow_null=True)
    subtotal = AmountField()
    discount_total = AmountField()
    tax_total = AmountField()
    total = AmountField()
    amount_paid = AmountField()
    amount_credited = AmountField()
    amount_due = AmountField()
    tax_treatment = serializers.CharField()
    tax_note = serializers.CharField()
    memo = serializers.CharField()
    lines = serializers.SerializerMethodField()
    finalized_at = serializers.DateTimeField(allow_null=True)
    paid_at = serializers.DateTimeField(allow_null=True)
    voided_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()

    @extend_schema_field(InvoiceLineOut(many=True))
    def get_lines(self, invoice: Invoice) -> list[dict[str, Any]]:
        lines = sorted(invoice.lines.all(), key=lambda line: (line.position, line.pk))
        for line in lines:
            line.invoice = invoice  # the currency comes from the invoice already loaded
        return list(InvoiceLineOut(lines, many=True).data)


class CreditNoteLineOut(serializers.Serializer):
    id = serializers.IntegerField()
    invoice_line = serializers.IntegerField(source="invoice_line_id", allow_null=True)
    description = serializers.CharField()
    quantity = serializers.DecimalField(max_digits=19, decimal_places=6, normalize_output=True, allow_null=True)
    tax_name = serializers.CharField()
    tax_percentage = serializers.DecimalField(max_digits=6, decimal_places=3, normalize_output=True)
    net_amount = AmountField(currency_source="credit_note.currency")
    tax_amount = AmountField(currency_source="credit_note.currency")
    total_amount = AmountField(currency_source="credit_note.currency")


class CreditNoteOut(ApiSerializer):
    object_name = "credit_note"
    prefetch = ("lines",)
    number = serializers.CharField()
    invoice = serializers.IntegerField(source="invoice_id")
    customer = serializers.IntegerField(source="customer_id")
    currency = serializers.CharField()
    issue_date = serializers.DateField()
    reason = serializers.CharField()
    memo = serializers.CharField()
    net_total = AmountField()
    tax_total = AmountField()
    total = AmountField()
    amount_applied = AmountField()
    amount_to_customer_credit = AmountField()
    lines = serializers.SerializerMethodField()
    issued_at = serializers.DateTimeField()

    @extend_schema_field(CreditNoteLineOut(many=True))
    def get_lines(self, credit_note: CreditNote) -> list[dict[str, Any]]:
        lines = sorted(credit_note.lines.all(), key=lambda line: (line.position, line.pk))
        for line in lines:
            line.credit_note = credit_note
        return list(CreditNoteLineOut(lines, many=True).data)


class PaymentAllocationOut(serializers.Serializer):
    invoice = serializers.IntegerField(source="invoice_id")
    amount = AmountField()
    amount_refunded = AmountField()


class PaymentOut(ApiSerializer):
    object_name = "payment"
    prefetch = ("allocations",)
    customer = serializers.IntegerField(source="customer_id")
    currency = serializers.CharField()
    amount = AmountField()
    amount_refunded = AmountField()
    method = serializers.CharField()
    status = serializers.CharField()
    reference = serializers.CharField()
    received_on = serializers.DateField()
    invoice = serializers.IntegerField(source="invoice_id", allow_null=True)
    gateway = serializers.CharField()
    gateway_reference = serializers.CharField()
    allocations = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    @extend_schema_field(PaymentAllocationOut(many=True))
    def get_allocations(self, payment: Payment) -> list[dict[str, Any]]:
        allocations: list[PaymentAllocation] = sorted(payment.allocations.all(), key=lambda row: row.pk)
        return list(PaymentAllocationOut(allocations, many=True).data)


class RefundOut(ApiSerializer):
    object_name = "refund"
    customer = serializers.IntegerField(source="customer_id")
    payment = serializers.IntegerField(source="payment_id", allow_null=True)
    currency = serializers.CharField()
    amount = AmountField()
    status = serializers.CharField()
    reason = serializers.CharField()
    method = serializers.CharField()
    created_at = serializers.DateTimeField()


class PaymentAttemptOut(ApiSerializer):
    object_name = "payment_attempt"
    invoice = serializers.IntegerField(source="invoice_id")
    customer = serializers.IntegerField(source="customer_id")
    payment_method = serializers.IntegerField(source="payment_method_id", allow_null=True)
    attempt_number = serializers.IntegerField()
    currency = serializers.CharField()
    amount = AmountField()
    status = serializers.CharField(help_text="processing, succeeded or failed.")
    decline_code = serializers.CharField()
    failure_message = serializers.CharField()
    payment = serializers.IntegerField(source="payment_id", allow_null=True)
    next_retry_on = serializers.DateField(allow_null=True)
    created_at = serializers.DateTimeField()


class EventOut(ApiSerializer):
    object_name = "event"
    type = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    subject_type = serializers.CharField()
    subject_id = serializers.IntegerField(allow_null=True)
    payload = serializers.JSONField()


REPRESENTATIONS: dict[type[models.Model], type[ApiSerializer]] = {
    Customer: CustomerOut,
    Product: ProductOut,
    Price: PriceOut,
    Coupon: CouponOut,
    Subscription: SubscriptionOut,
    Invoice: InvoiceOut,
    CreditNote: CreditNoteOut,
    Payment: PaymentOut,
    Refund: RefundOut,
    PaymentAttempt: PaymentAttemptOut,
    DomainEvent: EventOut,
}
# rows that are only shown inside their parent
NESTED = (PriceTier, SubscriptionItem, InvoiceLine, CreditNoteLine, PaymentAllocation)


def serializer_for(model: type[models.Model]) -> type[ApiSerializer]:
    for klass in model.__mro__:
        if klass in REPRESENTATIONS:
            return REPRESENTATIONS[klass]
    raise TypeError(f"the API has no representation of {model.__name__}")


def represent(obj: models.Model) -> dict[str, Any]:
    """The API's representation of one object (a JSON-ready dict: strings, numbers, booleans, None, lists)."""
    return dict(serializer_for(type(obj))(obj).data)


def with_related(queryset: models.QuerySet[Any]) -> models.QuerySet[Any]:
    """``queryset`` loading what its representation reads, in a fixed number of queries."""
    serializer = serializer_for(queryset.model)
    if serializer.select:
        queryset = queryset.select_related(*serializer.select)
    if serializer.prefetch:
        queryset = queryset.prefetch_related(*serializer.prefetch)
    return queryset


def represent_many(objects: Iterable[models.Model]) -> list[dict[str, Any]]:
    return [represent(obj) for obj in objects]


# --- previews (nothing written): the same shapes as invoices, with "object" naming them ---------------------


def represent_charge_line(line: Any) -> dict[str, Any]:
    """A line a subscription change or the billing run would bill (``subscriptions.charges.ChargeLine``)."""
    currency = str(line.amount.currency.code)
    return {
        "description": line.description,
        "kind": line.kind,
        "quantity": format(Decimal(line.quantity).normalize(), "f"),
        "unit_amount": unit_amount_text(line.unit_amount.amount, currency),
        "amount": amount_text(line.amount.amount, currency),
        "discount_amount": amount_text(line.discount_amount.amount, currency),
        "period_start": line.period_start.isoformat(),
        "period_end": line.period_end.isoformat(),
        "proration": line.proration,
        "price": line.price_id,
    }


def represent_invoice_preview(preview: Any) -> dict[str, Any]:
    """An invoice as it will be issued (``invoicing.subscription_billing.InvoicePreview``): no id, no number."""
    invoice, currency = preview.invoice, preview.invoice.currency
    return {
        "object": "invoice_preview",
        "customer": invoice.customer_id,
        "subscription": invoice.subscription_id,
        "billing_reason": invoice.billing_reason,
        "currency": currency,
        "issue_date": preview.issue_date.isoformat(),
        "due_date": preview.due_date.isoformat() if preview.due_date else None,
        "period_start": invoice.period_start.isoformat() if invoice.period_start else None,
        "period_end": invoice.period_end.isoformat() if invoice.period_end else None,
        "subtotal": amount_text(invoice.subtotal, currency),
        "discount_total": amount_text(invoice.discount_total, currency),
        "tax_total": amount_text(invoice.tax_total, currency),
        "total": amount_text(invoice.total, currency),
        "held_for_review": preview.held_reason or None,
        "lines": [
            {
                "description": line.description,
                "kind": line.kind,
                "quantity": format(Decimal(line.quantity).normalize(), "f"),
                "unit_amount": unit_amount_text(line.unit_amount, currency),
                "amount": amount_text(line.amount, currency),
                "discount_amount": amount_text(line.discount_amount, currency),
                "net_amount": amount_text(line.net_amount, currency),
                "tax_name": line.tax_name,
                "tax_percentage": format(Decimal(line.tax_percentage).normalize(), "f"),
                "tax_amount": amount_text(line.tax_amount, currency),
                "total_amount": amount_text(line.total_amount, currency),
                "period_start": line.period_start.isoformat() if line.period_start else None,
                "period_end": line.period_end.isoformat() if line.period_end else None,
                "proration": line.proration,
                "price": line.price_id,
            }
            for line in preview.lines
        ],
    }
