"""Dunning: reminder policies (steps relative to the due date), what each step did to an invoice, and each
customer's dunning settings."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from core.audit import audited
from invoicing.models import AMOUNT, PERCENTAGE, Invoice
from notifications.models import OutboundEmail


class DunningActionKind(models.TextChoices):
    EMAIL = "email", "Send a reminder e-mail"
    SUBSCRIPTION_PAST_DUE = "subscription_past_due", "Mark the subscription past due"
    SUBSCRIPTION_PAUSE = "subscription_pause", "Suspend (pause) the subscription"
    SUBSCRIPTION_CANCEL = "subscription_cancel", "Cancel the subscription"
    INVOICE_UNCOLLECTIBLE = "invoice_uncollectible", "Mark the invoice uncollectible"
    LATE_FEE = "late_fee", "Charge a late fee (separate invoice)"


class ReminderTemplate(models.TextChoices):
    """E-mail templates of reminder steps: ``templates/emails/<value>.<lang>.txt|.html`` and
    ``<value>_subject.<lang>.txt``."""

    FRIENDLY = "reminders/friendly", "Friendly notice (before the due date)"
    REMINDER = "reminders/reminder", "Payment reminder"
    FINAL = "reminders/final", "Final notice"


@audited()
class DunningPolicy(models.Model):
    """An ordered list of steps, each a number of days from an invoice's due date. One policy is the default;
    a customer may have another (``CustomerDunningSettings``)."""

    name = models.CharField(max_length=100, unique=True)
    is_default = models.BooleanField(default=False, help_text="Used for customers without a policy of their own.")
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "invoicing_dunningpolicy"  # the table keeps the name it had in invoicing
        verbose_name_plural = "dunning policies"
        ordering = ["-is_default", "name"]
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="dunning_one_default"),
        ]

    def __str__(self) -> str:
        return f"{self.name}{' (default)' if self.is_default else ''}"


@audited(money_fields=("late_fee_amount",), currency="late_fee_currency")
class DunningStep(models.Model):
    policy = models.ForeignKey(DunningPolicy, on_delete=models.CASCADE, related_name="steps")
    offset_days = models.IntegerField(help_text="Days from the due date: −3 is three days before, 7 a week after.")
    action = models.CharField(max_length=30, choices=DunningActionKind.choices)
    template = models.CharField(
        max_length=100, choices=ReminderTemplate.choices, blank=True, help_text="E-mail steps: which message."
    )
    late_fee_amount = models.DecimalField(
        **AMOUNT, null=True, blank=True, help_text="Late fee steps: a fixed fee in late_fee_currency …"
    )
    late_fee_currency = models.CharField(max_length=3, choices=settings.CURRENCY_CHOICES, blank=True)
    late_fee_percent = models.DecimalField(
        **PERCENTAGE, null=True, blank=True, help_text="… or a percentage of the amount due."
    )

    class Meta:
        db_table = "invoicing_dunningstep"
        ordering = ["policy", "offset_days", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "offset_days", "action"], name="dunning_step_unique"),
            models.CheckConstraint(condition=Q(action__in=DunningActionKind.values), name="dunning_step_action_valid"),
            models.CheckConstraint(
                condition=~Q(action=DunningActionKind.EMAIL) | Q(template__in=ReminderTemplate.values),
                name="dunning_step_email_has_template",
            ),
            # a late fee is either fixed (with its currency) or a percentage, never both or neither (explicit
            # IS NOT NULL: a CHECK whose expression is NULL passes)
            models.CheckConstraint(
                condition=~Q(action=DunningActionKind.LATE_FEE)
                | (
                    Q(late_fee_amount__isnull=False, late_fee_amount__gt=0, late_fee_percent__isnull=True)
                    & Q(late_fee_currency__regex=r"^[A-Z]{3}$")
                )
                | Q(
                    late_fee_amount__isnull=True,
                    late_fee_percent__isnull=False,
                    late_fee_percent__gt=0,
                    late_fee_percent__lte=100,
                ),
                name="dunning_step_late_fee_defined",
            ),
        ]

    def __str__(self) -> str:
        when = "on the due date" if self.offset_days == 0 else f"{self.offset_days:+d} days"
        if self.action == DunningActionKind.EMAIL:
            what = self.get_template_display() if self.template else "E-mail"
        elif self.action == DunningActionKind.LATE_FEE:
            what = (
                f"Late fee {self.late_fee_percent.normalize()} %"
                if self.late_fee_percent is not None
                else f"Late fee {self.late_fee_amount} {self.late_fee_currency}"
            )
        else:
            what = self.get_action_display()
        return f"{when}: {what}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.action == DunningActionKind.EMAIL and not self.template:
            errors["template"] = "An e-mail step needs a template."
        if self.action == DunningActionKind.LATE_FEE:
            fixed = self.late_fee_amount is not None
            percent = self.late_fee_percent is not None
            if fixed == percent:
                errors["late_fee_amount"] = "Give either a fixed amount (with its currency) or a percentage."
            elif fixed and not self.late_fee_currency:
                errors["late_fee_currency"] = "A fixed fee needs its currency."
        if errors:
            raise ValidationError(errors)


class DunningActionStatus(models.TextChoices):
    DONE = "done", "Done"
    SUPERSEDED = "superseded", "Superseded (a later reminder was sent instead)"
    SKIPPED = "skipped", "Skipped (did not apply)"


class DunningAction(models.Model):
    """A dunning step that happened to an invoice: the row is written in the same transaction as the step's
    effect, and (invoice, step) is unique, so each step takes effect at most once whatever runs twice,
    retries or overlaps. ``step`` is empty for reminders staff sent by hand ("send reminder now")."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="dunning_actions")
    step = models.ForeignKey(DunningStep, on_delete=models.PROTECT, null=True, blank=True, related_name="actions")
    action = models.CharField(max_length=30, choices=DunningActionKind.choices)
    status = models.CharField(max_length=20, choices=DunningActionStatus.choices, default=DunningActionStatus.DONE)
    as_of = models.DateField(help_text="The run's date (billing timezone).")
    scheduled_for = models.DateField(null=True, blank=True, help_text="Due date + the step's offset.")
    at = models.DateTimeField()
    outbound_email = models.ForeignKey(
        OutboundEmail, on_delete=models.PROTECT, null=True, blank=True, related_name="dunning_actions"
    )
    late_fee_invoice = models.OneToOneField(
        Invoice, on_delete=models.PROTECT, null=True, blank=True, related_name="late_fee_for"
    )
    detail = models.CharField(max_length=500, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        db_table = "invoicing_dunningaction"
        ordering = ["invoice", "at", "pk"]
        indexes = [models.Index(fields=["invoice", "at"], name="dunning_action_invoice_at_idx")]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "step"], name="dunning_action_once_per_step"),
            models.CheckConstraint(condition=Q(action__in=DunningActionKind.values), name="dunning_action_kind_valid"),
            models.CheckConstraint(
                condition=Q(status__in=DunningActionStatus.values), name="dunning_action_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} ({self.status})"


@audited()
class CustomerDunningSettings(models.Model):
    """Dunning settings of one customer, kept here (customers never imports dunning): a policy other
    than the default, and a hold on all their reminders."""

    customer = models.OneToOneField("customers.Customer", on_delete=models.CASCADE, related_name="dunning_settings")
    policy = models.ForeignKey(
        DunningPolicy,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="customers",
        help_text="Empty: the default policy.",
    )
    hold_reminders = models.BooleanField(default=False, help_text="No reminders, fees or escalation at all.")
    note = models.CharField(max_length=500, blank=True, help_text="Why (e.g. payment plan agreed until …).")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "invoicing_customerdunningsettings"
        verbose_name = "customer dunning settings"
        verbose_name_plural = "customer dunning settings"

    def __str__(self) -> str:
        return f"Dunning settings of customer {self.customer_id}"
