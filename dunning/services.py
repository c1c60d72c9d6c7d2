"""Dunning: unpaid invoices are chased by themselves — politely, on time, once. See docs/decisions/dunning.md.

A ``DunningPolicy`` is a list of steps, each ``offset_days`` from an invoice's due date with an action (a reminder
e-mail, past due / pause / cancel of the subscription, uncollectible, a late fee). ``send_reminders(as_of=…)``
(daily beat task ``invoicing.send_reminders`` in dunning.tasks, command ``send_reminders``) applies every step
that is due and has not happened yet:

- Each (invoice, step) happens at most once: a ``DunningAction`` row, unique on (invoice, step), is inserted in the
  same transaction as the step's effect. Of two overlapping runs, the second insert conflicts and that run skips
  the step; a run that fails half-way rolls back both the row and the effect, so the step is retried next run.
- Catching up after missed days: all due non-e-mail steps apply in order, but only the latest due e-mail step is
  sent; the earlier ones are recorded as ``superseded`` so that they never fire later. A notice meant for
  before the due date (negative offset) is not sent once the invoice is overdue.
- Only open invoices with an amount due are chased; paid, void, uncollectible and held invoices (the invoice's or
  the customer's ``hold_reminders``, or the subscription's collection paused) are skipped. Each step re-checks
  this under the invoice's lock, so a payment that lands during a run stops the steps after it.
- Locks follow the product's order (customer → subscription → invoice, each by pk), as the payments app does.

Reading is set-based: policies and steps once per run; then per batch of invoices one query for the invoices
(with customer, the customer's dunning settings and "is a late fee" flag) and one for the steps already done.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.utils import timezone

from core import formatting as fmt
from core.errors import NotAllowed
from core.links import invoice_link_url
from core.locks import LockOrder
from core.money import round_amount
from customers.models import Customer
from dunning.models import (
    CustomerDunningSettings,
    DunningAction,
    DunningActionKind,
    DunningActionStatus,
    DunningPolicy,
    DunningStep,
    ReminderTemplate,
)
from invoicing import delivery
from invoicing.models import BillingReason, Invoice, InvoiceStatus
from notifications.models import EmailKind
from notifications.services import email_queue
from payments.selectors import invoice_collection_pending
from subscriptions.models import PauseMode, Subscription

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

logger = logging.getLogger(__name__)

K = DunningActionKind
SUBSCRIPTION_ACTIONS = frozenset({K.SUBSCRIPTION_PAST_DUE, K.SUBSCRIPTION_PAUSE, K.SUBSCRIPTION_CANCEL})

DEFAULT_POLICY_NAME = "Standard"
# (offset days, action, template): −3 friendly notice, +1, +7 reminders, +14 final notice, +30 suspend, +60
# uncollectible, no late fee (the issue's default; editable in the admin).
DEFAULT_POLICY_STEPS: tuple[tuple[int, str, str], ...] = (
    (-3, K.EMAIL, ReminderTemplate.FRIENDLY),
    (1, K.EMAIL, ReminderTemplate.REMINDER),
    (7, K.EMAIL, ReminderTemplate.REMINDER),
    (14, K.EMAIL, ReminderTemplate.FINAL),
    (30, K.SUBSCRIPTION_PAUSE, ""),
    (60, K.INVOICE_UNCOLLECTIBLE, ""),
)

LATE_FEE_DESCRIPTION = {
    "en": "Late fee for invoice {number} (due {due_date})",
    "de": "Mahngebühr zu Rechnung {number} (fällig am {due_date})",
}

# Decisions of the plan for one due step.
SEND = "send"
SUPERSEDE = "supersede"
APPLY = "apply"


class DunningError(NotAllowed):
    pass


# --- the default policy -----------------------------------------------------------------------------------


def create_default_policy(policy_model: Any = DunningPolicy, step_model: Any = DunningStep) -> int:
    """Create the default policy unless a default or a policy of that name exists (so a policy staff renamed or
    edited is never recreated beside theirs). Takes the model classes so the data migration can pass its
    historical models. Returns the number of rows created."""
    if policy_model.objects.filter(Q(is_default=True) | Q(name=DEFAULT_POLICY_NAME)).exists():
        return 0
    policy = policy_model.objects.create(
        name=DEFAULT_POLICY_NAME,
        is_default=True,
        description="Friendly notice 3 days before the due date; reminders 1, 7 and 14 days after; "
        "subscription suspended after 30 days; uncollectible after 60. No late fee.",
    )
    step_model.objects.bulk_create(
        [
            step_model(policy=policy, offset_days=offset, action=action, template=template)
            for offset, action, template in DEFAULT_POLICY_STEPS
        ]
    )
    return 1 + len(DEFAULT_POLICY_STEPS)


@transaction.atomic
def seed_dunning() -> int:
    """Demo seed step (idempotent): the default policy with its steps. Returns the number of rows created."""
    return create_default_policy()


# --- selectors --------------------------------------------------------------------------------------------


def dunning_policies_load() -> dict[int, DunningPolicy]:
    """Every policy with its steps in order (two queries); ``policy.ordered_steps`` is the list."""
    policies = DunningPolicy.objects.prefetch_related(
        Prefetch("steps", queryset=DunningStep.objects.order_by("offset_days", "pk"), to_attr="ordered_steps")
    )
    return {policy.pk: policy for policy in policies}


def dunning_policy_default(policies: Iterable[DunningPolicy] | None = None) -> DunningPolicy | None:
    """The default policy, or ``None`` if staff removed the default (then only customers with a policy of their
    own are chased)."""
    if policies is None:
        return DunningPolicy.objects.filter(is_default=True).first()
    return next((policy for policy in policies if policy.is_default), None)


def dunning_policy_for_customer(*, customer: Customer) -> DunningPolicy | None:
    custom = CustomerDunningSettings.objects.filter(customer=customer, policy__isnull=False).first()
    return custom.policy if custom is not None else dunning_policy_default()


def invoice_is_chaseable(invoice: Invoice) -> bool:
    """Open with something due, held neither on the invoice nor on the customer, and not of a subscription whose
    collection is paused."""
    return (
        invoice.status == InvoiceStatus.OPEN
        and invoice.amount_due > 0
        and invoice.due_date is not None
        and not invoice.hold_reminders
        and not _customer_settings(invoice).hold_reminders
        and (invoice.subscription is None or not invoice.subscription.collection_paused)
    )


def invoice_dunning_history(*, invoice: Invoice) -> QuerySet[DunningAction]:
    return DunningAction.objects.filter(invoice=invoice).select_related("step", "outbound_email").order_by("at", "pk")


def _customer_settings(invoice: Invoice) -> CustomerDunningSettings:
    try:
        return invoice.customer.dunning_settings  # type: ignore[no-any-return]
    except CustomerDunningSettings.DoesNotExist:
        return CustomerDunningSettings(customer=invoice.customer)


def _candidates(*, latest_due_date: dt.date, as_of: dt.date) -> QuerySet[Invoice]:
    return (
        Invoice.objects.filter(
            status=InvoiceStatus.OPEN, amount_due__gt=0, due_date__lte=latest_due_date, hold_reminders=False
        )
        # A debit with the bank, or a charge waiting for the customer's 3-D Secure (within its grace period):
        # not chased meanwhile; missed steps are caught up once it is no longer pending.
        .exclude(invoice_collection_pending(as_of=as_of))
        .exclude(customer__dunning_settings__hold_reminders=True)
        # Collection paused: no step at all until it resumes; then the run catches up as after missed days.
        .exclude(subscription__pause_mode=PauseMode.COLLECTION)
        .select_related("customer", "customer__dunning_settings")
        .annotate(is_late_fee=Exists(DunningAction.objects.filter(late_fee_invoice=OuterRef("pk"))))
        .order_by("pk")
    )


# --- planning (pure) --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedStep:
    step: DunningStep
    decision: str  # SEND, SUPERSEDE or APPLY
    scheduled_for: dt.date


@dataclass(frozen=True)
class DoneStep:
    step_id: int
    offset_days: int
    action: str
    status: str


def plan_steps(
    *, due_date: dt.date, steps: Sequence[DunningStep], done: Iterable[DoneStep], as_of: dt.date
) -> list[PlannedStep]:
    """The steps of a policy that are due on ``as_of`` and not done yet, in order, with what to do with each:
    every due action applies; of the due e-mails only the latest is sent (unless a later one went out already),
    the others are superseded; a notice before the due date is superseded once the invoice is overdue."""
    done = list(done)
    done_ids = {item.step_id for item in done}
    due = [s for s in steps if s.pk not in done_ids and due_date + dt.timedelta(days=s.offset_days) <= as_of]
    if not due:
        return []
    sent = [item.offset_days for item in done if item.action == K.EMAIL and item.status == DunningActionStatus.DONE]
    latest_sent = max(sent, default=None)
    sendable = [s for s in due if s.action == K.EMAIL and not (s.offset_days < 0 and as_of > due_date)]
    chosen = sendable[-1] if sendable else None
    if chosen is not None and latest_sent is not None and chosen.offset_days <= latest_sent:
        chosen = None
    plan = []
    for step in due:
        decision = (SEND if step is chosen else SUPERSEDE) if step.action == K.EMAIL else APPLY
        plan.append(PlannedStep(step, decision, due_date + dt.timedelta(days=step.offset_days)))
    return plan


# --- the run ----------------------------------------------------------------------------------------------


@dataclass
class StepResult:
    invoice_id: int
    invoice_number: str
    step_id: int | None
    action: str
    scheduled_for: str
    outcome: str  # sent, applied, superseded, skipped, stopped, already_done, failed; would_* in a dry run
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "invoice": self.invoice_number,
            "invoice_id": self.invoice_id,
            "step": self.step_id,
            "action": self.action,
            "scheduled_for": self.scheduled_for,
            "outcome": self.outcome,
            "detail": self.detail,
        }


@dataclass
class DunningRunResult:
    as_of: dt.date
    dry_run: bool = False
    invoices_seen: int = 0
    steps: list[StepResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for step in self.steps if step.outcome == outcome)

    @property
    def emails(self) -> int:
        return self.count("would_send" if self.dry_run else "sent")

    @property
    def failed(self) -> int:
        return self.count("failed")

    def as_dict(self) -> dict[str, Any]:
        outcomes: dict[str, int] = defaultdict(int)
        for step in self.steps:
            outcomes[step.outcome] += 1
        return {
            "as_of": self.as_of.isoformat(),
            "dry_run": self.dry_run,
            "invoices_seen": self.invoices_seen,
            "emails": self.emails,
            "failed": self.failed,
            "outcomes": dict(sorted(outcomes.items())),
            "steps": [step.as_dict() for step in self.steps],
            "warnings": self.warnings,
        }


def send_reminders(
    *, as_of: dt.date, dry_run: bool = False, batch_size: int | None = None, customer_id: int | None = None
) -> DunningRunResult:
    """Apply every dunning step due on or before ``as_of`` (a date in BILLING_TIMEZONE) that has not happened
    yet. Safe to run any number of times, concurrently too. ``dry_run`` plans and writes nothing. ``customer_id``
    (the customer test clock): only that customer's invoices."""
    batch_size = batch_size or settings.DUNNING_BATCH_SIZE
    result = DunningRunResult(as_of=as_of, dry_run=dry_run)
    policies = dunning_policies_load()
    default = dunning_policy_default(policies.values())
    if default is None:
        result.warnings.append("no default dunning policy: only customers with a policy of their own are chased")
    offsets = [step.offset_days for policy in policies.values() for step in policy.ordered_steps]  # type: ignore[attr-defined]
    if not offsets:
        return result
    # The earliest step of any policy bounds which due dates can have a step due today.
    candidates = _candidates(latest_due_date=as_of - dt.timedelta(days=min(offsets)), as_of=as_of)
    if customer_id is not None:
        candidates = candidates.filter(customer_id=customer_id)
    last_pk = 0
    while True:
        batch = list(candidates.filter(pk__gt=last_pk)[:batch_size])
        if not batch:
            break
        last_pk = batch[-1].pk
        result.invoices_seen += len(batch)
        done_by_invoice: dict[int, list[DoneStep]] = defaultdict(list)
        rows = DunningAction.objects.filter(invoice_id__in=[i.pk for i in batch], step__isnull=False).values_list(
            "invoice_id", "step_id", "step__offset_days", "action", "status"
        )
        for invoice_id, step_id, offset, action, status in rows:
            done_by_invoice[invoice_id].append(DoneStep(step_id, offset, action, status))
        for invoice in batch:
            custom = _customer_settings(invoice)
            policy = policies.get(custom.policy_id) if custom.policy_id else default
            if policy is None:
                continue
            assert invoice.due_date is not None
            plan = plan_steps(
                due_date=invoice.due_date,
                steps=policy.ordered_steps,  # type: ignore[attr-defined]
                done=done_by_invoice[invoice.pk],
                as_of=as_of,
            )
            if dry_run:
                result.steps.extend(_dry_result(invoice, planned) for planned in plan)
            else:
                result.steps.extend(_execute_plan(invoice=invoice, plan=plan, as_of=as_of))
    logger.info("dunning run as of %s: %s", as_of, result.as_dict() | {"steps": len(result.steps)})
    return result


def _dry_result(invoice: Invoice, planned: PlannedStep) -> StepResult:
    outcome = {SEND: "would_send", SUPERSEDE: "would_supersede", APPLY: "would_apply"}[planned.decision]
    return StepResult(
        invoice.pk, invoice.number, planned.step.pk, planned.step.action, planned.scheduled_for.isoformat(), outcome
    )


def _execute_plan(*, invoice: Invoice, plan: list[PlannedStep], as_of: dt.date) -> list[StepResult]:
    """Superseded e-mails are recorded first (one INSERT … ON CONFLICT DO NOTHING: a record, no effect). Then
    each step in its own transaction, in order; a step that fails stops the later ones (they must not run
    before it) and is retried by the next run."""
    results: list[StepResult] = []
    superseded = [planned for planned in plan if planned.decision == SUPERSEDE]
    if superseded:
        DunningAction.objects.bulk_create(
            [
                _new_row(
                    invoice=invoice,
                    step=planned.step,
                    as_of=as_of,
                    status=DunningActionStatus.SUPERSEDED,
                    detail=_superseded_why(planned, invoice=invoice, as_of=as_of),
                )
                for planned in superseded
            ],
            ignore_conflicts=True,
        )
        results.extend(
            StepResult(
                invoice.pk,
                invoice.number,
                planned.step.pk,
                planned.step.action,
                planned.scheduled_for.isoformat(),
                outcome="superseded",
                detail=_superseded_why(planned, invoice=invoice, as_of=as_of),
            )
            for planned in superseded
        )
    for planned in plan:
        if planned.decision == SUPERSEDE:
            continue
        result = StepResult(
            invoice.pk,
            invoice.number,
            planned.step.pk,
            planned.step.action,
            planned.scheduled_for.isoformat(),
            outcome="failed",
        )
        try:
            result.outcome, result.detail = _execute_step(invoice=invoice, step=planned.step, as_of=as_of)
        except Exception as exc:  # one invoice's failure never stops the others; it is reported and retried
            logger.exception("dunning step %s of invoice %s failed", planned.step.pk, invoice.pk)
            result.detail = f"{type(exc).__name__}: {exc}"[:500]
        results.append(result)
        if result.outcome in ("failed", "stopped"):
            break
    return results


def _superseded_why(planned: PlannedStep, *, invoice: Invoice, as_of: dt.date) -> str:
    if planned.step.offset_days < 0 and invoice.due_date is not None and as_of > invoice.due_date:
        return "a notice before the due date; the invoice is overdue now"
    return "a later reminder was sent instead"


def _lock(*, invoice: Invoice, with_subscription: bool) -> Invoice | None:
    """Lock the invoice and return it as read under the lock, or ``None`` if it is no longer chased (paid
    meanwhile, held, …). Steps that change the subscription first lock customer → subscription, the product's
    lock order (core.locks), so they cannot deadlock with a payment allocation."""
    order = LockOrder()
    if with_subscription and invoice.subscription_id is not None:
        order.lock(Customer.objects.all(), [invoice.customer_id])
        order.lock(Subscription.objects.all(), [invoice.subscription_id])
    rows = order.lock(
        Invoice.objects.select_related("customer", "customer__dunning_settings", "subscription"),
        [invoice.pk],
        of_self=True,
    )
    locked = rows[0] if rows else None
    if locked is None or not invoice_is_chaseable(locked):
        return None
    return locked


def _new_row(
    *, invoice: Invoice, step: DunningStep | None, as_of: dt.date, status: str = "done", **fields: Any
) -> DunningAction:
    return DunningAction(
        invoice=invoice,
        step=step,
        action=step.action if step is not None else K.EMAIL,
        status=status,
        as_of=as_of,
        scheduled_for=invoice.due_date + dt.timedelta(days=step.offset_days) if step and invoice.due_date else None,
        at=timezone.now(),
        **fields,
    )


def _execute_step(*, invoice: Invoice, step: DunningStep, as_of: dt.date) -> tuple[str, str]:
    """One step and its (invoice, step) row in one transaction. The row is inserted last, so its unique
    constraint has the final word: if an overlapping run got there first, this INSERT fails and the whole
    transaction — e-mail row, fee invoice, subscription change — rolls back."""
    try:
        with transaction.atomic():
            locked = _lock(invoice=invoice, with_subscription=step.action in SUBSCRIPTION_ACTIONS)
            if locked is None:
                return "stopped", "no longer open, or held"
            if DunningAction.objects.filter(invoice=locked, step=step).exists():
                return "already_done", ""
            row = _new_row(invoice=locked, step=step, as_of=as_of)
            outcome, detail = _apply(row=row, invoice=locked, step=step, as_of=as_of)
            if outcome == "skipped":
                row.status = DunningActionStatus.SKIPPED
            row.detail = detail[:500]
            row.save(force_insert=True)
            return outcome, detail
    except IntegrityError:
        if DunningAction.objects.filter(invoice_id=invoice.pk, step=step).exists():
            return "already_done", ""
        raise


def _apply(*, row: DunningAction, invoice: Invoice, step: DunningStep, as_of: dt.date) -> tuple[str, str]:
    """The step's effect, inside the claim's transaction. ("skipped", why) for steps that do not apply to this
    invoice (recorded, so they are not tried again); exceptions roll the claim back."""
    from subscriptions import services as subscription_services
    from subscriptions.services import InvalidTransition

    if step.action == K.EMAIL:
        row.outbound_email = reminder_email_queue(
            invoice=invoice, template=step.template, as_of=as_of, idempotency_key=f"reminder:{invoice.pk}:{step.pk}"
        )
        return "sent", ""
    if step.action == K.INVOICE_UNCOLLECTIBLE:
        from invoicing.services import invoice_mark_uncollectible

        invoice_mark_uncollectible(invoice=invoice, reason=f"dunning: {step}")
        return "applied", ""
    if step.action == K.LATE_FEE:
        return _late_fee(row=row, invoice=invoice, step=step, as_of=as_of)
    subscription = invoice.subscription
    if subscription is None:
        return "skipped", "the invoice has no subscription"
    reason = f"invoice {invoice.number} overdue (dunning: {step})"
    try:
        # A savepoint: a refused transition leaves the claim's transaction usable.
        with transaction.atomic():
            if step.action == K.SUBSCRIPTION_PAST_DUE:
                subscription_services.subscription_mark_past_due(subscription=subscription, reason=reason)
            elif step.action == K.SUBSCRIPTION_PAUSE:
                subscription_services.subscription_pause(subscription=subscription, as_of=as_of, reason=reason)
            elif step.action == K.SUBSCRIPTION_CANCEL:
                subscription_services.subscription_cancel(subscription=subscription, as_of=as_of, reason=reason)
            else:  # pragma: no cover - the CHECK constraint allows no other action
                raise DunningError(f"unknown dunning action {step.action}")
    except InvalidTransition as exc:
        return "skipped", f"subscription {subscription.pk}: {exc}"
    return "applied", ""


def late_fee_amount(*, step: DunningStep, invoice: Invoice) -> Decimal | None:
    """The fee for ``invoice`` (rounded to its currency), or ``None`` if the step has no fee in its currency."""
    if step.late_fee_percent is not None:
        return round_amount(invoice.amount_due * step.late_fee_percent / Decimal(100), invoice.currency)
    if step.late_fee_amount is not None and step.late_fee_currency == invoice.currency:
        return round_amount(step.late_fee_amount, invoice.currency)
    return None


def _late_fee(*, row: DunningAction, invoice: Invoice, step: DunningStep, as_of: dt.date) -> tuple[str, str]:
    from invoicing.services import InvoiceLineSpec, invoice_create_draft, invoice_finalize

    if DunningAction.objects.filter(late_fee_invoice=invoice).exists():
        return "skipped", "no late fee on a late fee"
    amount = late_fee_amount(step=step, invoice=invoice)
    if amount is None:
        return "skipped", f"the fee is in {step.late_fee_currency}, the invoice in {invoice.currency}"
    if amount <= 0:
        return "skipped", "the fee rounds to zero"
    language = fmt.document_language((invoice.customer_snapshot or {}).get("language") or invoice.customer.language)
    assert invoice.due_date is not None
    description = LATE_FEE_DESCRIPTION[language].format(
        number=invoice.number, due_date=fmt.date(invoice.due_date, language)
    )
    draft = invoice_create_draft(
        customer=invoice.customer,
        currency=invoice.currency,
        billing_reason=BillingReason.ONE_OFF,
        memo=f"Late fee for overdue invoice {invoice.number}.",
        lines=[InvoiceLineSpec(description=description, unit_amount=amount)],
    )
    row.late_fee_invoice = invoice_finalize(invoice=draft, issue_date=as_of)
    return "applied", ""


# --- reminder e-mails -------------------------------------------------------------------------------------


def reminder_email_context(*, invoice: Invoice, as_of: dt.date) -> dict[str, Any]:
    """The invoice e-mail's context plus days overdue / until due and the signed, expiring pay link that opens
    only this invoice in the portal."""
    context = delivery.invoice_email_context(invoice)
    assert invoice.due_date is not None
    days = (as_of - invoice.due_date).days
    context.update(
        days_overdue=max(days, 0),
        days_until_due=max(-days, 0),
        is_overdue=days > 0,
        pay_url=invoice_link_url(invoice_id=invoice.pk, purpose="pay"),
        link_valid_days=settings.PORTAL_LINK_MAX_AGE_DAYS,
    )
    return context


def reminder_email_queue(*, invoice: Invoice, template: str, as_of: dt.date, idempotency_key: str) -> Any:
    """Queue a reminder through the outbound-email machinery (stored, retried, tracked, once per key), with the
    invoice PDF attached at send time."""
    return email_queue(
        kind=EmailKind.REMINDER,
        customer=invoice.customer,
        idempotency_key=idempotency_key,
        template=template,
        context=reminder_email_context(invoice=invoice, as_of=as_of),
        invoice=invoice,
        attach_pdf=True,
        language=(invoice.customer_snapshot or {}).get("language") or invoice.customer.language,
    )


def _template_for_now(*, invoice: Invoice, policy: DunningPolicy | None, as_of: dt.date) -> str:
    """The message of the invoice's current stage: the latest e-mail step already due, else the friendly notice
    before the due date, a reminder after it."""
    assert invoice.due_date is not None
    steps = list(policy.steps.filter(action=K.EMAIL).order_by("offset_days", "pk")) if policy else []
    due = [s for s in steps if invoice.due_date + dt.timedelta(days=s.offset_days) <= as_of]
    if due and not (due[-1].offset_days < 0 and as_of > invoice.due_date):
        return due[-1].template
    return ReminderTemplate.REMINDER if as_of > invoice.due_date else ReminderTemplate.FRIENDLY


def dunning_reminder_send_now(
    *, invoice: Invoice, as_of: dt.date | None = None, actor: AbstractBaseUser | None = None
) -> DunningAction:
    """Staff's "send reminder now": one more reminder, outside the schedule (the scheduled steps still follow).
    Refused for invoices that are not chased (paid, void, uncollectible, draft, held)."""
    from core.dates import billing_today

    as_of = as_of or billing_today()
    with transaction.atomic():
        locked = _lock(invoice=invoice, with_subscription=False)
        if locked is None:
            current = Invoice.objects.only("status", "number").get(pk=invoice.pk)
            raise DunningError(f"invoice {current} is {current.status} or on hold: no reminder")
        policy = dunning_policy_for_customer(customer=locked.customer)
        template = _template_for_now(invoice=locked, policy=policy, as_of=as_of)
        row = _new_row(
            invoice=locked,
            step=None,
            as_of=as_of,
            detail="sent by staff",
            actor_id=actor.pk if actor is not None and actor.is_authenticated else None,
        )
        row.save(force_insert=True)  # manual reminders have no step: their key is the row's own id
        row.outbound_email = reminder_email_queue(
            invoice=locked, template=template, as_of=as_of, idempotency_key=f"reminder:{locked.pk}:manual:{row.pk}"
        )
        row.save(update_fields=["outbound_email"])
    return row


# --- holds ------------------------------------------------------------------------------------------------


def invoice_hold_reminders_set(*, invoice: Invoice, hold: bool) -> Invoice:
    """Hold (disputed) or release an invoice's dunning. A plain UPDATE: ``updated_at`` stays, so the stored PDF
    does not turn stale. Steps that fell due while held are caught up (latest e-mail only) after release."""
    Invoice.objects.filter(pk=invoice.pk).update(hold_reminders=hold)
    invoice.hold_reminders = hold
    return invoice


def customer_dunning_settings_set(
    *, customer: Customer, hold_reminders: bool | None = None, policy: DunningPolicy | bool | None = False
) -> CustomerDunningSettings:
    """Set a customer's hold and/or policy (``policy=None`` → the default policy; ``False`` leaves it)."""
    with transaction.atomic():
        settings_row, _ = CustomerDunningSettings.objects.select_for_update().get_or_create(customer=customer)
        if hold_reminders is not None:
            settings_row.hold_reminders = hold_reminders
        if policy is not False:
            settings_row.policy = policy if isinstance(policy, DunningPolicy) else None
        settings_row.save()
    return settings_row
