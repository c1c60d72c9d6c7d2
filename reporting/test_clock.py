"""The customer test clock: "what will this customer be charged, e-mailed and reminded in the next N days — and if
they add 5 seats on the 20th?", answered by the real services in a transaction that is rolled back
(docs/decisions/forecast.md).

Inside one ``transaction.atomic()`` block, day by day: the optional plan change on its day
(``subscriptions.services.subscription_change``), the billing run for this customer (``billing_run(customer_id=…)``),
the settle and deliver work of each new invoice as the ``invoice.issued`` handlers do it (customer credit, the
automatic charge, the invoice e-mail) and the receipts of the payments, the payment retries of this customer, then
the reminders of this customer.
What they wrote — invoices and lines, e-mails (subject and rendered bodies), payment attempts, reminder steps — is
read into plain objects, and ``transaction.set_rollback(True)`` undoes every row: invoices, numbers, credit, e-mails.

- Numbers: an invoice issued in the simulation takes the next number of the real series, and the counter's
  UPDATE is rolled back with the rest, so the next real invoice gets that same number — no gap, no number used.
  While a simulation runs, it holds the counter row's lock from its first invoice to the rollback: real issuing
  waits for it (a simulation takes well under a second per month of calendar).
- E-mails are queued in the outbox, whose sending happens after commit only: they are rendered and never sent.
- Charges go to ``payments.gateways.SimulationGateway`` whatever the saved method's gateway (the sandbox's
  answers for its test cards, success for a real card): no real gateway is ever called.
- The domain events' handlers and the webhooks are not dispatched (they run after commit, which never comes).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction
from django.db.models import Max

from core.errors import InvalidInput
from core.models import DomainEvent
from customers.models import Customer
from dunning.models import DunningAction
from dunning.services import send_reminders
from invoicing.billing_run import billing_run
from invoicing.delivery import invoice_email_on_finalize
from invoicing.models import Invoice, InvoiceStatus
from notifications.models import OutboundEmail
from payments.gateways import simulation_gateway_only
from payments.models import PaymentAttempt
from payments.notifications import payment_receipt_send
from payments.services import PAYABLE, customer_credit_apply, invoice_collect, payment_attempts_retry_due
from subscriptions.models import CollectionMethod, Subscription
from subscriptions.services import ItemSpec, subscription_change

MAX_DAYS = 366


@dataclass(frozen=True)
class SeatChange:
    """Change one subscription's quantity of one of its prices on a day (the "5 more seats on the 20th")."""

    subscription_id: int
    price_id: int
    quantity: int
    on: dt.date


@dataclass(frozen=True)
class SimulatedInvoice:
    day: dt.date
    number: str
    status: str
    currency: str
    total: Decimal
    amount_due: Decimal
    due_date: dt.date | None
    lines: list[tuple[str, Decimal]]  # description, total amount


@dataclass(frozen=True)
class SimulatedEmail:
    day: dt.date
    kind: str
    to: str
    subject: str
    body_text: str
    body_html: str


@dataclass(frozen=True)
class SimulatedCharge:
    day: dt.date
    currency: str
    amount: Decimal
    outcome: str  # succeeded / failed (decline code)
    attempt_number: int


@dataclass(frozen=True)
class SimulatedReminder:
    day: dt.date
    invoice_number: str
    action: str
    status: str


@dataclass
class Simulation:
    customer_id: int
    as_of: dt.date
    days: int
    change: SeatChange | None
    invoices: list[SimulatedInvoice] = field(default_factory=list)
    emails: list[SimulatedEmail] = field(default_factory=list)
    charges: list[SimulatedCharge] = field(default_factory=list)
    reminders: list[SimulatedReminder] = field(default_factory=list)

    @property
    def last_day(self) -> dt.date:
        return self.as_of + dt.timedelta(days=self.days - 1)


def _marks() -> dict[str, int]:
    return {
        name: model.objects.aggregate(last=Max("pk"))["last"] or 0
        for name, model in (
            ("invoice", Invoice),
            ("email", OutboundEmail),
            ("attempt", PaymentAttempt),
            ("dunning", DunningAction),
            ("event", DomainEvent),
        )
    }


def customer_simulate(*, customer: Customer, as_of: dt.date, days: int, change: SeatChange | None = None) -> Simulation:
    """Run the customer's billing, collection and reminders day by day for ``days`` days from ``as_of`` and
    report what happened; nothing of it stays (a rolled-back transaction)."""
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"days: give a number of days from 1 to {MAX_DAYS}.", field="days")
    subscription = None
    if change is not None:
        subscription = Subscription.objects.filter(pk=change.subscription_id, customer=customer).first()
        if subscription is None:
            raise InvalidInput("subscription: not one of this customer's subscriptions.", field="subscription")
        if not as_of <= change.on < as_of + dt.timedelta(days=days):
            raise InvalidInput("change_on: give a day inside the simulated days.", field="change_on")
        if change.quantity < 1:
            raise InvalidInput("quantity: give at least 1.", field="quantity")
    simulation = Simulation(customer_id=customer.pk, as_of=as_of, days=days, change=change)
    with transaction.atomic(), simulation_gateway_only():
        marks = _marks()
        last_invoice, last_email, last_event = marks["invoice"], marks["email"], marks["event"]
        email_days: dict[int, dt.date] = {}
        for offset in range(days):
            day = as_of + dt.timedelta(days=offset)
            if change is not None and subscription is not None and day == change.on:
                _apply_change(subscription, change)
            billing_run(as_of=day, customer_id=customer.pk)
            for invoice_id in Invoice.objects.filter(customer=customer, pk__gt=last_invoice).values_list(
                "pk", flat=True
            ):
                _settle_and_deliver(invoice_id, day)
                last_invoice = max(last_invoice, invoice_id)
            last_event = _receipts(customer, last_event)
            payment_attempts_retry_due(as_of=day, customer_id=customer.pk)
            last_event = _receipts(customer, last_event)
            send_reminders(as_of=day, customer_id=customer.pk)
            for email_id in OutboundEmail.objects.filter(customer=customer, pk__gt=last_email).values_list(
                "pk", flat=True
            ):
                email_days[email_id] = day
                last_email = max(last_email, email_id)
        _collect(simulation, customer, marks, email_days)
        transaction.set_rollback(True)
    return simulation


def _apply_change(subscription: Subscription, change: SeatChange) -> None:
    subscription.refresh_from_db()
    items = [ItemSpec(price=item.price, quantity=item.quantity) for item in subscription.items.filter(removed_on=None)]
    for index, spec in enumerate(items):
        if spec.price.pk == change.price_id:
            items[index] = ItemSpec(price=spec.price, quantity=change.quantity)
            break
    else:
        raise InvalidInput("price: not a price of this subscription.", field="price")
    subscription_change(subscription=subscription, items=items, as_of=change.on, reason="test clock")


def _settle_and_deliver(invoice_id: int, day: dt.date) -> None:
    """What the ``invoice.issued`` handlers do after commit, here and now: credit, the automatic charge (through
    the simulation gateway), the invoice e-mail (queued, so rendered, never sent)."""
    invoice = Invoice.objects.select_related("subscription").get(pk=invoice_id)
    if invoice.status == InvoiceStatus.DRAFT:
        return
    customer_credit_apply(invoice=invoice)
    invoice.refresh_from_db()
    subscription = invoice.subscription
    if (
        subscription is not None
        and subscription.collection_method == CollectionMethod.CHARGE_AUTOMATICALLY
        and not subscription.collection_paused
        and invoice.status in PAYABLE
        and invoice.amount_due > 0
    ):
        invoice_collect(invoice_id=invoice.pk, as_of=day)
    invoice_email_on_finalize(invoice_id=invoice.pk)


def _receipts(customer: Customer, last_event: int) -> int:
    """The receipts of the day's payments (charges that succeeded), as their deliver handler queues them."""
    for event in DomainEvent.objects.filter(pk__gt=last_event, type="payment.succeeded").order_by("pk"):
        last_event = event.pk
        if event.payload.get("customer_id") == customer.pk:
            payment_receipt_send(payment_id=event.payload["payment_id"])
    return last_event


def _collect(simulation: Simulation, customer: Customer, marks: dict[str, int], email_days: dict[int, dt.date]) -> None:
    for invoice in (
        Invoice.objects.filter(customer=customer, pk__gt=marks["invoice"]).prefetch_related("lines").order_by("pk")
    ):
        simulation.invoices.append(
            SimulatedInvoice(
                day=invoice.issue_date or simulation.as_of,
                number=invoice.number or "(draft held for review)",
                status=invoice.status,
                currency=invoice.currency,
                total=invoice.total,
                amount_due=invoice.amount_due,
                due_date=invoice.due_date,
                lines=[(line.description, line.total_amount) for line in invoice.lines.all()],
            )
        )
    for email in OutboundEmail.objects.filter(customer=customer, pk__gt=marks["email"]).order_by("pk"):
        simulation.emails.append(
            SimulatedEmail(
                day=email_days.get(email.pk, simulation.as_of),
                kind=email.get_kind_display(),
                to=", ".join(email.to_emails),
                subject=email.subject,
                body_text=email.body_text,
                body_html=email.body_html,
            )
        )
    for attempt in PaymentAttempt.objects.filter(customer=customer, pk__gt=marks["attempt"]).order_by("pk"):
        outcome = attempt.status if not attempt.decline_code else f"{attempt.status} ({attempt.decline_code})"
        simulation.charges.append(
            SimulatedCharge(attempt.attempted_on, attempt.currency, attempt.amount, outcome, attempt.attempt_number)
        )
    for action in (
        DunningAction.objects.filter(invoice__customer=customer, pk__gt=marks["dunning"])
        .select_related("invoice")
        .order_by("pk")
    ):
        simulation.reminders.append(
            SimulatedReminder(action.as_of, action.invoice.number, action.get_action_display(), action.status)
        )
