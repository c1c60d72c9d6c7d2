"""Invoices, their lines and events, number series, tax rates, credit notes and billing runs.

Amounts are ``DecimalField`` columns next to one ``currency`` column per document, not django-money
``MoneyField`` pairs: an invoice has nine amounts in one currency, and nine currency columns that could disagree
(or a ``money_manager`` that a custom QuerySet must be wrapped in, docs/GOTCHAS.md §4) buy nothing. Every amount is
rounded in Python (``core.money.round_amount``) before it is stored; the ``*_money`` properties
give ``Money`` values for display. Stored scale: 3 decimals for amounts (BHD has 3 minor digits), 6 for unit
amounts (``0.0125`` per API call), 4 for quantities.

Immutability of issued documents is enforced in three places that every write path goes through: ``save()``
(including stale instances: the UPDATE is guarded by ``status='draft'``), ``QuerySet.update()`` (which is also
what ``bulk_update`` calls) and ``delete()``. The fields staff processes may still change on an issued invoice
are listed in ``Invoice.MUTABLE_AFTER_FINALIZE``.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any, ClassVar, TypedDict

import pgtrigger
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q, Value
from django_countries.fields import CountryField
from moneyed import Money

from core import formatting as fmt
from core.audit import audit_unless_skipped, audited
from core.errors import NotAllowed
from core.tax_categories import TAX_RATE_CATEGORIES, TaxCategory
from subscriptions.models import BillingReason, LineKind


class _Digits(TypedDict):
    max_digits: int
    decimal_places: int


AMOUNT: _Digits = {"max_digits": 18, "decimal_places": 3}
UNIT_AMOUNT: _Digits = {"max_digits": 20, "decimal_places": 6}
QUANTITY: _Digits = {"max_digits": 16, "decimal_places": 4}
PERCENTAGE: _Digits = {"max_digits": 7, "decimal_places": 4}
ZERO = Decimal(0)


# Amounts are stored with 3 decimals. PostgreSQL keeps them as exact numerics; SQLite (the demo) as binary
# floats, where 1.235 + 0.124 is not 1.359. A "sums to" check therefore allows less than half a unit of the
# third decimal — on PostgreSQL that is exactly equality, on SQLite it absorbs the float error.
_HALF_UNIT = Value(Decimal("0.0005"))


def sums_to(field: str, expression: Any) -> Q:
    return Q(**{f"{field}__gt": expression - _HALF_UNIT}) & Q(**{f"{field}__lt": expression + _HALF_UNIT})


class DocumentImmutable(NotAllowed):
    """An issued invoice, its lines or a credit note was about to be changed or deleted."""


# --- Number series --------------------------------------------------------------------------------------


class NumberSeries(models.Model):
    """A gapless sequence of document numbers: ``format`` may use ``{prefix}``, ``{year}`` and ``{number}``
    (with a format spec such as ``{number:06d}``). Numbers come from ``NumberSeriesCounter`` rows, one per year
    when ``yearly_reset`` is on (else a single row with year 0), see docs/decisions/numbering.md."""

    class Kind(models.TextChoices):
        INVOICE = "invoice", "Invoices"
        CREDIT_NOTE = "credit_note", "Credit notes"
        QUOTE = "quote", "Quotes"

    code = models.SlugField(max_length=40, unique=True, help_text="Stable key used by code, e.g. 'invoices'.")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    prefix = models.CharField(max_length=20, blank=True)
    format = models.CharField(
        max_length=100,
        default="{prefix}{year}-{number:06d}",
        help_text="Placeholders: {prefix}, {year}, {number} (e.g. {number:06d} for six digits).",
    )
    yearly_reset = models.BooleanField(default=True, help_text="Restart at 1 on the first issue date of a year.")
    is_default = models.BooleanField(default=False, help_text="Used for new documents of this kind.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "number series"
        ordering = ["kind", "code"]
        constraints = [
            models.UniqueConstraint(fields=["kind"], condition=Q(is_default=True), name="number_series_one_default"),
            models.CheckConstraint(
                condition=Q(kind__in=["invoice", "credit_note", "quote"]), name="number_series_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    def format_number(self, *, year: int, number: int) -> str:
        return self.format.format(prefix=self.prefix, year=year, number=number)

    def clean(self) -> None:
        try:
            first = self.format_number(year=2026, number=1)
            second = self.format_number(year=2026, number=2)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValidationError({"format": f"Not a valid format: {exc}"}) from exc
        if first == second or "{number" not in self.format:
            raise ValidationError({"format": "The format must contain {number}."})
        if self.yearly_reset and "{year" not in self.format:
            raise ValidationError({"format": "A series that restarts every year must print {year}."})


class NumberSeriesCounter(models.Model):
    """The last number handed out, locked with SELECT … FOR UPDATE while a number is taken (never a sequence:
    a sequence skips numbers on rollback)."""

    series = models.ForeignKey(NumberSeries, on_delete=models.PROTECT, related_name="counters")
    year = models.PositiveSmallIntegerField(help_text="0 for a series that never restarts.")
    last_number = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["series", "year"], name="number_series_counter_unique")]

    def __str__(self) -> str:
        return f"{self.series.code} {self.year or ''}: {self.last_number}".replace("  ", " ")


# --- Taxes ----------------------------------------------------------------------------------------------


@audited()
class TaxRate(models.Model):
    name = models.CharField(max_length=100, help_text="Printed on the invoice, e.g. 'VAT 19 %'.")
    country = CountryField()
    region = models.CharField(max_length=100, blank=True, help_text="Empty: the whole country.")
    category = models.CharField(
        max_length=2,
        choices=TAX_RATE_CATEGORIES,
        default=TaxCategory.STANDARD,
        db_default=TaxCategory.STANDARD,
        help_text="The lines of this category (standard, reduced, zero) sold into this country take this rate.",
    )
    percentage = models.DecimalField(**PERCENTAGE)
    inclusive = models.BooleanField(default=False, help_text="Prices already include this tax.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["country", "region", "category", "-active", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(percentage__gte=0) & Q(percentage__lte=100), name="tax_rate_percentage_0_100"
            ),
            models.CheckConstraint(
                condition=Q(category__in=[value for value, _label in TAX_RATE_CATEGORIES]),
                name="tax_rate_category_valid",
            ),
            models.UniqueConstraint(
                fields=["country", "region", "category"],
                condition=Q(active=True),
                name="tax_rate_one_active_per_region_category",
                violation_error_message="There is already an active rate of this category for this country/region.",
            ),
        ]

    def __str__(self) -> str:
        where = f"{self.country}-{self.region}" if self.region else str(self.country)
        reduced = " reduced" if self.category == TaxCategory.REDUCED else ""
        zero = " zero" if self.category == TaxCategory.ZERO_RATED else ""
        inclusive = " incl." if self.inclusive else ""
        return f"{self.name} ({where}{reduced}{zero}, {fmt.plain_decimal(self.percentage)} %{inclusive})"


# --- Invoices -------------------------------------------------------------------------------------------


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    OPEN = "open", "Open"
    PAID = "paid", "Paid"
    VOID = "void", "Void"
    UNCOLLECTIBLE = "uncollectible", "Uncollectible"


FINALIZED_STATUSES = frozenset(
    {InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE}
)


class TaxTreatment(models.TextChoices):
    STANDARD = "standard", "Standard"
    EXEMPT = "exempt", "Exempt"
    REVERSE_CHARGE = "reverse_charge", "Reverse charge"
    OUTSIDE_SCOPE = "outside_scope", "Outside the scope of VAT"


class InvoiceQuerySet(models.QuerySet["Invoice"]):
    def drafts(self) -> InvoiceQuerySet:
        return self.filter(status=InvoiceStatus.DRAFT)

    def finalized(self) -> InvoiceQuerySet:
        return self.exclude(status=InvoiceStatus.DRAFT)

    def update(self, **kwargs: Any) -> int:
        """Fields outside ``MUTABLE_AFTER_FINALIZE`` may only change on drafts. ``bulk_update`` comes through
        here too. The check raises; the ``status='draft'`` filter closes the race with a concurrent finalize."""
        if set(kwargs) <= Invoice.MUTABLE_AFTER_FINALIZE:
            return super().update(**kwargs)
        if self.finalized().exists():
            raise DocumentImmutable(f"finalized invoices cannot change {', '.join(sorted(kwargs))}")
        return super(InvoiceQuerySet, self.drafts()).update(**kwargs)

    def bulk_update(self, objs: Iterable[Invoice], fields: Iterable[str], batch_size: int | None = None) -> int:
        # Checked before bulk_update opens its transaction, so a refusal leaves the caller's transaction usable;
        # update() above still guards every batch against a concurrent finalize.
        objs, fields = list(objs), list(fields)
        if not set(fields) <= Invoice.MUTABLE_AFTER_FINALIZE and (
            Invoice.objects.filter(pk__in=[obj.pk for obj in objs]).finalized().exists()
        ):
            raise DocumentImmutable(f"finalized invoices cannot change {', '.join(sorted(fields))}")
        return super().bulk_update(objs, fields, batch_size=batch_size)

    def delete(self) -> tuple[int, dict[str, int]]:
        if self.finalized().exists():
            raise DocumentImmutable("finalized invoices cannot be deleted; void them instead")
        return super().delete()


# Drafts only: an issued invoice is frozen, its status changes are InvoiceEvent rows, and the billing run writes
# thousands of issued invoices a minute (docs/decisions/audit.md). The change that finalizes a draft is recorded.
@audited(
    insert_when=pgtrigger.Q(new__status="draft"),
    update_when=pgtrigger.Q(old__status="draft"),
    delete_when=pgtrigger.Q(old__status="draft"),
    money_fields=(
        "subtotal", "discount_total", "tax_total", "total", "amount_paid", "amount_credited", "amount_due",
    ),
)  # fmt: skip
class Invoice(models.Model):
    # Changed by the services on an issued invoice (payments, credit notes, transitions); the PDF issue adds its
    # own fields here. Everything else is frozen by finalization.
    MUTABLE_AFTER_FINALIZE: ClassVar[frozenset[str]] = frozenset(
        {
            "status",
            "amount_paid",
            "amount_credited",
            "amount_due",
            "paid_at",
            "voided_at",
            "updated_at",
            "hold_reminders",
        }
    )

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="invoices")
    subscription = models.ForeignKey(
        "subscriptions.Subscription", on_delete=models.PROTECT, null=True, blank=True, related_name="invoices"
    )
    # Which billing period of the subscription this invoice bills (subscriptions.charges.PeriodCharges.period_key);
    # unique per subscription, so no period is ever billed twice, whatever runs twice or overlaps.
    period_key = models.CharField(max_length=40, blank=True, default="")
    billing_run = models.ForeignKey(
        "invoicing.BillingRun", on_delete=models.SET_NULL, null=True, blank=True, related_name="invoices"
    )
    status = models.CharField(max_length=20, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT)
    billing_reason = models.CharField(max_length=30, choices=BillingReason.choices, default=BillingReason.MANUAL)
    currency = models.CharField(max_length=3, choices=settings.CURRENCY_CHOICES)
    number_series = models.ForeignKey(NumberSeries, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    number = models.CharField(max_length=60, blank=True, default="", help_text="Assigned at finalization.")
    issue_date = models.DateField(null=True, blank=True)
    due_date = models.DateField(null=True, blank=True)
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True, help_text="Exclusive: the period is [start, end).")

    subtotal = models.DecimalField(**AMOUNT, default=ZERO, help_text="Sum of line amounts before discounts.")
    discount_total = models.DecimalField(**AMOUNT, default=ZERO)
    tax_total = models.DecimalField(**AMOUNT, default=ZERO, help_text="Inclusive and exclusive tax.")
    total = models.DecimalField(**AMOUNT, default=ZERO)
    amount_paid = models.DecimalField(**AMOUNT, default=ZERO)
    amount_credited = models.DecimalField(
        **AMOUNT, default=ZERO, help_text="Part of the total settled by credit notes."
    )
    amount_due = models.DecimalField(**AMOUNT, default=ZERO)

    tax_treatment = models.CharField(max_length=20, choices=TaxTreatment.choices, default=TaxTreatment.STANDARD)
    tax_note = models.TextField(blank=True, help_text="Legal note printed with the totals (reverse charge, …).")
    tax_summary = models.JSONField(default=list, blank=True, help_text="Per rate: taxable and tax amounts.")
    memo = models.TextField(blank=True)
    footer = models.TextField(blank=True)
    customer_snapshot = models.JSONField(default=dict, blank=True)
    seller_snapshot = models.JSONField(default=dict, blank=True)
    # Dunning (dunning.services): a disputed invoice is not chased while this is set.
    hold_reminders = models.BooleanField(
        default=False, help_text="Disputed or agreed otherwise: no reminders, fees or escalation."
    )

    finalized_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = InvoiceQuerySet.as_manager()

    # The status the row had when this instance was loaded or last saved (see save()).
    _loaded_status: str | None = None

    class Meta:
        ordering = ["-pk"]
        permissions = [
            ("finalize_invoice", "Can finalize invoices"),
            ("void_invoice", "Can void invoices"),
            ("mark_uncollectible_invoice", "Can mark invoices uncollectible"),
        ]
        indexes = [
            models.Index(fields=["status", "due_date"], name="invoice_status_due_idx"),
            models.Index(fields=["-issue_date", "-id"], name="invoice_issue_date_idx"),
            models.Index(fields=["customer", "-issue_date"], name="invoice_customer_issue_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "period_key"],
                condition=Q(subscription__isnull=False) & ~Q(period_key=""),
                name="invoice_subscription_period_once",
            ),
            models.CheckConstraint(condition=Q(status__in=InvoiceStatus.values), name="invoice_status_valid"),
            models.CheckConstraint(
                condition=Q(billing_reason__in=BillingReason.values), name="invoice_billing_reason_valid"
            ),
            models.CheckConstraint(
                condition=Q(tax_treatment__in=TaxTreatment.values), name="invoice_tax_treatment_valid"
            ),
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="invoice_currency_iso"),
            # finalized means numbered and dated; a draft has neither
            models.CheckConstraint(
                condition=(Q(status=InvoiceStatus.DRAFT) & Q(number=""))
                | (
                    ~Q(status=InvoiceStatus.DRAFT)
                    & ~Q(number="")
                    & Q(issue_date__isnull=False)
                    & Q(due_date__isnull=False)
                    & Q(number_series__isnull=False)
                ),
                name="invoice_finalized_means_numbered",
            ),
            models.UniqueConstraint(fields=["number"], condition=~Q(number=""), name="invoice_number_unique"),
            models.CheckConstraint(
                condition=Q(total__gte=0) | Q(status=InvoiceStatus.DRAFT), name="invoice_total_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(amount_paid__gte=0) & Q(amount_credited__gte=0) & Q(discount_total__gte=0),
                name="invoice_amounts_non_negative",
            ),
            models.CheckConstraint(
                condition=sums_to("amount_due", F("total") - F("amount_paid") - F("amount_credited"))
                & (Q(amount_due__gte=0) | Q(status=InvoiceStatus.DRAFT)),
                name="invoice_amount_due_balance",
            ),
            models.CheckConstraint(
                condition=Q(period_start__isnull=True)
                | Q(period_end__isnull=True)
                | Q(period_end__gt=F("period_start")),
                name="invoice_period_ordered",
            ),
        ]

    def __str__(self) -> str:
        return self.number or f"Draft #{self.pk}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._loaded_status in FINALIZED_STATUSES and not self._only_mutable(kwargs.get("update_fields")):
            raise DocumentImmutable(f"invoice {self} is finalized and cannot be changed")
        super().save(*args, **kwargs)
        self._loaded_status = self.status

    def _do_update(
        self,
        base_qs: Any,
        using: Any,
        pk_val: Any,
        values: Any,
        update_fields: Any,
        forced_update: Any,
    ) -> bool:
        # An instance loaded as a draft may have been finalized meanwhile (another request, a worker): the UPDATE
        # only matches drafts, and matching nothing while the row exists means it is frozen now.
        if self._only_mutable(update_fields):
            return bool(super()._do_update(base_qs, using, pk_val, values, update_fields, forced_update))
        updated = super()._do_update(
            base_qs.filter(status=InvoiceStatus.DRAFT), using, pk_val, values, update_fields, forced_update
        )
        if not updated and base_qs.filter(pk=pk_val).exists():
            raise DocumentImmutable(f"invoice {pk_val} is finalized and cannot be changed")
        return bool(updated)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        if self.pk is not None and Invoice.objects.filter(pk=self.pk).finalized().exists():
            raise DocumentImmutable(f"invoice {self} is finalized and cannot be deleted; void it instead")
        return super().delete(*args, **kwargs)

    @classmethod
    def from_db(cls, db: Any, field_names: Any, values: Any) -> Invoice:
        instance = super().from_db(db, field_names, values)
        instance._loaded_status = instance.__dict__.get("status")
        return instance

    @property
    def is_draft(self) -> bool:
        return self.status == InvoiceStatus.DRAFT

    @property
    def is_finalized(self) -> bool:
        return self.status in FINALIZED_STATUSES

    def money(self, field_name: str) -> Money:
        return Money(getattr(self, field_name), self.currency)

    @property
    def total_money(self) -> Money:
        return self.money("total")

    @property
    def amount_due_money(self) -> Money:
        return self.money("amount_due")

    def _only_mutable(self, update_fields: Iterable[str] | None) -> bool:
        return update_fields is not None and set(update_fields) <= self.MUTABLE_AFTER_FINALIZE


class InvoiceLineQuerySet(models.QuerySet["InvoiceLine"]):
    def of_finalized_invoices(self) -> InvoiceLineQuerySet:
        return self.exclude(invoice__status=InvoiceStatus.DRAFT)

    def update(self, **kwargs: Any) -> int:
        if self.of_finalized_invoices().exists():
            raise DocumentImmutable("lines of a finalized invoice cannot be changed")
        return super(InvoiceLineQuerySet, self.filter(invoice__status=InvoiceStatus.DRAFT)).update(**kwargs)

    def bulk_update(self, objs: Iterable[InvoiceLine], fields: Iterable[str], batch_size: int | None = None) -> int:
        objs = list(objs)
        if InvoiceLine.objects.filter(pk__in=[obj.pk for obj in objs]).of_finalized_invoices().exists():
            raise DocumentImmutable("lines of a finalized invoice cannot be changed")
        return super().bulk_update(objs, fields, batch_size=batch_size)

    def delete(self) -> tuple[int, dict[str, int]]:
        if self.of_finalized_invoices().exists():
            raise DocumentImmutable("lines of a finalized invoice cannot be deleted")
        return super().delete()


# Lines only change on drafts; the billing run's own lines (written by COPY with their invoice) are skipped, the
# invoice's creation stands for them (docs/decisions/audit.md).
@audited(
    insert_when=audit_unless_skipped("billing_run_lines"),
    money_fields=("unit_amount", "amount", "discount_amount", "net_amount", "tax_amount", "total_amount"),
    currency="invoice__currency",
)
class InvoiceLine(models.Model):
    """One line. ``amount`` = quantity × unit amount; ``net_amount`` = amount − discount, without tax (for an
    inclusive rate, amount − discount − tax); ``total_amount`` = what the line adds to the invoice total. Every
    amount is rounded on its own (invoicing.taxes.compute_invoice_totals)."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=20, choices=LineKind.choices, default=LineKind.ONE_OFF)
    description = models.CharField(max_length=500)
    quantity = models.DecimalField(**QUANTITY, default=Decimal(1))
    unit_amount = models.DecimalField(**UNIT_AMOUNT)
    amount = models.DecimalField(**AMOUNT, default=ZERO)
    discount_amount = models.DecimalField(**AMOUNT, default=ZERO)
    discount_description = models.CharField(
        max_length=300,
        blank=True,
        default="",
        db_default="",
        help_text="The coupons of the discount: name and terms, as printed.",
    )
    net_amount = models.DecimalField(**AMOUNT, default=ZERO)
    supply_tax_category = models.CharField(
        "tax category",
        max_length=2,
        choices=TaxCategory.choices,
        default=TaxCategory.STANDARD,
        db_default=TaxCategory.STANDARD,
        help_text="What is sold (from the price, or chosen for a one-off line); resolved per customer into the "
        "category below.",
    )
    tax_rate = models.ForeignKey(TaxRate, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    tax_category = models.CharField(
        "applied tax category",
        max_length=2,
        choices=TaxCategory.choices,
        default=TaxCategory.STANDARD,
        db_default=TaxCategory.STANDARD,
        help_text="EN 16931 VAT category that applies to this customer (reverse charge, export, …).",
    )
    tax_exemption_reason_code = models.CharField(max_length=30, blank=True, default="", db_default="")
    tax_exemption_reason = models.CharField(max_length=300, blank=True, default="", db_default="")
    tax_name = models.CharField(max_length=100, blank=True)
    tax_percentage = models.DecimalField(**PERCENTAGE, default=ZERO)
    tax_inclusive = models.BooleanField(default=False)
    tax_amount = models.DecimalField(**AMOUNT, default=ZERO)
    total_amount = models.DecimalField(**AMOUNT, default=ZERO)
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)
    proration = models.BooleanField(default=False)
    price = models.ForeignKey(
        "subscriptions.Price", on_delete=models.PROTECT, null=True, blank=True, related_name="invoice_lines"
    )
    subscription_item = models.ForeignKey(
        "subscriptions.SubscriptionItem", on_delete=models.PROTECT, null=True, blank=True, related_name="invoice_lines"
    )

    objects = InvoiceLineQuerySet.as_manager()

    class Meta:
        ordering = ["invoice", "position", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=LineKind.values), name="invoice_line_kind_valid"),
            models.CheckConstraint(
                condition=Q(tax_category__in=TaxCategory.values) & Q(supply_tax_category__in=TaxCategory.values),
                name="invoice_line_tax_category_valid",
            ),
            models.CheckConstraint(condition=Q(discount_amount__gte=0), name="invoice_line_discount_non_negative"),
            models.CheckConstraint(
                condition=Q(tax_percentage__gte=0) & Q(tax_percentage__lte=100), name="invoice_line_tax_pct_0_100"
            ),
            models.CheckConstraint(
                condition=sums_to("total_amount", F("net_amount") + F("tax_amount")), name="invoice_line_total_balance"
            ),
            models.CheckConstraint(
                condition=Q(period_start__isnull=True)
                | Q(period_end__isnull=True)
                | Q(period_end__gt=F("period_start")),
                name="invoice_line_period_ordered",
            ),
        ]

    def __str__(self) -> str:
        return self.description

    def save(self, *args: Any, **kwargs: Any) -> None:
        # One query per save: lines are saved one by one only on drafts (admin, services); the billing run
        # inserts the lines of the invoices it builds with bulk_create in the same transaction.
        if not self._invoice_is_draft():
            raise DocumentImmutable("lines of a finalized invoice cannot be added or changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        if not self._invoice_is_draft():
            raise DocumentImmutable("lines of a finalized invoice cannot be deleted")
        return super().delete(*args, **kwargs)

    def _invoice_is_draft(self) -> bool:
        return Invoice.objects.filter(pk=self.invoice_id, status=InvoiceStatus.DRAFT).exists()


class ChildAccountPeriod(models.Model):
    """A child account's subscription period billed on an invoice addressed to its parent (a consolidated invoice,
    or a "parent pays" invoice; docs/decisions/parent-accounts.md). Its lines are the invoice's positions
    ``first_position``–``last_position``; the account's name, country and tax id are kept as they were at billing,
    for the heading of its group. Unique per (subscription, period_key): the consolidated invoice bills many
    subscriptions, so the invoice's own (subscription, period_key) constraint cannot refuse a second billing."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="child_periods")
    account = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="+")
    account_snapshot = models.JSONField(default=dict, blank=True)
    subscription = models.ForeignKey("subscriptions.Subscription", on_delete=models.PROTECT, related_name="+")
    period_key = models.CharField(max_length=40)
    first_position = models.PositiveIntegerField()
    last_position = models.PositiveIntegerField()

    class Meta:
        ordering = ["invoice", "first_position"]
        constraints = [
            models.UniqueConstraint(fields=["subscription", "period_key"], name="child_account_period_once"),
            models.CheckConstraint(
                # a period without lines (nothing to bill in it) is recorded all the same: last = first - 1
                condition=Q(last_position__gte=F("first_position") - 1),
                name="child_account_period_positions",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_snapshot.get('name', self.account_id)}: {self.period_key}"


class InvoiceEvent(models.Model):
    """One row per status transition: who, when, from, to, why."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    from_status = models.CharField(max_length=20, choices=InvoiceStatus.choices)
    to_status = models.CharField(max_length=20, choices=InvoiceStatus.choices)
    reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["invoice", "at", "pk"]
        indexes = [models.Index(fields=["invoice", "at"], name="invoice_event_invoice_at_idx")]

    def __str__(self) -> str:
        return f"{self.from_status} → {self.to_status}"


# --- Credit notes ---------------------------------------------------------------------------------------


class CreditNoteQuerySet(models.QuerySet["CreditNote"]):
    def update(self, **kwargs: Any) -> int:
        raise DocumentImmutable("credit notes are read-only once issued")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise DocumentImmutable("credit notes are read-only once issued")


class CreditNote(models.Model):
    """Issued in one step (there are no draft credit notes) and read-only from then on. ``amount_applied`` went
    to the invoice's amount due; ``amount_to_customer_credit`` is what the payments app books as customer credit
    (when it handles the ``credit_note.issued`` domain event)."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="credit_notes")
    number_series = models.ForeignKey(NumberSeries, on_delete=models.PROTECT, related_name="+")
    number = models.CharField(max_length=60)
    currency = models.CharField(max_length=3, choices=settings.CURRENCY_CHOICES)
    issue_date = models.DateField()
    reason = models.CharField(max_length=500)
    memo = models.TextField(blank=True)
    net_total = models.DecimalField(**AMOUNT)
    tax_total = models.DecimalField(**AMOUNT)
    total = models.DecimalField(**AMOUNT)
    amount_applied = models.DecimalField(**AMOUNT, help_text="Reduced the invoice's amount due.")
    amount_to_customer_credit = models.DecimalField(**AMOUNT, help_text="Becomes customer credit (payments).")
    tax_summary = models.JSONField(default=list, blank=True)
    customer_snapshot = models.JSONField(default=dict, blank=True)
    seller_snapshot = models.JSONField(default=dict, blank=True)
    issued_at = models.DateTimeField()
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = CreditNoteQuerySet.as_manager()

    class Meta:
        ordering = ["-pk"]
        indexes = [models.Index(fields=["customer", "-issue_date"], name="credit_note_customer_issue_idx")]
        constraints = [
            models.UniqueConstraint(fields=["number"], name="credit_note_number_unique"),
            models.CheckConstraint(condition=~Q(number=""), name="credit_note_numbered"),
            models.CheckConstraint(
                condition=Q(total__gt=0) & Q(amount_applied__gte=0) & Q(amount_to_customer_credit__gte=0),
                name="credit_note_amounts_non_negative",
            ),
            models.CheckConstraint(
                condition=sums_to("total", F("amount_applied") + F("amount_to_customer_credit"))
                & sums_to("total", F("net_total") + F("tax_total")),
                name="credit_note_amounts_balance",
            ),
        ]

    def __str__(self) -> str:
        return self.number

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise DocumentImmutable(f"credit note {self} is read-only once issued")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise DocumentImmutable(f"credit note {self} is read-only once issued")

    def money(self, field_name: str) -> Money:
        return Money(getattr(self, field_name), self.currency)


class CreditNoteLineQuerySet(models.QuerySet["CreditNoteLine"]):
    def update(self, **kwargs: Any) -> int:
        raise DocumentImmutable("credit notes are read-only once issued")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise DocumentImmutable("credit notes are read-only once issued")


class CreditNoteLine(models.Model):
    credit_note = models.ForeignKey(CreditNote, on_delete=models.PROTECT, related_name="lines")
    invoice_line = models.ForeignKey(
        InvoiceLine, on_delete=models.PROTECT, null=True, blank=True, related_name="credit_note_lines"
    )
    position = models.PositiveIntegerField(default=0)
    description = models.CharField(max_length=500)
    quantity = models.DecimalField(**QUANTITY, null=True, blank=True)
    tax_category = models.CharField(
        max_length=2, choices=TaxCategory.choices, default=TaxCategory.STANDARD, db_default=TaxCategory.STANDARD
    )
    tax_exemption_reason_code = models.CharField(max_length=30, blank=True, default="", db_default="")
    tax_exemption_reason = models.CharField(max_length=300, blank=True, default="", db_default="")
    tax_name = models.CharField(max_length=100, blank=True)
    tax_percentage = models.DecimalField(**PERCENTAGE, default=ZERO)
    tax_inclusive = models.BooleanField(default=False)
    net_amount = models.DecimalField(**AMOUNT)
    tax_amount = models.DecimalField(**AMOUNT)
    total_amount = models.DecimalField(**AMOUNT)

    objects = CreditNoteLineQuerySet.as_manager()

    class Meta:
        ordering = ["credit_note", "position", "pk"]
        constraints = [
            models.CheckConstraint(
                # a line may be negative: a full credit note mirrors an invoice's proration credit lines
                condition=sums_to("total_amount", F("net_amount") + F("tax_amount")),
                name="credit_note_line_balance",
            ),
        ]

    def __str__(self) -> str:
        return self.description

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise DocumentImmutable("credit notes are read-only once issued")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise DocumentImmutable("credit notes are read-only once issued")


# --- Billing runs ---------------------------------------------------------------------------------------


class BillingRunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    PARTIAL = "partial", "Finished with errors"
    FAILED = "failed", "Failed"
    # No heartbeat for BILLING_RUN_STALE_MINUTES: its worker died. The stale-work sweeper marks it and starts a
    # run that bills what it left (``resumed_by``), see invoicing/stale_runs.py.
    INTERRUPTED = "interrupted", "Interrupted (worker lost)"


class BillingRun(models.Model):
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    as_of = models.DateField()
    dry_run = models.BooleanField(default=False)
    status = models.CharField(max_length=20, choices=BillingRunStatus.choices, default=BillingRunStatus.RUNNING)
    subscriptions_seen = models.PositiveIntegerField(default=0)
    invoices_created = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    totals = models.JSONField(default=dict, blank=True, help_text='Per currency, as strings: {"EUR": "123.45"}.')
    drafts_created = models.PositiveIntegerField(default=0, help_text="Invoices kept as drafts for review.")
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    dispatch = models.CharField(max_length=10, default="inline", help_text="inline (one process) or celery.")
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    customer = models.ForeignKey(
        "customers.Customer",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Set when the run billed one customer only (billing_run --customer).",
    )
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="When a chunk of this run was last billed (its transaction's time)."
    )
    resumed_by = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="resumes",
        help_text="The run the stale-work sweeper started to bill what this interrupted run left.",
    )

    class Meta:
        ordering = ["-started_at", "-pk"]
        indexes = [models.Index(fields=["as_of"], name="billing_run_as_of_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=BillingRunStatus.values), name="billing_run_status_valid"),
        ]

    def __str__(self) -> str:
        return f"Billing run {self.as_of}{' (dry run)' if self.dry_run else ''}"


class BillingRunError(models.Model):
    run = models.ForeignKey(BillingRun, on_delete=models.CASCADE, related_name="errors")
    subscription_id = models.BigIntegerField(null=True, blank=True)
    message = models.TextField()
    traceback = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "pk"]

    def __str__(self) -> str:
        return f"subscription {self.subscription_id}: {self.message[:80]}"


class BillingRunChunk(models.Model):
    """A chunk of a run that is done, keyed by its first subscription id (chunks of a run are disjoint). The
    row is written in the chunk's own transaction, so a chunk the broker delivers twice (a lost ack, a killed
    worker) counts once: the second delivery finds the row — or waits on the first's uncommitted insert — and
    bills nothing."""

    run = models.ForeignKey(BillingRun, on_delete=models.CASCADE, related_name="chunks")
    first_subscription_id = models.BigIntegerField()
    subscriptions = models.PositiveIntegerField()
    done_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "first_subscription_id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "first_subscription_id"], name="billing_run_chunk_once"),
        ]

    def __str__(self) -> str:
        return f"run {self.run_id}: chunk from subscription {self.first_subscription_id}"


# --- Documents (PDFs) and e-mail delivery ---------------------------------------------------------------


class DocumentPdf(models.Model):
    """The archived original PDF of one invoice or credit note (invoicing.documents): rendered once, when the
    document is issued, stored with its SHA-256 and never rewritten (GoBD, §14b UStG: kept unchanged for ten
    years). Payments, credits and voiding change the document's status, shown beside the file, never in it. A
    corrected rendering (a template fix) is a ``DocumentPdfVersion`` beside this one; this original stays.
    Kept beside the document rather than on it because credit notes are read-only rows. ``source_updated_at``
    is the invoice's ``updated_at`` when the original was rendered (for the record)."""

    invoice = models.OneToOneField(Invoice, on_delete=models.CASCADE, null=True, blank=True, related_name="pdf")
    credit_note = models.OneToOneField(CreditNote, on_delete=models.PROTECT, null=True, blank=True, related_name="pdf")
    file = models.FileField(max_length=300)
    sha256 = models.CharField(max_length=64)
    size = models.PositiveIntegerField()
    source_updated_at = models.DateTimeField(null=True, blank=True)
    rendered_at = models.DateTimeField()

    class Meta:
        verbose_name = "document PDF"
        constraints = [
            models.CheckConstraint(
                condition=(Q(invoice__isnull=False) & Q(credit_note__isnull=True))
                | (Q(invoice__isnull=True) & Q(credit_note__isnull=False)),
                name="document_pdf_one_document",
            ),
        ]

    def __str__(self) -> str:
        return self.file.name


class DocumentPdfVersion(models.Model):
    """A later rendering of an archived document (version 2, 3, …), made by staff after a template fix, with
    the reason, the time and who. The original (``DocumentPdf``, version 1) and every earlier version stay as
    they are; customers download the newest."""

    original = models.ForeignKey(DocumentPdf, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveSmallIntegerField(help_text="2 for the first new version; the original is 1.")
    file = models.FileField(max_length=300)
    sha256 = models.CharField(max_length=64)
    size = models.PositiveIntegerField()
    reason = models.CharField(max_length=500)
    rendered_at = models.DateTimeField()
    rendered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = "document PDF version"
        ordering = ["original", "version"]
        constraints = [
            models.UniqueConstraint(fields=["original", "version"], name="document_pdf_version_unique"),
            models.CheckConstraint(condition=Q(version__gte=2), name="document_pdf_version_after_original"),
            models.CheckConstraint(condition=~Q(reason=""), name="document_pdf_version_has_reason"),
        ]

    def __str__(self) -> str:
        return f"{self.file.name} (version {self.version})"


class EInvoiceFile(models.Model):
    """The archived e-invoice XML of one invoice or credit note (invoicing.einvoice): built from what the
    document froze at issue, validated (XSD, EN 16931, XRechnung when claimed), stored with its SHA-256 and never
    rewritten, like ``DocumentPdf``. For Factur-X customers the same XML is also embedded in the archived PDF."""

    invoice = models.OneToOneField(Invoice, on_delete=models.CASCADE, null=True, blank=True, related_name="einvoice")
    credit_note = models.OneToOneField(
        CreditNote, on_delete=models.PROTECT, null=True, blank=True, related_name="einvoice"
    )
    format = models.CharField(max_length=20, help_text="The customer's e-invoice format at issue.")
    file = models.FileField(max_length=300)
    sha256 = models.CharField(max_length=64)
    size = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "e-invoice"
        constraints = [
            models.CheckConstraint(
                condition=(Q(invoice__isnull=False) & Q(credit_note__isnull=True))
                | (Q(invoice__isnull=True) & Q(credit_note__isnull=False)),
                name="einvoice_file_one_document",
            ),
        ]

    def __str__(self) -> str:
        return self.file.name


# --- Quotes (docs/decisions/quotes.md) --------------------------------------------------------------------


class QuoteStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SENT = "sent", "Sent"
    ACCEPTED = "accepted", "Accepted"
    CONVERTED = "converted", "Converted"
    DECLINED = "declined", "Declined"
    CANCELED = "canceled", "Withdrawn"


class Quote(models.Model):
    """An offer of a subscription from catalog prices: drafted by staff, numbered and frozen when sent (its first
    invoice and renewal computed by the billing run's own code), accepted by the customer in the portal, and then
    converted into the subscription it describes."""

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="quotes")
    number = models.CharField(max_length=50, blank=True, help_text="Given when the quote is sent.")
    series = models.ForeignKey(NumberSeries, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    status = models.CharField(max_length=20, choices=QuoteStatus.choices, default=QuoteStatus.DRAFT)
    currency = models.CharField(max_length=3, choices=settings.CURRENCY_CHOICES)
    title = models.CharField(max_length=200, blank=True, help_text="Shown above the lines, e.g. the plan's name.")
    memo = models.TextField(blank=True, help_text="Printed on the quote.")
    quote_date = models.DateField(null=True, blank=True, help_text="The date it was sent.")
    valid_until = models.DateField(help_text="The customer can accept it until this day (included).")
    start_date = models.DateField(
        null=True, blank=True, help_text="When the subscription starts. Empty: on the day the quote is accepted."
    )
    trial_days = models.PositiveSmallIntegerField(null=True, blank=True)
    coupon = models.ForeignKey(
        "subscriptions.Coupon", on_delete=models.PROTECT, null=True, blank=True, related_name="quotes"
    )
    # Frozen when sent: what the customer was shown (first invoice lines and totals, the renewal's total).
    offer = models.JSONField(default=dict, blank=True, editable=False)
    first_total = models.DecimalField(max_digits=18, decimal_places=3, null=True, blank=True, editable=False)
    renewal_total = models.DecimalField(max_digits=18, decimal_places=3, null=True, blank=True, editable=False)
    sent_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.EmailField(blank=True, help_text="The portal user who accepted it.")
    accepted_ip = models.GenericIPAddressField(null=True, blank=True)
    declined_at = models.DateTimeField(null=True, blank=True)
    decline_reason = models.TextField(blank=True)
    subscription = models.OneToOneField(
        "subscriptions.Subscription", on_delete=models.PROTECT, null=True, blank=True, related_name="quote"
    )
    conversion_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-pk"]
        constraints = [
            models.UniqueConstraint(fields=["number"], condition=~Q(number=""), name="quote_number_unique"),
            models.CheckConstraint(condition=Q(status__in=QuoteStatus.values), name="quote_status_valid"),
            models.CheckConstraint(condition=Q(status=QuoteStatus.DRAFT) | ~Q(number=""), name="quote_sent_has_number"),
            models.CheckConstraint(
                condition=~Q(status=QuoteStatus.CONVERTED) | Q(subscription__isnull=False),
                name="quote_converted_has_subscription",
            ),
        ]

    def __str__(self) -> str:
        return self.number or f"Draft quote {self.pk}"


class QuoteItem(models.Model):
    """A catalog price and quantity the subscription will have."""

    quote = models.ForeignKey(Quote, on_delete=models.CASCADE, related_name="items")
    price = models.ForeignKey("subscriptions.Price", on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField(default=1)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "pk"]
        constraints = [models.CheckConstraint(condition=Q(quantity__gte=1), name="quoteitem_quantity_positive")]

    def __str__(self) -> str:
        return f"{self.price} × {self.quantity}"
