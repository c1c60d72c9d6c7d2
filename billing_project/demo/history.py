"""A year of billing history for the demo: earlier customers (``DEMO-H01`` …) whose subscriptions started 3 to
13 months ago, grew, shrank, paused, came back or left — billed period by period on the dates they fell due,
and paid by bank transfer within their terms (but for two slow payers). This gives the dashboard's revenue
chart, the ageing buckets and the MRR movements report a real past to show.

``seed_history`` plays the calendar forward up to yesterday, for every demo subscription: before each scripted
change it runs the billing for every date that fell due, so invoices, prorations and numbers come out in date
order as they would have. Steps older than ``QUIET_DAYS`` run with the clock on their day
(``billing_project.demo.clock``), and their invoices are not e-mailed, rendered or charged while replaying
(``seed_demo`` renders their PDFs at its end); the last ``QUIET_DAYS`` are replayed at today's time, e-mails
included. ``pay_history`` runs after the billing up to today: every transfer whose day has come
is in, so no invoice the story has paid is chased by today's reminders.

The slow payers agreed a payment plan: staff put their reminders on hold, so their overdue invoices stay open
in the ageing buckets instead of being caught up today, months late, with a burst of final notices and
write-offs.
Both are idempotent: nothing is replayed once the earlier customers exist, and each invoice is paid once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction

from billing_project.demo.calendar import bill_through
from billing_project.demo.clock import on_day
from core.dates import billing_date_of, billing_today
from customers.models import Customer, TaxStatus
from dunning.services import customer_dunning_settings_set
from invoicing.models import Invoice, InvoiceStatus
from payments.models import Payment
from payments.services import payment_record
from subscriptions.demo import _catalog
from subscriptions.models import Subscription
from subscriptions.services import (
    ItemSpec,
    subscription_cancel,
    subscription_change,
    subscription_create,
    subscription_pause,
    subscription_resume,
)

PREFIX = "DEMO-H"
SLOW_PAYERS = ("DEMO-H05", "DEMO-H17")  # their older invoices stay unpaid (the ageing chart's 31–90+ days)
QUIET_DAYS = 30  # invoices older than this are not e-mailed, rendered or charged while replaying

# name, country, currency, city, postal code, street
_CUSTOMERS = [
    ("Nordlicht Studio GmbH", "DE", "EUR", "Hamburg", "20095", "Mönckebergstraße 7"),
    ("Atelier Lumière SARL", "FR", "EUR", "Lyon", "69002", "Rue de la République 14"),
    ("Van Dijk Logistiek B.V.", "NL", "EUR", "Utrecht", "3511", "Oudegracht 120"),
    ("Alpenblick Reisen KG", "AT", "EUR", "Innsbruck", "6020", "Maria-Theresien-Straße 18"),
    ("Taller Sánchez S.L.", "ES", "EUR", "Valencia", "46002", "Calle de Colón 22"),
    ("Bottega Rossi S.r.l.", "IT", "EUR", "Bologna", "40121", "Via dell'Indipendenza 8"),
    ("Cliffside Analytics Ltd", "IE", "EUR", "Galway", "H91", "Shop Street 3"),
    ("Hafenkante Kaffee UG", "DE", "EUR", "Bremen", "28195", "Schlachte 12"),
    ("Maison Verte SAS", "FR", "EUR", "Nantes", "44000", "Rue Crébillon 9"),
    ("Polder Design Studio", "NL", "EUR", "Delft", "2611", "Markt 40"),
    ("Thistle & Rowan Ltd", "GB", "GBP", "Edinburgh", "EH1 1YZ", "Royal Mile 200"),
    ("Kite Hill Cycles", "US", "USD", "Portland", "97205", "SW Morrison St 310"),
    ("Bergwerk Software GmbH", "DE", "EUR", "Leipzig", "04109", "Grimmaische Straße 2"),
    ("Olivera Cerámica", "ES", "EUR", "Sevilla", "41004", "Calle Sierpes 30"),
    ("Fjordline Consulting", "IE", "EUR", "Cork", "T12", "Patrick Street 55"),
    ("Weinberg Vinothek", "AT", "EUR", "Krems", "3500", "Obere Landstraße 4"),
    ("Luna Park Events S.r.l.", "IT", "EUR", "Torino", "10121", "Via Roma 101"),
    ("Marlow Print Works", "GB", "GBP", "Bristol", "BS1 4DJ", "Corn Street 21"),
    ("Redwood Labs Inc.", "US", "USD", "Sacramento", "95814", "J Street 1020"),
    ("Zeeland Zeilmakerij", "NL", "EUR", "Middelburg", "4331", "Lange Delft 2"),
]


@dataclass
class _Story:
    """One earlier customer's subscription: starts ``months_ago`` months before this month (on ``day``) with
    ``seats`` (0 = the Starter plan), then the scripted changes, each (months after the start, what)."""

    months_ago: int
    day: int
    seats: int
    yearly: bool = False
    changes: list[tuple[int, str, int]] = field(default_factory=list)  # (month offset, action, seats)


_STORIES = [
    _Story(13, 1, 5, changes=[(4, "seats", 8), (9, "seats", 12)]),
    _Story(12, 15, 0, changes=[(5, "cancel", 0)]),
    _Story(12, 1, 3, changes=[(6, "seats", 2)]),
    _Story(11, 15, 10, yearly=True),
    _Story(11, 1, 4, changes=[(3, "pause", 0), (6, "resume", 0)]),
    _Story(10, 15, 0),
    _Story(10, 1, 6, changes=[(2, "seats", 9), (7, "cancel", 0)]),
    _Story(9, 1, 2, changes=[(4, "seats", 4)]),
    _Story(9, 15, 0, changes=[(3, "cancel", 0)]),
    _Story(8, 1, 12, changes=[(5, "seats", 7)]),
    _Story(8, 15, 3, changes=[(2, "yearly", 3)]),  # monthly → yearly: the cycle restarts on the change day
    _Story(7, 1, 0),
    _Story(7, 15, 5, changes=[(2, "seats", 6), (4, "seats", 10)]),
    _Story(6, 1, 0, changes=[(4, "cancel", 0)]),
    _Story(6, 15, 2, changes=[(3, "seats", 5)]),
    _Story(5, 1, 8),
    _Story(5, 15, 4, changes=[(2, "seats", 3)]),
    _Story(4, 1, 0),
    _Story(3, 15, 6, yearly=True),
    _Story(3, 1, 2, changes=[(1, "seats", 4)]),
]


def _add_months(first_of_month: dt.date, months: int) -> dt.date:
    index = first_of_month.year * 12 + first_of_month.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def _customer(index: int, row: tuple[str, str, str, str, str, str]) -> Customer:
    name, country, currency, city, postal, street = row
    customer = Customer(
        external_id=f"{PREFIX}{index:02d}",
        name=name,
        legal_name=name,
        email=f"accounts+h{index:02d}@demo.example",
        address_line1=street,
        postal_code=postal,
        city=city,
        country=country,
        currency=currency,
        language="en",
        tax_status=TaxStatus.EXEMPT if country == "US" else TaxStatus.TAXABLE,
        payment_terms_days=14,
    )
    customer.full_clean()
    customer.save()
    return customer


def _items(catalog: dict, seats: int, yearly: bool) -> list[ItemSpec]:
    if seats == 0:
        return [ItemSpec(catalog["starter"], 1)]
    return [ItemSpec(catalog["seats_yearly" if yearly else "seats"], seats)]


def seed_history() -> int:
    """Create the earlier customers and replay their year; returns how many invoices the replay created (0 once
    they exist)."""
    if Customer.objects.filter(external_id__startswith=PREFIX).exists():
        return 0
    today = billing_today()
    this_month = today.replace(day=1)
    events: list[tuple[dt.date, int, Callable[[], object]]] = []
    quiet_before = today - dt.timedelta(days=QUIET_DAYS)
    with transaction.atomic():
        for index, (row, story) in enumerate(zip(_CUSTOMERS, _STORIES, strict=True), start=1):
            customer = _customer(index, row)
            if customer.external_id in SLOW_PAYERS:
                customer_dunning_settings_set(customer=customer, hold_reminders=True)
            catalog = _catalog(customer.currency)
            start = _add_months(this_month, -story.months_ago).replace(day=story.day)
            events.append((start, len(events), _starter(customer, catalog, story, start)))
            for offset, action, seats in story.changes:
                when = _add_months(start.replace(day=1), offset).replace(day=start.day) + dt.timedelta(days=9)
                if when < today:
                    events.append((when, len(events), _change(customer, catalog, story, action, seats, when)))
        created = 0
        for when, _order, apply in sorted(events, key=lambda event: (event[0], event[1])):
            created += bill_through(when, quiet_before=quiet_before)
            with on_day(when) if when < quiet_before else nullcontext():
                apply()
        return created + bill_through(today - dt.timedelta(days=1), quiet_before=quiet_before)


def _starter(customer: Customer, catalog: dict, story: _Story, start: dt.date) -> Callable[[], object]:
    def apply() -> Subscription:
        return subscription_create(
            customer=customer,
            items=_items(catalog, story.seats, story.yearly),
            start_date=start,
            trial_days=0,
            metadata={"demo_key": customer.external_id},
        )

    return apply


def _change(
    customer: Customer, catalog: dict, story: _Story, action: str, seats: int, when: dt.date
) -> Callable[[], object]:
    def apply() -> Subscription:
        subscription = Subscription.objects.get(customer=customer)
        if action == "seats":
            return subscription_change(
                subscription=subscription, items=_items(catalog, seats, story.yearly), as_of=when, reason="demo"
            ).subscription
        if action == "yearly":
            return subscription_change(
                subscription=subscription,
                items=_items(catalog, seats, yearly=True),
                as_of=when,
                reason="demo: moved to the yearly plan",
            ).subscription
        if action == "pause":
            return subscription_pause(subscription=subscription, as_of=when, reason="demo: seasonal break")
        if action == "resume":
            return subscription_resume(subscription=subscription, as_of=when, reason="demo: back after the break")
        return subscription_cancel(subscription=subscription, as_of=when, at_period_end=True, reason="demo: left")

    return apply


def pay_history() -> int:
    """Bank transfers for the earlier customers' invoices, each received within the terms (3 to 11 days after
    the issue date) — all whose day has come by today; the slow payers' invoices of the last five months stay
    open."""
    today = billing_today()
    invoices = (
        Invoice.objects.filter(customer__external_id__startswith=PREFIX, status=InvoiceStatus.OPEN)
        .exclude(customer__external_id__in=SLOW_PAYERS)
        .select_related("customer")
        .order_by("issue_date", "pk")
    )
    created = 0
    for invoice in invoices:
        received_on = _issued(invoice) + dt.timedelta(days=3 + invoice.pk % 9)
        reference = f"Demo transfer {invoice.number}"
        if received_on > today or Payment.objects.filter(reference=reference).exists():
            continue
        _book_transfer(invoice, received_on=received_on, reference=reference)
        created += 1
    return created + _pay_slow_payers_recent(today)


def _book_transfer(invoice: Invoice, *, received_on: dt.date, reference: str) -> None:
    """The customer's bank transfer of what the invoice still owes, booked on the day it would have been."""
    with on_day(_booked_on(invoice, received_on), dt.time(11)):
        payment_record(
            customer=invoice.customer,
            amount=invoice.amount_due,
            currency=invoice.currency,
            received_on=received_on,
            reference=reference,
            invoice=invoice,
        )


def _booked_on(invoice: Invoice, received_on: dt.date) -> dt.date:
    """The day to book a transfer on: the day it was received, unless the replay finalized the invoice later
    than that (the last ``QUIET_DAYS`` are billed at today's time, with their e-mails) — a record never goes
    back before the invoice it settles."""
    assert invoice.finalized_at is not None  # only open invoices are paid here
    return max(received_on, billing_date_of(invoice.finalized_at))


def _pay_slow_payers_recent(today: dt.date) -> int:
    """The slow payers did pay what is older than five months, late; the rest stays overdue."""
    created = 0
    cutoff = today - dt.timedelta(days=150)
    for invoice in Invoice.objects.filter(
        customer__external_id__in=SLOW_PAYERS, status=InvoiceStatus.OPEN, issue_date__lt=cutoff
    ).select_related("customer"):
        reference = f"Demo late transfer {invoice.number}"
        if Payment.objects.filter(reference=reference).exists():
            continue
        received_on = _issued(invoice) + dt.timedelta(days=45)
        _book_transfer(invoice, received_on=received_on, reference=reference)
        created += 1
    return created


def _issued(invoice: Invoice) -> dt.date:
    if invoice.issue_date is None:  # only drafts have none, and only open invoices are paid here
        raise ValueError(f"invoice {invoice.pk} has no issue date")
    return invoice.issue_date


def history_counts() -> dict[str, Decimal | int]:
    """For tests and the banner: earlier customers, their invoices and how many are still open."""
    invoices = Invoice.objects.filter(customer__external_id__startswith=PREFIX).exclude(status=InvoiceStatus.DRAFT)
    return {
        "customers": Customer.objects.filter(external_id__startswith=PREFIX).count(),
        "invoices": invoices.count(),
        "open": invoices.filter(status=InvoiceStatus.OPEN).count(),
    }
