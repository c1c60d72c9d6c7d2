"""Payments, their allocation to invoices, the customer credit ledger, refunds, saved payment methods, automatic
charge attempts, bank transactions and gateway webhook events.

Amounts are ``DecimalField`` columns next to one ``currency`` column per row, as in invoicing (see
docs/decisions/payments.md): a payment, its allocations, its refunds and the invoices they settle all carry the
same currency, and one column per row cannot disagree with itself. Every amount is rounded in Python with
``core.money.round_amount`` before it is stored; ``amount_money`` gives a ``Money`` for display.

Rows here are records of what happened: the services in ``payments.services`` are the only writers, status
columns only move through guarded ``UPDATE … WHERE status=<old>`` statements, and the database refuses what must
never happen twice (gateway references, bank transaction ids, webhook event ids, idempotency keys).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from moneyed import Money

from core import formatting as fmt
from core.audit import audited
from invoicing.models import AMOUNT

ZERO = Decimal(0)
CURRENCY_ISO = Q(currency__regex=r"^[A-Z]{3}$")


def _money(amount: Decimal, currency: str) -> str:
    """How a payment's or ledger entry's name shows its amount (admin lists, selects, messages): ``€650.00``."""
    return fmt.money(amount, currency, fmt.DEFAULT_LANGUAGE)


class Gateway(models.TextChoices):
    SANDBOX = "sandbox", "Sandbox (test cards)"
    STRIPE = "stripe", "Stripe"


class MethodType(models.TextChoices):
    CARD = "card", "Card"
    SEPA_DEBIT = "sepa_debit", "SEPA Direct Debit"


# --- Payment methods ------------------------------------------------------------------------------------


@audited(exclude=("token",))  # the gateway token is not copied into the audit
class PaymentMethod(models.Model):
    """A card (or other instrument) the customer saved at a gateway; we keep only the gateway's id and what staff
    need to recognise it, never card numbers."""

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="payment_methods")
    gateway = models.CharField(max_length=20, choices=Gateway.choices, default=Gateway.SANDBOX)
    token = models.CharField(
        "gateway id", max_length=255, help_text="The gateway's id of the saved method, e.g. pm_… at Stripe."
    )
    gateway_customer_id = models.CharField(
        max_length=255, blank=True, help_text="The gateway's customer id the method is attached to (cus_… at Stripe)."
    )
    brand = models.CharField(max_length=30, blank=True)
    type = models.CharField(max_length=20, choices=MethodType.choices, default=MethodType.CARD, db_default="card")
    last4 = models.CharField(max_length=4, blank=True)
    exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    mandate_id = models.CharField(
        max_length=255, blank=True, db_default="", help_text="The gateway's mandate (mandate_… at Stripe), SEPA only."
    )
    mandate_reference = models.CharField(
        max_length=100, blank=True, db_default="", help_text="The mandate reference the bank statement shows."
    )
    is_default = models.BooleanField("default", default=False)
    is_active = models.BooleanField(default=True, help_text="Inactive methods are never charged.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["customer", "-is_default", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["gateway", "token"], name="payment_method_gateway_token_unique"),
            models.UniqueConstraint(
                fields=["customer"], condition=Q(is_default=True), name="payment_method_one_default"
            ),
            models.CheckConstraint(condition=Q(gateway__in=Gateway.values), name="payment_method_gateway_valid"),
            models.CheckConstraint(condition=Q(type__in=MethodType.values), name="payment_method_type_valid"),
            models.CheckConstraint(
                condition=Q(exp_month__isnull=True) | (Q(exp_month__gte=1) & Q(exp_month__lte=12)),
                name="payment_method_exp_month_1_12",
            ),
        ]

    def __str__(self) -> str:
        if self.type == MethodType.SEPA_DEBIT:
            label = f"SEPA Direct Debit •••• {self.last4}" if self.last4 else self.token
            return f"{label} ({self.mandate_reference})" if self.mandate_reference else label
        label = f"{self.brand or 'card'} •••• {self.last4}" if self.last4 else self.token
        if self.exp_month and self.exp_year:
            label += f" ({self.exp_month:02d}/{self.exp_year % 100:02d})"
        return label

    def expired_on(self, day: dt.date) -> bool:
        """True when the card's expiry month lies before ``day`` (a card is valid through its expiry month)."""
        if not (self.exp_month and self.exp_year):
            return False
        return (self.exp_year, self.exp_month) < (day.year, day.month)


class GatewayCustomer(models.Model):
    """Our customer's id at a gateway (``cus_…`` at Stripe), made once when the customer first saves a method."""

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="gateway_customers")
    gateway = models.CharField(max_length=20, choices=Gateway.choices)
    gateway_customer_id = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "gateway"], name="gateway_customer_once"),
            models.UniqueConstraint(fields=["gateway", "gateway_customer_id"], name="gateway_customer_id_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.gateway} {self.gateway_customer_id}"


# --- Payments -------------------------------------------------------------------------------------------


class PaymentMethodKind(models.TextChoices):
    BANK_TRANSFER = "bank_transfer", "Bank transfer"
    CARD = "card", "Card"
    DIRECT_DEBIT = "direct_debit", "SEPA Direct Debit"
    CASH = "cash", "Cash"
    CHEQUE = "cheque", "Cheque"
    OTHER = "other", "Other"


class PaymentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    REFUNDED = "refunded", "Refunded"
    PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"


@audited(money_fields=("amount", "amount_refunded"))
class Payment(models.Model):
    """Money received from a customer. A succeeded payment is allocated to invoices (``PaymentAllocation``) and
    whatever is left becomes customer credit (an ``overpayment`` ledger entry)."""

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="payments")
    currency = models.CharField(max_length=3, choices=settings.CURRENCY_CHOICES)
    amount = models.DecimalField(**AMOUNT)
    amount_refunded = models.DecimalField(**AMOUNT, default=ZERO)
    method = models.CharField(max_length=20, choices=PaymentMethodKind.choices, default=PaymentMethodKind.BANK_TRANSFER)
    status = models.CharField(max_length=20, choices=PaymentStatus.choices, default=PaymentStatus.SUCCEEDED)
    reference = models.CharField(max_length=255, blank=True, help_text="Remittance text, cheque number, receipt…")
    received_on = models.DateField()
    invoice = models.ForeignKey(
        "invoicing.Invoice",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="named_payments",
        help_text="The invoice the payer named, if any.",
    )
    gateway = models.CharField(max_length=20, blank=True, help_text="sandbox, stripe, or bank for statement imports.")
    gateway_reference = models.CharField(max_length=255, blank=True)
    payment_method = models.ForeignKey(
        PaymentMethod, on_delete=models.PROTECT, null=True, blank=True, related_name="payments"
    )
    notes = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-received_on", "-pk"]
        permissions = [("refund_payment", "Can refund payments")]
        indexes = [
            models.Index(fields=["customer", "-received_on"], name="payment_customer_received_idx"),
            models.Index(fields=["-received_on", "-id"], name="payment_received_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["gateway", "gateway_reference"],
                condition=~Q(gateway_reference=""),
                name="payment_gateway_reference_unique",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=Q(amount_refunded__gte=0) & Q(amount_refunded__lte=F("amount")),
                name="payment_refunded_within_amount",
            ),
            models.CheckConstraint(condition=Q(status__in=PaymentStatus.values), name="payment_status_valid"),
            models.CheckConstraint(condition=Q(method__in=PaymentMethodKind.values), name="payment_method_valid"),
            models.CheckConstraint(condition=CURRENCY_ISO, name="payment_currency_iso"),
        ]

    def __str__(self) -> str:
        return f"Payment #{self.pk} {_money(self.amount, self.currency)}"

    @property
    def amount_money(self) -> Money:
        return Money(self.amount, self.currency)

    @property
    def refundable_amount(self) -> Decimal:
        return self.amount - self.amount_refunded


class PaymentAllocation(models.Model):
    """Part of a payment that settled part of an invoice. ``amount_refunded`` is the part a refund gave back,
    re-opening the invoice's amount due by as much."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="allocations")
    invoice = models.ForeignKey("invoicing.Invoice", on_delete=models.PROTECT, related_name="payment_allocations")
    currency = models.CharField(max_length=3, choices=settings.CURRENCY_CHOICES)
    amount = models.DecimalField(**AMOUNT)
    amount_refunded = models.DecimalField(**AMOUNT, default=ZERO)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["payment", "pk"]
        indexes = [models.Index(fields=["invoice"], name="payment_alloc_invoice_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_allocation_amount_positive"),
            models.CheckConstraint(
                condition=Q(amount_refunded__gte=0) & Q(amount_refunded__lte=F("amount")),
                name="payment_allocation_refunded_within_amount",
            ),
            models.CheckConstraint(condition=CURRENCY_ISO, name="payment_allocation_currency_iso"),
        ]

    def __str__(self) -> str:
        return f"{_money(self.amount, self.currency)} → {self.invoice}"

    @property
    def net_amount(self) -> Decimal:
        return self.amount - self.amount_refunded


# --- Customer credit ------------------------------------------------------------------------------------


class CreditEntryKind(models.TextChoices):
    OVERPAYMENT = "overpayment", "Overpayment"
    CREDIT_NOTE = "credit_note", "Credit note"
    APPLIED_TO_INVOICE = "applied_to_invoice", "Applied to invoice"
    REFUND = "refund", "Refund"
    MANUAL_ADJUSTMENT = "manual_adjustment", "Manual adjustment"


class CreditLedgerEntry(models.Model):
    """One movement of a customer's credit balance in one currency; the balance is the sum of the entries. Added
    credit is positive, used or refunded credit negative. Entries are never changed: a correction is another
    entry (a manual adjustment with a reason)."""

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="credit_entries")
    currency = models.CharField(max_length=3, choices=settings.CURRENCY_CHOICES)
    amount = models.DecimalField(**AMOUNT)
    kind = models.CharField(max_length=20, choices=CreditEntryKind.choices)
    reason = models.CharField(max_length=500, blank=True)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="credit_entries")
    invoice = models.ForeignKey(
        "invoicing.Invoice", on_delete=models.PROTECT, null=True, blank=True, related_name="credit_entries"
    )
    credit_note = models.ForeignKey(
        "invoicing.CreditNote", on_delete=models.PROTECT, null=True, blank=True, related_name="credit_entries"
    )
    refund = models.ForeignKey(
        "payments.Refund", on_delete=models.PROTECT, null=True, blank=True, related_name="credit_entries"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "credit ledger entry"
        verbose_name_plural = "credit ledger entries"
        ordering = ["customer", "-created_at", "-pk"]
        indexes = [models.Index(fields=["customer", "currency"], name="credit_entry_customer_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=CreditEntryKind.values), name="credit_entry_kind_valid"),
            models.CheckConstraint(condition=~Q(amount=0), name="credit_entry_amount_not_zero"),
            models.CheckConstraint(
                condition=~Q(kind__in=[CreditEntryKind.OVERPAYMENT, CreditEntryKind.CREDIT_NOTE]) | Q(amount__gt=0),
                name="credit_entry_additions_positive",
            ),
            models.CheckConstraint(
                condition=~Q(kind__in=[CreditEntryKind.APPLIED_TO_INVOICE, CreditEntryKind.REFUND]) | Q(amount__lt=0),
                name="credit_entry_uses_negative",
            ),
            models.CheckConstraint(
                condition=~Q(kind=CreditEntryKind.MANUAL_ADJUSTMENT) | ~Q(reason=""),
                name="credit_entry_manual_needs_reason",
            ),
            # The invoicing hook may run again (a retried delivery): one entry per credit note.
            models.UniqueConstraint(
                fields=["credit_note"],
                condition=Q(kind=CreditEntryKind.CREDIT_NOTE),
                name="credit_entry_one_per_credit_note",
            ),
            # Credit is applied once, at finalization.
            models.UniqueConstraint(
                fields=["invoice"],
                condition=Q(kind=CreditEntryKind.APPLIED_TO_INVOICE),
                name="credit_entry_applied_once_per_invoice",
            ),
            models.CheckConstraint(condition=CURRENCY_ISO, name="credit_entry_currency_iso"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {_money(self.amount, self.currency)}"

    def save(self, *args: object, **kwargs: object) -> None:
        if not self._state.adding:
            raise ValueError("credit ledger entries are never changed; add an adjustment instead")
        super().save(*args, **kwargs)  # type: ignore[arg-type]


# --- Refunds --------------------------------------------------------------------------------------------


class RefundStatus(models.TextChoices):
    PROCESSING = "processing", "Processing"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Refund(models.Model):
    """Money given back: part or all of a payment (through its gateway for card payments, recorded for manual
    ones), or customer credit paid out (``payment`` empty). Its effects — less customer credit and/or re-opened
    invoices — are booked when it succeeds."""

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="refunds")
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="refunds")
    currency = models.CharField(max_length=3, choices=settings.CURRENCY_CHOICES)
    amount = models.DecimalField(**AMOUNT)
    status = models.CharField(max_length=20, choices=RefundStatus.choices, default=RefundStatus.PROCESSING)
    reason = models.CharField(max_length=500)
    method = models.CharField(max_length=20, choices=PaymentMethodKind.choices, default=PaymentMethodKind.BANK_TRANSFER)
    gateway = models.CharField(max_length=20, blank=True)
    gateway_reference = models.CharField(max_length=255, blank=True)
    idempotency_key = models.CharField(max_length=100, null=True, blank=True, unique=True)
    failure_message = models.CharField(max_length=500, blank=True)
    amount_from_credit = models.DecimalField(**AMOUNT, default=ZERO, help_text="Part that reduced customer credit.")
    amount_reopened = models.DecimalField(**AMOUNT, default=ZERO, help_text="Part that re-opened invoices.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
            models.CheckConstraint(condition=Q(status__in=RefundStatus.values), name="refund_status_valid"),
            models.CheckConstraint(condition=Q(method__in=PaymentMethodKind.values), name="refund_method_valid"),
            models.CheckConstraint(
                condition=Q(amount_from_credit__gte=0) & Q(amount_reopened__gte=0), name="refund_parts_non_negative"
            ),
            models.UniqueConstraint(
                fields=["gateway", "gateway_reference"],
                condition=~Q(gateway_reference=""),
                name="refund_gateway_reference_unique",
            ),
            models.CheckConstraint(condition=CURRENCY_ISO, name="refund_currency_iso"),
        ]

    def __str__(self) -> str:
        return f"Refund #{self.pk} {_money(self.amount, self.currency)}"


# --- Automatic collection -------------------------------------------------------------------------------


class AttemptStatus(models.TextChoices):
    PROCESSING = "processing", "Processing"
    REQUIRES_ACTION = "requires_action", "Requires action (3-D Secure)"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class DeclineType(models.TextChoices):
    SOFT = "soft", "Soft (retried)"
    HARD = "hard", "Hard (not retried)"


class PaymentAttempt(models.Model):
    """One try to charge an invoice to a saved payment method. The row is committed as ``processing`` before the
    gateway is called; the gateway's idempotency key is derived from its id, so re-sending after a crash can
    never charge twice."""

    invoice = models.ForeignKey("invoicing.Invoice", on_delete=models.PROTECT, related_name="payment_attempts")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="payment_attempts")
    payment_method = models.ForeignKey(
        PaymentMethod, on_delete=models.PROTECT, null=True, blank=True, related_name="attempts"
    )
    attempt_number = models.PositiveSmallIntegerField()
    attempted_on = models.DateField(help_text="The as-of date of the try (billing timezone).")
    currency = models.CharField(max_length=3, choices=settings.CURRENCY_CHOICES)
    amount = models.DecimalField(**AMOUNT)
    status = models.CharField(max_length=20, choices=AttemptStatus.choices, default=AttemptStatus.PROCESSING)
    gateway = models.CharField(max_length=20, choices=Gateway.choices)
    idempotency_key = models.CharField(max_length=100, null=True, blank=True, unique=True)
    gateway_reference = models.CharField(max_length=255, blank=True)
    decline_code = models.CharField(max_length=60, blank=True)
    decline_type = models.CharField(max_length=10, choices=DeclineType.choices, blank=True)
    failure_message = models.CharField(max_length=500, blank=True)
    next_retry_on = models.DateField(null=True, blank=True, help_text="Empty: not retried (any more).")
    final_failure = models.BooleanField(default=False, help_text="The last try of this invoice's retry schedule.")
    payment = models.OneToOneField(Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="attempt")
    processing_since = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    failure_email_sent_at = models.DateTimeField(null=True, blank=True)
    action_required_on = models.DateField(
        null=True, blank=True, help_text="When the gateway asked the customer to authenticate (3-D Secure)."
    )
    action_email_sent_at = models.DateTimeField(null=True, blank=True)
    debit_on_or_after = models.DateField(
        null=True, blank=True, help_text="A direct debit in flight: the earliest day the bank debits the account."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(
                fields=["next_retry_on", "id"], name="attempt_next_retry_idx", condition=Q(next_retry_on__isnull=False)
            ),
            models.Index(fields=["status", "processing_since"], name="attempt_status_idx"),
        ]
        constraints = [
            # A retry that runs twice (two beat workers, a re-run command) cannot create the same try twice.
            models.UniqueConstraint(fields=["invoice", "attempt_number"], name="attempt_invoice_number_unique"),
            # At most one try of an invoice is in flight (waiting for the bank or for the customer's 3-D Secure).
            models.UniqueConstraint(
                fields=["invoice"], condition=Q(status="processing"), name="attempt_one_processing_per_invoice"
            ),
            models.UniqueConstraint(
                fields=["invoice"],
                condition=Q(status="requires_action"),
                name="attempt_one_requires_action_per_invoice",
            ),
            models.CheckConstraint(condition=Q(status__in=AttemptStatus.values), name="attempt_status_valid"),
            models.CheckConstraint(
                condition=Q(decline_type="") | Q(decline_type__in=DeclineType.values), name="attempt_decline_type_valid"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="attempt_amount_positive"),
            models.CheckConstraint(condition=Q(attempt_number__gte=1), name="attempt_number_positive"),
            models.CheckConstraint(
                condition=~Q(status="succeeded") | Q(payment__isnull=False), name="attempt_succeeded_has_payment"
            ),
            models.CheckConstraint(condition=CURRENCY_ISO, name="attempt_currency_iso"),
        ]

    def __str__(self) -> str:
        return f"Attempt {self.attempt_number} on invoice {self.invoice_id} ({self.status})"


# --- Bank reconciliation --------------------------------------------------------------------------------


class BankStatementFormat(models.TextChoices):
    CSV = "csv", "CSV"
    CAMT053 = "camt053", "ISO 20022 CAMT.053"


class BankStatement(models.Model):
    filename = models.CharField(max_length=255, blank=True)
    format = models.CharField(max_length=10, choices=BankStatementFormat.choices)
    statement_id = models.CharField(max_length=140, blank=True, help_text="The bank's id of the statement, if any.")
    sha256 = models.CharField(max_length=64)
    transactions_new = models.PositiveIntegerField(default=0)
    transactions_duplicate = models.PositiveIntegerField(default=0)
    matched = models.PositiveIntegerField(default=0)
    queued = models.PositiveIntegerField(default=0)
    imported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    imported_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-imported_at", "-pk"]
        constraints = [
            models.CheckConstraint(condition=Q(format__in=BankStatementFormat.values), name="bank_statement_format_ok")
        ]

    def __str__(self) -> str:
        return f"{self.get_format_display()} {self.filename or self.statement_id} ({self.imported_at:%Y-%m-%d})"


class BankTransactionStatus(models.TextChoices):
    MATCHED = "matched", "Matched automatically"
    UNMATCHED = "unmatched", "Unmatched"
    AMBIGUOUS = "ambiguous", "Ambiguous"
    ASSIGNED = "assigned", "Assigned by staff"
    IGNORED = "ignored", "Ignored"


QUEUE_STATUSES = (BankTransactionStatus.UNMATCHED, BankTransactionStatus.AMBIGUOUS)


class BankTransaction(models.Model):
    """An incoming credit on the business's bank account. Matched ones became a payment; the others wait in the
    reconciliation queue until staff assign them to a customer (and invoice) or ignore them."""

    statement = models.ForeignKey(BankStatement, on_delete=models.PROTECT, related_name="transactions")
    transaction_id = models.CharField(max_length=200, unique=True, help_text="The bank's unique reference.")
    booking_date = models.DateField()
    currency = models.CharField(max_length=3, choices=settings.CURRENCY_CHOICES)
    amount = models.DecimalField(**AMOUNT)
    counterparty_name = models.CharField(max_length=200, blank=True)
    counterparty_iban = models.CharField(max_length=40, blank=True)
    remittance = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=BankTransactionStatus.choices)
    match_note = models.CharField(max_length=500, blank=True)
    suggested_invoice = models.ForeignKey(
        "invoicing.Invoice", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    payment = models.OneToOneField(
        Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="bank_transaction"
    )
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-booking_date", "-pk"]
        indexes = [models.Index(fields=["status", "-booking_date"], name="bank_tx_status_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="bank_tx_amount_positive"),
            models.CheckConstraint(condition=Q(status__in=BankTransactionStatus.values), name="bank_tx_status_valid"),
            models.CheckConstraint(
                condition=~Q(status__in=[BankTransactionStatus.MATCHED, BankTransactionStatus.ASSIGNED])
                | Q(payment__isnull=False),
                name="bank_tx_matched_has_payment",
            ),
            models.CheckConstraint(condition=CURRENCY_ISO, name="bank_tx_currency_iso"),
        ]

    def __str__(self) -> str:
        return f"{self.booking_date} {self.amount} {self.currency} {self.counterparty_name}".strip()


# --- Disputes and gateway fees -------------------------------------------------------------------------


class DisputeStatus(models.TextChoices):
    OPEN = "open", "Open"
    WON = "won", "Won"
    LOST = "lost", "Lost"


class Dispute(models.Model):
    """A chargeback the customer's bank opened on a card payment (Stripe ``dp_…``). While open the invoice is
    flagged (admin, dashboard alert); a lost dispute takes the money back: booked as a refund of the payment,
    which re-opens the invoice (docs/decisions/payments.md)."""

    gateway = models.CharField(max_length=20, choices=Gateway.choices)
    gateway_reference = models.CharField(max_length=255)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="disputes")
    invoice = models.ForeignKey(
        "invoicing.Invoice", on_delete=models.PROTECT, null=True, blank=True, related_name="disputes"
    )
    currency = models.CharField(max_length=3, choices=settings.CURRENCY_CHOICES)
    amount = models.DecimalField(**AMOUNT)
    reason = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=10, choices=DisputeStatus.choices, default=DisputeStatus.OPEN)
    refund = models.OneToOneField(
        Refund, on_delete=models.PROTECT, null=True, blank=True, related_name="dispute", help_text="Lost: the money."
    )
    opened_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["gateway", "gateway_reference"], name="dispute_gateway_reference_unique"),
            models.CheckConstraint(condition=Q(status__in=DisputeStatus.values), name="dispute_status_valid"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="dispute_amount_positive"),
            models.CheckConstraint(condition=CURRENCY_ISO, name="dispute_currency_iso"),
        ]

    def __str__(self) -> str:
        return f"Dispute {self.gateway_reference} {_money(self.amount, self.currency)} ({self.status})"


class FeeKind(models.TextChoices):
    DEBIT_FAILURE = "debit_failure", "Failed direct debit"
    DISPUTE = "dispute", "Dispute"


class GatewayFee(models.Model):
    """A fee the gateway charged the business (a failed SEPA debit, a dispute): a cost of collection, recorded once
    per (kind, source reference)."""

    kind = models.CharField(max_length=20, choices=FeeKind.choices)
    gateway = models.CharField(max_length=20, choices=Gateway.choices)
    source_reference = models.CharField(max_length=255, help_text="The payment intent or dispute it belongs to.")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="gateway_fees")
    invoice = models.ForeignKey(
        "invoicing.Invoice", on_delete=models.PROTECT, null=True, blank=True, related_name="gateway_fees"
    )
    currency = models.CharField(max_length=3, choices=settings.CURRENCY_CHOICES)
    amount = models.DecimalField(**AMOUNT)
    booked_on = models.DateField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-booked_on", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "gateway", "source_reference"], name="gateway_fee_once"),
            models.CheckConstraint(condition=Q(kind__in=FeeKind.values), name="gateway_fee_kind_valid"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="gateway_fee_amount_positive"),
            models.CheckConstraint(condition=CURRENCY_ISO, name="gateway_fee_currency_iso"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} fee {_money(self.amount, self.currency)}"


# --- Webhooks -------------------------------------------------------------------------------------------


class WebhookEvent(models.Model):
    """A gateway event as received (signature verified). Stored once per (gateway, event id); processed once."""

    gateway = models.CharField(max_length=20, choices=Gateway.choices)
    event_id = models.CharField(max_length=255)
    event_type = models.CharField(max_length=100)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["gateway", "event_id"], name="webhook_event_unique"),
            models.CheckConstraint(condition=Q(gateway__in=Gateway.values), name="webhook_event_gateway_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.gateway} {self.event_type} {self.event_id}"


# --- Wallets (prepaid credits) ------------------------------------------------------------------------
# docs/decisions/wallets.md: a wallet per customer and currency holds grants (free or paid, each with its own
# remaining amount and expiry); every movement is a WalletTransaction with the wallet's balance after it.


class WalletAppliesTo(models.TextChoices):
    ALL = "all", "Whole invoices"
    USAGE = "usage", "Usage lines only"


@audited(exclude=("auto_top_up_armed",), money_fields=("auto_top_up_threshold", "auto_top_up_amount"))
class Wallet(models.Model):
    """A customer's prepaid credits in one currency. The balance is the sum of its active grants' remaining
    amounts (``payments.selectors.wallet_balance``); the ledger is its ``transactions``."""

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="wallets")
    currency = models.CharField(max_length=3, choices=settings.CURRENCY_CHOICES)
    applies_to = models.CharField(
        max_length=10,
        choices=WalletAppliesTo.choices,
        default=WalletAppliesTo.ALL,
        help_text="What the credits pay when an invoice is issued: its whole amount due, or only its usage lines.",
    )
    auto_top_up_threshold = models.DecimalField(
        **AMOUNT, null=True, blank=True, help_text="Empty: no automatic top-up. Below this balance, top up."
    )
    auto_top_up_amount = models.DecimalField(
        **AMOUNT, null=True, blank=True, help_text="The amount of credits an automatic top-up buys."
    )
    auto_top_up_armed = models.BooleanField(
        default=True,
        help_text="False after an automatic top-up until the balance is back at the threshold (once per crossing).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["customer", "currency"]
        permissions = [
            ("grant_wallet", "Can grant free wallet credits"),
            ("top_up_wallet", "Can top up wallets (issues the top-up invoice)"),
            ("refund_wallet", "Can refund paid wallet credits"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["customer", "currency"], name="wallet_one_per_customer_currency"),
            models.CheckConstraint(condition=CURRENCY_ISO, name="wallet_currency_iso"),
            models.CheckConstraint(condition=Q(applies_to__in=WalletAppliesTo.values), name="wallet_applies_to_ok"),
            models.CheckConstraint(
                condition=(Q(auto_top_up_threshold__isnull=True) & Q(auto_top_up_amount__isnull=True))
                | (Q(auto_top_up_threshold__gte=0) & Q(auto_top_up_amount__gt=0)),
                name="wallet_auto_top_up_complete",
            ),
        ]

    def __str__(self) -> str:
        return f"Wallet {self.currency} of {self.customer}"

    @property
    def auto_top_up_enabled(self) -> bool:
        return self.auto_top_up_threshold is not None and self.auto_top_up_amount is not None


class GrantKind(models.TextChoices):
    FREE = "free", "Free (promotional)"
    PAID = "paid", "Paid (top-up)"


class GrantStatus(models.TextChoices):
    PENDING = "pending", "Pending (top-up invoice not paid)"
    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired"
    CANCELED = "canceled", "Canceled (top-up invoice voided)"


class WalletGrant(models.Model):
    """Credits added to a wallet at once: a free grant (promotion, by staff or the API) or a paid one (a top-up,
    pending until its invoice is paid). ``remaining`` is what is left to consume, expire or refund."""

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="grants")
    kind = models.CharField(max_length=10, choices=GrantKind.choices)
    status = models.CharField(max_length=10, choices=GrantStatus.choices, default=GrantStatus.ACTIVE)
    amount = models.DecimalField(**AMOUNT)
    remaining = models.DecimalField(**AMOUNT)
    granted_on = models.DateField()
    expires_on = models.DateField(null=True, blank=True, help_text="Usable through this day; empty: never expires.")
    invoice = models.OneToOneField(
        "invoicing.Invoice",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="wallet_top_up",
        help_text="The top-up invoice of a paid grant.",
    )
    automatic = models.BooleanField(default=False, help_text="Made by the automatic top-up.")
    reason = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["wallet", "pk"]
        indexes = [models.Index(fields=["status", "expires_on"], name="wallet_grant_expiry_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=GrantKind.values), name="wallet_grant_kind_valid"),
            models.CheckConstraint(condition=Q(status__in=GrantStatus.values), name="wallet_grant_status_valid"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="wallet_grant_amount_positive"),
            models.CheckConstraint(
                condition=Q(remaining__gte=0) & Q(remaining__lte=F("amount")), name="wallet_grant_remaining_in_amount"
            ),
            models.CheckConstraint(
                condition=~Q(kind=GrantKind.PAID) | Q(invoice__isnull=False), name="wallet_grant_paid_has_invoice"
            ),
            models.CheckConstraint(
                condition=~Q(kind=GrantKind.FREE) | Q(invoice__isnull=True), name="wallet_grant_free_no_invoice"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {_money(self.amount, self.wallet.currency)} ({self.status})"


class WalletEntryKind(models.TextChoices):
    GRANT = "grant", "Free grant"
    TOP_UP = "top_up", "Top-up"
    CONSUMPTION = "consumption", "Consumed by invoice"
    EXPIRY = "expiry", "Expired"
    REFUND = "refund", "Refund of paid credits"


class WalletTransaction(models.Model):
    """One movement of a wallet, per grant: added credits positive, consumed, expired or refunded negative, with
    the wallet's balance after it. Never changed."""

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="transactions")
    grant = models.ForeignKey(WalletGrant, on_delete=models.PROTECT, related_name="transactions")
    kind = models.CharField(max_length=20, choices=WalletEntryKind.choices)
    credit_kind = models.CharField(max_length=10, choices=GrantKind.choices, help_text="Free or paid credits.")
    amount = models.DecimalField(**AMOUNT)
    balance_after = models.DecimalField(**AMOUNT)
    invoice = models.ForeignKey(
        "invoicing.Invoice", on_delete=models.PROTECT, null=True, blank=True, related_name="wallet_transactions"
    )
    refund = models.ForeignKey(
        "payments.Refund", on_delete=models.PROTECT, null=True, blank=True, related_name="wallet_transactions"
    )
    booked_on = models.DateField()
    reason = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["wallet", "-pk"]
        indexes = [models.Index(fields=["wallet", "-id"], name="wallet_tx_wallet_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=WalletEntryKind.values), name="wallet_tx_kind_valid"),
            models.CheckConstraint(condition=Q(credit_kind__in=GrantKind.values), name="wallet_tx_credit_kind_ok"),
            models.CheckConstraint(condition=Q(balance_after__gte=0), name="wallet_tx_balance_not_negative"),
            models.CheckConstraint(
                condition=(Q(kind__in=[WalletEntryKind.GRANT, WalletEntryKind.TOP_UP]) & Q(amount__gt=0))
                | (~Q(kind__in=[WalletEntryKind.GRANT, WalletEntryKind.TOP_UP]) & Q(amount__lt=0)),
                name="wallet_tx_sign_by_kind",
            ),
            models.CheckConstraint(
                condition=~Q(kind=WalletEntryKind.REFUND) | Q(credit_kind=GrantKind.PAID),
                name="wallet_tx_free_never_refunded",
            ),
            # An invoice consumes a grant once, whatever re-runs its settle handler.
            models.UniqueConstraint(
                fields=["invoice", "grant"],
                condition=Q(kind=WalletEntryKind.CONSUMPTION),
                name="wallet_tx_consumed_once_per_invoice_grant",
            ),
            # A grant is added once and expires once.
            models.UniqueConstraint(
                fields=["grant"],
                condition=Q(kind__in=[WalletEntryKind.GRANT, WalletEntryKind.TOP_UP]),
                name="wallet_tx_grant_added_once",
            ),
            models.UniqueConstraint(
                fields=["grant"], condition=Q(kind=WalletEntryKind.EXPIRY), name="wallet_tx_grant_expires_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {_money(self.amount, self.wallet.currency)}"

    def save(self, *args: object, **kwargs: object) -> None:
        if not self._state.adding:
            raise ValueError("wallet transactions are never changed")
        super().save(*args, **kwargs)  # type: ignore[arg-type]
