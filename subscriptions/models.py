"""Catalog (products, prices, tiers), subscriptions and their items, coupons and discounts, usage and pending
invoice items. Fields, constraints and tiny derived properties only: every write goes through ``services.py``,
the billing arithmetic lives in ``pricing.py`` / ``charges.py``, the calendar in ``calendar.py``.

Money columns are rounded in Python before they are saved (docs/GOTCHAS.md §2); the default manager is kept on
every model with a MoneyField (§4).
"""

from __future__ import annotations

from decimal import Decimal

import pgtrigger
from django.conf import settings
from django.db import models
from django.db.models import F, Q
from djmoney.models.fields import MoneyField

from core import formatting as fmt
from core.audit import audited
from core.tax_categories import TaxCategory
from customers.models import Customer


class Interval(models.TextChoices):
    DAY = "day", "Day"
    WEEK = "week", "Week"
    MONTH = "month", "Month"
    YEAR = "year", "Year"


class PricingModel(models.TextChoices):
    FLAT = "flat", "Flat fee"
    PER_UNIT = "per_unit", "Per unit"
    GRADUATED = "graduated", "Tiered (graduated)"
    VOLUME = "volume", "Tiered (volume)"
    PACKAGE = "package", "Package"


class UsageType(models.TextChoices):
    LICENSED = "licensed", "Licensed (quantity on the item, billed in advance)"
    METERED = "metered", "Metered (usage records, billed in arrears)"


class Aggregation(models.TextChoices):
    """How a billable metric turns a period's events into the billed quantity (docs/decisions/usage-events.md)."""

    SUM = "sum", "Sum of a property"
    COUNT = "count", "Number of events"
    MAX = "max", "Maximum of a property"
    UNIQUE_COUNT = "unique_count", "Number of distinct values of a property"
    LATEST = "latest", "Latest value of a property"


# A property name as events carry it and as a SQL JSON path takes it: letters, digits, underscore, dash, dot.
METRIC_PROPERTY_RE = r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$"


@audited()
class BillableMetric(models.Model):
    """What usage events of one ``code`` count: the aggregation of a property over a period, optionally only of
    the events whose properties match ``filters`` (``{"region": ["eu", "us"]}``: region is eu or us). Metered
    prices name the metric they bill; a metered price without one bills the sum of its items' usage quantities.
    Once billed, a metric is not edited (like a price): create a new one."""

    code = models.SlugField(max_length=100, unique=True, help_text="What events name in their 'code'.")
    name = models.CharField(max_length=200)
    aggregation = models.CharField(max_length=12, choices=Aggregation.choices, default=Aggregation.SUM)
    field_name = models.CharField(
        "property",
        max_length=100,
        blank=True,
        help_text="The event property aggregated (a number for sum, max and latest). Empty for count.",
    )
    filters = models.JSONField(
        default=dict,
        blank=True,
        help_text='Only events whose properties match, e.g. {"region": ["eu", "us"]}. Empty: every event.',
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(condition=Q(aggregation__in=Aggregation.values), name="metric_aggregation_valid"),
            models.CheckConstraint(
                condition=Q(aggregation=Aggregation.COUNT, field_name="")
                | (~Q(aggregation=Aggregation.COUNT) & Q(field_name__regex=METRIC_PROPERTY_RE)),
                name="metric_property_iff_not_count",
            ),
            models.CheckConstraint(condition=Q(code__regex=r"^[-a-zA-Z0-9_]+$"), name="metric_code_slug"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    @property
    def numeric(self) -> bool:
        """Whether events carry a number in ``field_name`` that is aggregated (sum, max, latest)."""
        return self.aggregation in (Aggregation.SUM, Aggregation.MAX, Aggregation.LATEST)


class TaxBehavior(models.TextChoices):
    EXCLUSIVE = "exclusive", "Exclusive (tax is added)"
    INCLUSIVE = "inclusive", "Inclusive (tax is contained)"


@audited()
class Product(models.Model):
    name = models.CharField(max_length=200, help_text="Internal name, shown to staff.")
    statement_descriptor = models.CharField(
        "name on invoices",
        max_length=200,
        blank=True,
        help_text="What customers read on invoices, credit notes and the portal. Empty: the name.",
    )
    description = models.TextField(blank=True)
    tax_category = models.CharField(
        max_length=2,
        choices=TaxCategory.choices,
        default=TaxCategory.STANDARD,
        db_default=TaxCategory.STANDARD,
        help_text="What kind of supply this is for VAT; each line is resolved against the customer's country, "
        "tax status and VAT id (reverse charge, outside the scope, …).",
    )
    tax_exemption_reason_code = models.CharField(
        max_length=30, blank=True, db_default="", help_text="Exempt only: the VATEX code, e.g. VATEX-EU-132-1I."
    )
    tax_exemption_reason = models.CharField(
        max_length=300, blank=True, db_default="", help_text="Exempt only: the legal reason printed on the invoice."
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            models.CheckConstraint(condition=~Q(name=""), name="product_name_not_empty"),
            models.CheckConstraint(condition=Q(tax_category__in=TaxCategory.values), name="product_tax_category_valid"),
            models.CheckConstraint(
                condition=~Q(tax_category=TaxCategory.EXEMPT) | ~Q(tax_exemption_reason=""),
                name="product_exempt_has_reason",
                violation_error_message="An exempt product needs the exemption reason printed on the invoice.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def public_name(self) -> str:
        return self.statement_descriptor or self.name


@audited()
class Price(models.Model):
    """What a product costs, how often and how it is counted. Once billed, a price is never edited: archive it
    (``active=False``) and create a new one, so that every invoice line keeps pointing at what it billed."""

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="prices")
    nickname = models.CharField(max_length=100, blank=True, help_text="e.g. 'monthly', 'yearly, 2 seats min'.")
    # The currency of the price is the currency of this field (column unit_amount_currency).
    unit_amount = MoneyField(
        max_digits=19,
        decimal_places=6,
        default_currency=settings.DEFAULT_CURRENCY,
        currency_choices=settings.CURRENCY_CHOICES,
        help_text="Per unit, per package or the flat fee; may have more decimals than the currency (0.0125).",
    )
    interval = models.CharField(max_length=8, choices=Interval.choices, default=Interval.MONTH)
    interval_count = models.PositiveSmallIntegerField(default=1)
    pricing_model = models.CharField(max_length=12, choices=PricingModel.choices, default=PricingModel.FLAT)
    usage_type = models.CharField(max_length=10, choices=UsageType.choices, default=UsageType.LICENSED)
    metric = models.ForeignKey(
        BillableMetric,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="prices",
        help_text="Metered prices: the billable metric billed. Empty: the sum of the items' usage quantities.",
    )
    package_size = models.PositiveIntegerField(null=True, blank=True, help_text="Package pricing: units per block.")
    trial_days = models.PositiveSmallIntegerField(default=0)
    tax_behavior = models.CharField(max_length=10, choices=TaxBehavior.choices, default=TaxBehavior.EXCLUSIVE)
    tax_category = models.CharField(
        max_length=2,
        choices=TaxCategory.choices,
        blank=True,
        default="",
        db_default="",
        help_text="Empty: the product's tax category (and exemption reason).",
    )
    tax_exemption_reason_code = models.CharField(
        max_length=30, blank=True, db_default="", help_text="Exempt only: the VATEX code, e.g. VATEX-EU-132-1I."
    )
    tax_exemption_reason = models.CharField(
        max_length=300, blank=True, db_default="", help_text="Exempt only: the legal reason printed on the invoice."
    )
    active = models.BooleanField(default=True)
    self_service = models.BooleanField(
        "self-service",
        default=False,
        db_default=False,
        help_text="Customers may switch to this price, and choose its quantity, in the portal (same currency).",
    )
    self_service_max_quantity = models.PositiveIntegerField(
        "self-service maximum quantity",
        null=True,
        blank=True,
        help_text="Portal only: the most seats (quantity) a customer may choose. Empty: no limit of its own.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["product__name", "pk"]
        indexes = [models.Index(fields=["product", "active"], name="price_product_active_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(interval__in=Interval.values), name="price_interval_valid"),
            models.CheckConstraint(condition=Q(interval_count__gte=1), name="price_interval_count_positive"),
            models.CheckConstraint(condition=Q(pricing_model__in=PricingModel.values), name="price_model_valid"),
            models.CheckConstraint(condition=Q(usage_type__in=UsageType.values), name="price_usage_type_valid"),
            models.CheckConstraint(
                condition=Q(metric__isnull=True) | Q(usage_type=UsageType.METERED), name="price_metric_only_metered"
            ),
            models.CheckConstraint(condition=Q(tax_behavior__in=TaxBehavior.values), name="price_tax_behavior_valid"),
            models.CheckConstraint(
                condition=Q(tax_category__in=[*TaxCategory.values, ""]), name="price_tax_category_valid"
            ),
            models.CheckConstraint(
                condition=~Q(tax_category=TaxCategory.EXEMPT) | ~Q(tax_exemption_reason=""),
                name="price_exempt_has_reason",
                violation_error_message="An exempt price needs the exemption reason printed on the invoice.",
            ),
            models.CheckConstraint(condition=Q(unit_amount__gte=0), name="price_unit_amount_non_negative"),
            models.CheckConstraint(
                condition=Q(self_service_max_quantity__isnull=True) | Q(self_service_max_quantity__gte=1),
                name="price_self_service_max_quantity_positive",
            ),
            models.CheckConstraint(
                # package_size IS NOT NULL too: a CHECK passes when its condition is NULL (NULL >= 1)
                condition=~Q(pricing_model=PricingModel.PACKAGE) | Q(package_size__isnull=False, package_size__gte=1),
                name="price_package_needs_size",
            ),
            models.CheckConstraint(
                condition=~Q(usage_type=UsageType.METERED) | ~Q(pricing_model=PricingModel.FLAT),
                name="price_metered_not_flat",
            ),
        ]

    def __str__(self) -> str:
        amount = fmt.unit_price(self.unit_amount.amount, self.currency, fmt.DEFAULT_LANGUAGE)
        return f"{self.display_name} — {amount} / {self.interval_label}"

    @property
    def tax_category_effective(self) -> tuple[str, str, str]:
        """(category, exemption reason code, exemption reason): the price's own, else its product's (loaded)."""
        if self.tax_category:
            return self.tax_category, self.tax_exemption_reason_code, self.tax_exemption_reason
        product = self.product
        return product.tax_category, product.tax_exemption_reason_code, product.tax_exemption_reason

    @property
    def currency(self) -> str:
        return str(self.unit_amount.currency.code)

    @property
    def display_name(self) -> str:
        """For staff: the product and the price's internal nickname."""
        return f"{self.product.name} ({self.nickname})" if self.nickname else self.product.name

    @property
    def public_name(self) -> str:
        """For customers (invoice lines): the product's name on invoices, never the internal nickname."""
        return self.product.public_name

    @property
    def is_metered(self) -> bool:
        return self.usage_type == UsageType.METERED

    @property
    def is_tiered(self) -> bool:
        return self.pricing_model in (PricingModel.GRADUATED, PricingModel.VOLUME)

    @property
    def interval_label(self) -> str:
        return self.interval if self.interval_count == 1 else f"{self.interval_count} {self.interval}s"


@audited(money_fields=("unit_amount", "flat_amount"), currency="price__unit_amount_currency")
class PriceTier(models.Model):
    """One row of a tiered price, in the price's currency. ``up_to`` is inclusive; the last tier has none."""

    price = models.ForeignKey(Price, on_delete=models.CASCADE, related_name="tiers")
    up_to = models.PositiveBigIntegerField(null=True, blank=True, help_text="Empty = and above (the last tier).")
    unit_amount = models.DecimalField(max_digits=19, decimal_places=6, default=Decimal(0))
    flat_amount = models.DecimalField(max_digits=19, decimal_places=3, default=Decimal(0))

    class Meta:
        ordering = ["price", F("up_to").asc(nulls_last=True)]
        constraints = [
            models.UniqueConstraint(fields=["price", "up_to"], name="price_tier_up_to_unique"),
            models.UniqueConstraint(
                fields=["price"], condition=Q(up_to__isnull=True), name="price_tier_one_open_ended"
            ),
            models.CheckConstraint(condition=Q(unit_amount__gte=0), name="price_tier_unit_non_negative"),
            models.CheckConstraint(condition=Q(flat_amount__gte=0), name="price_tier_flat_non_negative"),
            models.CheckConstraint(condition=Q(up_to__isnull=True) | Q(up_to__gte=1), name="price_tier_up_to_pos"),
        ]

    def __str__(self) -> str:
        up_to = self.up_to if self.up_to is not None else "∞"
        return f"up to {up_to}: {fmt.plain_decimal(self.unit_amount)} + {fmt.plain_decimal(self.flat_amount)}"


class SubscriptionStatus(models.TextChoices):
    TRIALING = "trialing", "Trialing"
    ACTIVE = "active", "Active"
    PAST_DUE = "past_due", "Past due"
    PAUSED = "paused", "Paused"
    CANCELED = "canceled", "Canceled"
    ENDED = "ended", "Ended"


class CollectionMethod(models.TextChoices):
    CHARGE_AUTOMATICALLY = "charge_automatically", "Charge automatically"
    SEND_INVOICE = "send_invoice", "Send invoice"


class CancellationReason(models.TextChoices):
    """Why a customer cancels (asked in the portal; Stripe's ``cancellation_details.feedback`` values)."""

    TOO_EXPENSIVE = "too_expensive", "It's too expensive"
    MISSING_FEATURES = "missing_features", "Some features are missing"
    SWITCHED_SERVICE = "switched_service", "I'm switching to another service"
    UNUSED = "unused", "I don't use it enough"
    CUSTOMER_SERVICE = "customer_service", "Customer service was less than expected"
    TOO_COMPLEX = "too_complex", "It's too complicated"
    LOW_QUALITY = "low_quality", "Quality was less than expected"
    OTHER = "other", "Another reason"


class PauseMode(models.TextChoices):
    """How a subscription is paused (docs/staff-workflows.md). *Billing*: status ``paused``, no invoices at all.
    *Collection*: the status stays, invoices are still issued, but none of this subscription's invoices is
    charged automatically (first charge or retry) and dunning sends no reminder for them until collection
    resumes — Stripe's ``pause_collection`` with the invoices kept open (not drafted, voided or written off)."""

    BILLING = "billing", "Pause billing"
    COLLECTION = "collection", "Pause collection"


@audited()
class Subscription(models.Model):
    """A customer's recurring purchase. Period fields follow docs/DESIGN.md: ``[current_period_start,
    current_period_end)`` is half-open; ``next_billing_date`` is the boundary whose invoice is due next (the
    start itself for a subscription whose first period is not billed yet, else ``current_period_end``; empty
    once nothing more will be billed). ``usage_open_from`` is the first date whose usage is not billed yet.

    Currency and interval are those of every item (checked by the services)."""

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="subscriptions")
    currency = models.CharField(max_length=3, choices=settings.CURRENCY_CHOICES)
    interval = models.CharField(max_length=8, choices=Interval.choices)
    interval_count = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=10, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE)
    start_date = models.DateField()
    billing_cycle_anchor = models.DateField(help_text="Period boundaries are anchor + n × interval, clamped.")
    current_period_start = models.DateField()
    current_period_end = models.DateField()
    next_billing_date = models.DateField(null=True, blank=True)
    usage_open_from = models.DateField(help_text="Usage on or after this date is not billed yet.")
    trial_end = models.DateField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    canceled_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateField(null=True, blank=True)
    paused_at = models.DateField(null=True, blank=True)
    pause_mode = models.CharField(
        max_length=10,
        choices=PauseMode.choices,
        blank=True,
        default="",
        help_text="Empty: not paused. Billing: no invoices. Collection: invoiced, not charged or reminded.",
    )
    resumes_on = models.DateField(
        null=True, blank=True, help_text="The pause ends on this day (the billing run resumes it); empty: by hand."
    )
    # Keys the invoice of a period re-anchored by an interval change (charges._plan): a change on the day the
    # old period was billed starts the new period on the same date, which must not collide with that invoice.
    interval_changes = models.PositiveSmallIntegerField(default=0)
    cancellation_reason = models.CharField(
        max_length=20,
        choices=CancellationReason.choices,
        blank=True,
        default="",
        db_default="",
        help_text="Why the customer asked to cancel (portal); cleared when the cancellation is taken back.",
    )
    cancellation_comment = models.CharField(
        max_length=1000, blank=True, default="", db_default="", help_text="The customer's own words (portal)."
    )
    collection_method = models.CharField(
        max_length=20, choices=CollectionMethod.choices, default=CollectionMethod.SEND_INVOICE
    )
    days_until_due = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Empty: customer's terms.")
    # Commitments and progressive billing (docs/decisions/commitments.md), in the subscription's currency.
    minimum_commitment = models.DecimalField(
        max_digits=19,
        decimal_places=3,
        null=True,
        blank=True,
        help_text="Minimum spend per billing period (recurring + usage, after discounts, before tax); a shortfall "
        "is billed as a true-up line with the period's usage. Empty: none.",
    )
    usage_thresholds = models.JSONField(
        default=list,
        db_default=[],
        blank=True,
        help_text='Progressive billing: amounts of the period\'s accrued usage (e.g. ["1000.00", "2500.00"]); '
        "when usage crosses one, the usage so far is invoiced at once and deducted from the period's invoice.",
    )
    # What the current period's recurring fees came to when they were billed in advance (net of discounts,
    # before tax): the recurring part of the minimum commitment, compared when the period's usage is billed.
    period_recurring_net = models.DecimalField(max_digits=19, decimal_places=3, default=Decimal(0), db_default=0)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-pk"]
        indexes = [
            # subscription_ids_due: "next billing date <= as_of, ordered by id" on an index.
            models.Index(
                fields=["next_billing_date", "id"],
                name="subscription_next_billing_idx",
                condition=Q(next_billing_date__isnull=False),
            ),
            models.Index(fields=["status", "id"], name="subscription_status_idx"),
            models.Index(fields=["customer", "status"], name="subscription_customer_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=SubscriptionStatus.values), name="subscription_status_ok"),
            models.CheckConstraint(condition=Q(interval__in=Interval.values), name="subscription_interval_ok"),
            models.CheckConstraint(condition=Q(interval_count__gte=1), name="subscription_interval_count_pos"),
            models.CheckConstraint(
                condition=Q(collection_method__in=CollectionMethod.values), name="subscription_collection_ok"
            ),
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="subscription_currency_iso"),
            models.CheckConstraint(
                condition=Q(current_period_start__lt=F("current_period_end")), name="subscription_period_ordered"
            ),
            models.CheckConstraint(
                condition=Q(days_until_due__isnull=True) | Q(days_until_due__lte=365), name="subscription_due_max"
            ),
            models.CheckConstraint(
                condition=~Q(status=SubscriptionStatus.TRIALING) | Q(trial_end__isnull=False),
                name="subscription_trialing_has_trial_end",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=[SubscriptionStatus.CANCELED, SubscriptionStatus.ENDED])
                | Q(ended_at__isnull=False),
                name="subscription_terminal_has_ended_at",
            ),
            models.CheckConstraint(
                condition=Q(pause_mode__in=["", *PauseMode.values]), name="subscription_pause_mode_ok"
            ),
            models.CheckConstraint(
                condition=Q(cancellation_reason__in=["", *CancellationReason.values]),
                name="subscription_cancellation_reason_ok",
            ),
            models.CheckConstraint(
                condition=Q(minimum_commitment__isnull=True) | Q(minimum_commitment__gt=0),
                name="subscription_commitment_positive",
            ),
            # Paused means billing paused, and billing paused means paused: a collection pause keeps the status.
            models.CheckConstraint(
                condition=(Q(status=SubscriptionStatus.PAUSED) & Q(pause_mode=PauseMode.BILLING))
                | (~Q(status=SubscriptionStatus.PAUSED) & ~Q(pause_mode=PauseMode.BILLING)),
                name="subscription_paused_is_billing_pause",
            ),
        ]

    def __str__(self) -> str:
        return f"Subscription #{self.pk} ({self.customer_id}, {self.status})"

    @property
    def effective_days_until_due(self) -> int:
        if self.days_until_due is not None:
            return self.days_until_due
        return int(self.customer.payment_terms_days)

    @property
    def collection_paused(self) -> bool:
        return self.pause_mode == PauseMode.COLLECTION


@audited()
class SubscriptionItem(models.Model):
    """A price on a subscription, with a quantity (seats) for licensed prices. An item removed by a change keeps
    its row (``removed_on``): invoice lines and usage records point at it."""

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="items")
    price = models.ForeignKey(Price, on_delete=models.PROTECT, related_name="subscription_items")
    quantity = models.PositiveIntegerField(default=1)
    removed_on = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["subscription", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "price"],
                condition=Q(removed_on__isnull=True),
                name="subscription_item_price_unique_live",
            ),
        ]
        # An item keeps its row for good (invoice lines and usage events point at it; usage events have no
        # database foreign key to it — docs/decisions/usage-events.md): the database refuses deleting one.
        triggers = [pgtrigger.Protect(name="item_rows_are_kept", operation=pgtrigger.Delete)]

    def __str__(self) -> str:
        return f"{self.price.display_name} × {fmt.quantity(self.quantity, fmt.DEFAULT_LANGUAGE)}"


class SubscriptionEvent(models.Model):
    """Every status change and plan change: who, when, from, to, why (docs/STYLE.md's state-machine rule)."""

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    from_status = models.CharField(max_length=10, choices=SubscriptionStatus.choices)
    to_status = models.CharField(max_length=10, choices=SubscriptionStatus.choices)
    reason = models.CharField(max_length=300)

    class Meta:
        ordering = ["subscription", "at", "pk"]
        indexes = [models.Index(fields=["subscription", "at"], name="subscription_event_sub_idx")]

    def __str__(self) -> str:
        return f"{self.from_status} → {self.to_status}: {self.reason}"


class CouponDuration(models.TextChoices):
    ONCE = "once", "Once"
    REPEATING = "repeating", "Repeating (N periods)"
    FOREVER = "forever", "Forever"


@audited()
class Coupon(models.Model):
    code = models.CharField(max_length=50, unique=True)
    name = models.CharField(
        max_length=200, blank=True, help_text="Printed on discounted invoice lines with the terms. Empty: the code."
    )
    percent_off = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    amount_off = MoneyField(
        max_digits=19,
        decimal_places=3,
        null=True,
        blank=True,
        default_currency=None,
        currency_choices=settings.CURRENCY_CHOICES,
    )
    duration = models.CharField(max_length=10, choices=CouponDuration.choices, default=CouponDuration.ONCE)
    duration_in_periods = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Repeating only.")
    max_redemptions = models.PositiveIntegerField(null=True, blank=True)
    times_redeemed = models.PositiveIntegerField(default=0)
    redeem_by = models.DateField(null=True, blank=True)
    products = models.ManyToManyField(Product, blank=True, help_text="Empty: applies to every product.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(percent_off__isnull=False) & Q(amount_off__isnull=True))
                | (Q(percent_off__isnull=True) & Q(amount_off__isnull=False)),
                name="coupon_percent_xor_amount",
            ),
            models.CheckConstraint(
                condition=Q(percent_off__isnull=True) | (Q(percent_off__gt=0) & Q(percent_off__lte=100)),
                name="coupon_percent_in_range",
            ),
            models.CheckConstraint(
                condition=Q(amount_off__isnull=True) | Q(amount_off__gt=0), name="coupon_amount_positive"
            ),
            models.CheckConstraint(condition=Q(duration__in=CouponDuration.values), name="coupon_duration_valid"),
            models.CheckConstraint(
                condition=(Q(duration=CouponDuration.REPEATING) & Q(duration_in_periods__gte=1))
                | (~Q(duration=CouponDuration.REPEATING) & Q(duration_in_periods__isnull=True)),
                name="coupon_repeating_has_periods",
            ),
            models.CheckConstraint(
                condition=Q(max_redemptions__isnull=True) | Q(times_redeemed__lte=F("max_redemptions")),
                name="coupon_redemptions_within_max",
            ),
        ]

    def __str__(self) -> str:
        if self.percent_off is not None:
            off = fmt.percentage(self.percent_off, fmt.DEFAULT_LANGUAGE)
        else:
            assert self.amount_off is not None
            off = fmt.money(self.amount_off.amount, self.amount_off.currency.code, fmt.DEFAULT_LANGUAGE)
        return f"{self.code} ({off} off, {self.get_duration_display().lower()})"

    @property
    def public_name(self) -> str:
        return self.name or self.code

    @property
    def terms(self) -> str:
        """The coupon's terms as a discount line prints them: "10 % off, for 3 periods"."""
        if self.percent_off is not None:
            off = f"{self.percent_off.normalize():f} % off"
        else:
            assert self.amount_off is not None
            off = f"{self.amount_off.amount.normalize():f} {self.amount_off.currency.code} off"
        if self.duration == CouponDuration.ONCE:
            return f"{off}, once"
        if self.duration == CouponDuration.REPEATING:
            return f"{off}, for {self.duration_in_periods} billing periods"
        return f"{off}, every billing period"

    @property
    def periods_limit(self) -> int | None:
        if self.duration == CouponDuration.ONCE:
            return 1
        if self.duration == CouponDuration.REPEATING:
            return self.duration_in_periods
        return None


@audited()
class Discount(models.Model):
    """A coupon applied to a customer (all their subscriptions) or to one subscription, from ``start`` until
    ``end`` (exclusive) or until the coupon's periods are used up (``periods_applied``)."""

    coupon = models.ForeignKey(Coupon, on_delete=models.PROTECT, related_name="discounts")
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.PROTECT, related_name="discounts")
    subscription = models.ForeignKey(
        Subscription, null=True, blank=True, on_delete=models.PROTECT, related_name="discounts"
    )
    start = models.DateField()
    end = models.DateField(null=True, blank=True)
    periods_applied = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["start", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(customer__isnull=False) & Q(subscription__isnull=True))
                | (Q(customer__isnull=True) & Q(subscription__isnull=False)),
                name="discount_customer_xor_subscription",
            ),
            models.CheckConstraint(condition=Q(end__isnull=True) | Q(end__gt=F("start")), name="discount_end_after"),
        ]

    def __str__(self) -> str:
        return f"{self.coupon.code} from {self.start}"


class LineKind(models.TextChoices):
    """The kind of an invoice line, and of a pending item waiting for one. Defined here, where what is owed is
    decided; invoicing uses the same enum."""

    RECURRING = "recurring", "Recurring fee"
    USAGE = "usage", "Usage"
    PRORATION = "proration", "Proration"
    ONE_OFF = "one_off", "One-off"
    ADJUSTMENT = "adjustment", "Adjustment"
    COMMITMENT = "commitment", "Minimum commitment true-up"


class BillingReason(models.TextChoices):
    """Why an invoice was made; the billing plans of this app say which (invoicing stores it on the invoice)."""

    SUBSCRIPTION_CREATE = "subscription_create", "Subscription start"
    SUBSCRIPTION_CYCLE = "subscription_cycle", "Subscription cycle"
    SUBSCRIPTION_CHANGE = "subscription_change", "Subscription change"
    MANUAL = "manual", "Manual"
    ONE_OFF = "one_off", "One-off"
    # A mid-period invoice for the usage so far: the period's usage crossed a threshold (progressive billing).
    SUBSCRIPTION_THRESHOLD = "subscription_threshold", "Usage threshold"


# A pending item becomes a line of its own kind; an adjustment is only ever typed by staff on an invoice.
PENDING_LINE_KINDS = [
    (kind.value, kind.label) for kind in LineKind if kind not in (LineKind.ADJUSTMENT, LineKind.COMMITMENT)
]


class PendingInvoiceItem(models.Model):
    """A line waiting for an invoice: prorations of a change ("add to next invoice" or "invoice now") and the
    credit of a prorated cancellation. Consumed (``billed_at``) by the plan that bills it, exactly once."""

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="pending_items")
    subscription_item = models.ForeignKey(
        SubscriptionItem, null=True, blank=True, on_delete=models.PROTECT, related_name="pending_items"
    )
    price = models.ForeignKey(Price, null=True, blank=True, on_delete=models.PROTECT, related_name="pending_items")
    description = models.CharField(max_length=300)
    quantity = models.DecimalField(max_digits=19, decimal_places=6)
    unit_amount = MoneyField(max_digits=19, decimal_places=6, currency_choices=settings.CURRENCY_CHOICES)
    amount = MoneyField(max_digits=19, decimal_places=3, currency_choices=settings.CURRENCY_CHOICES)
    period_start = models.DateField()
    period_end = models.DateField()
    kind = models.CharField(max_length=10, choices=PENDING_LINE_KINDS, default=LineKind.PRORATION)
    proration = models.BooleanField(default=True)
    tax_behavior = models.CharField(max_length=10, choices=TaxBehavior.choices, default=TaxBehavior.EXCLUSIVE)
    effective_on = models.DateField(help_text="The change date; billed at the first boundary on or after it.")
    invoice_now = models.BooleanField(default=False)
    billed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["subscription", "pk"]
        indexes = [
            models.Index(
                fields=["subscription", "id"], name="pending_item_unbilled_idx", condition=Q(billed_at__isnull=True)
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=[value for value, _label in PENDING_LINE_KINDS]), name="pending_item_kind_valid"
            ),
            models.CheckConstraint(condition=Q(quantity__gte=0), name="pending_item_quantity_non_negative"),
            # Only a proration credit may be negative.
            models.CheckConstraint(
                condition=Q(amount__gte=0) | Q(proration=True), name="pending_item_negative_only_proration"
            ),
            models.CheckConstraint(condition=Q(period_start__lt=F("period_end")), name="pending_item_period_ordered"),
        ]

    def __str__(self) -> str:
        return self.description


class UsageEvent(models.Model):
    """One usage event of a metered item: the only store of usage, read by the billing run through
    ``subscriptions.usage.usage_totals`` (docs/decisions/usage-events.md).

    ``transaction_id`` is the sender's unique id: a re-sent event is ignored. ``value`` is the number the metric
    aggregates (its property, or the quantity recorded on a metric-less price; 0 for count and unique count).
    ``billing_date`` decides which invoice bills it: the usage date in the billing timezone, or — when that
    period was already invoiced (late usage) — the first open date; the late event is then billed on the next
    invoice as an adjustment line."""

    # Unique through Meta.constraints, not unique=True: that would add a second (LIKE) index on PostgreSQL,
    # which every event would pay for and no query uses (the admin searches by the exact id). On PostgreSQL
    # the column is COLLATE "C" (migration 0012; SQLite has no such collation, so it is not declared here): an
    # AlterField of this column must keep it, or every insert pays for locale comparisons again.
    transaction_id = models.CharField(max_length=200)
    # customer and metric are copies of what the item determines (its subscription's customer, its price's
    # metric), written by the services from the validated item: no foreign key constraint in the database —
    # PostgreSQL checks one per row at commit, which was half of a large import's time — and no index of their
    # own (the covering indexes below start with them). The ORM's PROTECT still refuses deleting a customer or
    # metric that has events; the item keeps its constraint.
    customer = models.ForeignKey(
        Customer, on_delete=models.PROTECT, related_name="usage_events", db_constraint=False, db_index=False
    )
    # The item has no database foreign key either (migration 0014): PostgreSQL checked it per row at commit, a
    # quarter of a bulk load's database time. Items are never deleted (a removed item keeps its row with
    # ``removed_on``; a database trigger refuses deleting one), and the services write only items they read in
    # the same transaction.
    subscription_item = models.ForeignKey(
        SubscriptionItem, on_delete=models.PROTECT, related_name="usage_events", db_index=False, db_constraint=False
    )
    # No index of its own: no query reads events by metric alone (deleting a metric — only one no price bills —
    # scans the table once).
    metric = models.ForeignKey(
        BillableMetric,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="usage_events",
        db_constraint=False,
        db_index=False,
    )
    value = models.DecimalField(max_digits=19, decimal_places=6, default=Decimal(0))
    properties = models.JSONField(default=dict, blank=True)
    timestamp = models.DateTimeField()
    usage_date = models.DateField(help_text="The timestamp's date in BILLING_TIMEZONE.")
    billing_date = models.DateField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-timestamp", "-pk"]
        indexes = [
            # The billing run's aggregate per usage window (subscriptions.usage): an index-only scan for sum, max
            # and count.
            models.Index(
                fields=["subscription_item", "billing_date"],
                include=["usage_date", "value"],
                name="usage_item_billing_date_idx",
            ),
            # Also a customer's current usage (subscriptions.selectors.usage_current, the API's
            # GET /customers/{id}/usage): the customer's items, then this index. No second index by (customer,
            # metric, timestamp): no query used it, and it cost a quarter of a bulk load's database time.
        ]
        constraints = [
            models.UniqueConstraint(fields=["transaction_id"], name="usage_event_transaction_id_unique"),
            models.CheckConstraint(condition=Q(value__gte=0), name="usage_value_non_negative"),
            models.CheckConstraint(condition=Q(billing_date__gte=F("usage_date")), name="usage_billing_not_before"),
        ]

    def __str__(self) -> str:
        return f"{self.value} on {self.usage_date} ({self.transaction_id})"


@audited()
class ProgressiveBilling(models.Model):
    """A mid-period invoice of a subscription's usage so far, issued because the period's accrued usage crossed
    ``threshold`` (docs/decisions/commitments.md). ``lines`` are the usage lines billed up to then (cumulative for
    the window: a second threshold's invoice bills them less the first's), so the period's own invoice deducts
    the newest row's lines, line by line with their tax category, and the period adds up to one invoice.

    Once per (subscription, window, threshold) by a unique constraint; the invoice's own (subscription,
    period_key) constraint refuses a second one too. ``invoice_id`` names the invoice without a foreign key:
    invoicing sits above this app."""

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="progressive_billings")
    period_start = models.DateField(help_text="The usage window it belongs to starts here (the period's start).")
    threshold = models.DecimalField(max_digits=19, decimal_places=3)
    billed_on = models.DateField()
    amount = models.DecimalField(
        max_digits=19, decimal_places=3, help_text="Usage billed in the window up to this invoice, before tax."
    )
    currency = models.CharField(max_length=3, choices=settings.CURRENCY_CHOICES)
    lines = models.JSONField(default=list)
    invoice_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["subscription", "period_start", "threshold"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "period_start", "threshold"], name="progressive_billing_once"
            ),
            models.CheckConstraint(condition=Q(threshold__gt=0), name="progressive_billing_threshold_positive"),
        ]

    def __str__(self) -> str:
        return (
            f"Subscription #{self.subscription_id}: usage over {self.threshold} {self.currency} billed {self.billed_on}"
        )
