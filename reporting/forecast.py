"""The forecast: what the billing run, the payment retries and the reminders will do in the next N days, per day and
currency, computed with their own code and written nowhere (docs/decisions/forecast.md).

- Invoices: ``subscriptions.charges.plans_for_chunk`` (the run's calendar and pricing, ``lock=False``) walks a
  subscription to the horizon's last day, and ``invoicing.billing_run.invoice_build_for_period`` taxes and totals
  each period exactly as the run does — once per pricing signature (``reporting.forecast_billing``: subscriptions
  that make the run compute the same invoices share one computation); drafts held for review are counted apart. A period
  due before the as-of date (a missed run) is issued on the as-of date, as the first run would. The due date is
  ``invoicing.services.due_date_for``, the one rule of ``invoices_issue``.
- Credit: the customer's balance per currency is applied to the day's invoices as the ``invoice.issued`` handler
  does (``PAYMENTS_APPLY_CREDIT_ON_FINALIZE``).
- Charges: an automatically collected invoice with an amount due after credit is charged on its issue day; a
  soft-declined attempt is retried on its retry date; an open automatic invoice never charged is charged on the
  first day (the retry job's missed-charge sweep). The forecast assumes every charge succeeds: it cannot know.
- Reminders and late fees: ``dunning.services.plan_steps`` day by day for every open invoice and every forecast
  invoice sent for payment, assuming it stays unpaid (an automatic one is paid by its charge).
- Cash in: automatic charges on their day; invoices sent for payment on their due date (those overdue today are
  not expected on any given day and are left out).

What it cannot know is named on the page: new sign-ups, usage not reported yet, plan changes and cancellations not
scheduled yet, payments customers make, and whether a charge succeeds. Paused subscriptions whose pause ends in
the horizon and dunning steps that pause or cancel a subscription are not followed further either.
"""

from __future__ import annotations

import datetime as dt
import gc
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Sum
from django.utils import timezone

from core.dates import billing_today
from core.errors import InvalidInput
from core.money import round_amount
from dunning.models import CustomerDunningSettings, DunningAction, DunningActionKind, DunningActionStatus, DunningStep
from dunning.services import APPLY, SEND, DoneStep, dunning_policies_load, dunning_policy_default, late_fee_amount
from dunning.services import plan_steps as dunning_plan_steps
from invoicing.models import Invoice, InvoiceStatus
from invoicing.services import due_date_for
from payments.models import AttemptStatus, CreditEntryKind, CreditLedgerEntry, Payment, PaymentAttempt, PaymentStatus
from reporting.forecast_billing import PeriodResult, group_subscriptions, member_results
from subscriptions.charges import PriceCache
from subscriptions.models import BillingReason, CollectionMethod, PauseMode, Subscription, SubscriptionStatus

HORIZONS = (7, 30, 90)
MAX_DAYS = 366
ZERO = Decimal(0)
CACHE_SECONDS = 15 * 60
CHUNK = 2_000

# What a forecast cannot know: shown beside every forecast and every comparison.
UNKNOWABLE = (
    "new sign-ups and subscriptions created after the forecast",
    "usage not reported yet (metered prices bill only the usage recorded so far)",
    "plan changes, cancellations and discounts not scheduled yet",
    "payments customers make themselves (invoices sent for payment are assumed paid on their due date for cash "
    "in, and unpaid for reminders)",
    "whether an automatic charge succeeds (every charge is assumed to succeed)",
    "pauses ending in the horizon, and dunning steps that suspend or cancel a subscription",
)

# Invoice kinds (the drill-down's figures).
RENEWAL = "renewal"
NEW = "new"
TRIAL_CONVERSION = "trial_conversion"
FINAL = "final"
PLAN_CHANGE = "plan_change"
INVOICE_KINDS = (RENEWAL, NEW, TRIAL_CONVERSION, PLAN_CHANGE, FINAL)
STOPPING = frozenset({DunningActionKind.SUBSCRIPTION_PAUSE, DunningActionKind.SUBSCRIPTION_CANCEL})
FIGURES = ("invoices", "drafts", "credit", "charges", "reminders", "late_fees", "cash_in", "cancellations")


class Entry(NamedTuple):
    """One thing behind a figure: who, which subscription or invoice, how much (in the row's currency). A named
    tuple: a 90-day forecast of 100,000 subscriptions holds about a million."""

    day: dt.date
    currency: str
    figure: str  # one of FIGURES
    customer_id: int
    amount: Decimal = ZERO
    subscription_id: int | None = None
    invoice_id: int | None = None  # an existing invoice (reminders, retries, cash in of open invoices)
    kind: str = ""  # the invoice's kind (INVOICE_KINDS), the charge's (first / retry), the reminder's template
    net: Decimal = ZERO  # invoices: the total without tax
    tax: Decimal = ZERO


@dataclass
class DayRow:
    day: dt.date
    currency: str
    invoices: int = 0
    net: Decimal = ZERO
    tax: Decimal = ZERO
    total: Decimal = ZERO
    renewals: int = 0
    new: int = 0
    trial_conversions: int = 0
    plan_changes: int = 0
    final_invoices: int = 0
    cancellations: int = 0
    drafts: int = 0
    drafts_total: Decimal = ZERO
    credit: Decimal = ZERO
    charges: int = 0
    charges_amount: Decimal = ZERO
    reminders: int = 0
    late_fees: int = 0
    late_fees_amount: Decimal = ZERO
    cash_in: Decimal = ZERO

    def as_dict(self) -> dict[str, Any]:
        """Amounts as strings in the currency's minor unit ("571.20", JPY "1357")."""
        values: dict[str, Any] = {"date": self.day.isoformat(), "currency": self.currency}
        for name, value in vars(self).items():
            if name in ("day", "currency"):
                continue
            values[name] = str(round_amount(value, self.currency)) if isinstance(value, Decimal) else value
        return values


@dataclass
class Forecast:
    as_of: dt.date
    days: int
    computed_at: dt.datetime
    rows: list[DayRow]
    entries: list[Entry] = field(default_factory=list)
    subscriptions: int = 0

    @property
    def last_day(self) -> dt.date:
        return self.as_of + dt.timedelta(days=self.days - 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "horizon_days": self.days,
            "computed_at": self.computed_at.isoformat(),
            "unknown": list(UNKNOWABLE),
            "days": [row.as_dict() for row in self.rows],
        }

    def totals(self) -> dict[str, DayRow]:
        """Per currency, the horizon's sums (``day`` is the as-of date)."""
        sums: dict[str, DayRow] = {}
        for row in self.rows:
            total = sums.setdefault(row.currency, DayRow(self.as_of, row.currency))
            for name, value in vars(row).items():
                if name not in ("day", "currency"):
                    setattr(total, name, getattr(total, name) + value)
        return dict(sorted(sums.items()))

    def entries_for(self, *, day: dt.date | None, currency: str, figure: str) -> list[Entry]:
        return [
            entry
            for entry in self.entries
            if entry.currency == currency and entry.figure == figure and (day is None or entry.day == day)
        ]


class ForecastError(InvalidInput):
    pass


def forecast_check(*, days: int, as_of: dt.date) -> None:
    if not 1 <= days <= MAX_DAYS:
        raise ForecastError(f"days: give a number of days from 1 to {MAX_DAYS}.", field="days")


# --- the forecast ---------------------------------------------------------------------------------------


@dataclass
class _Chased:
    """An invoice the reminders will chase (open today, or issued by the forecast and sent for payment)."""

    invoice: Invoice | _Issued
    customer_id: int
    subscription_id: int | None
    due_date: dt.date
    done: list[DoneStep]
    paid_on: dt.date | None = None  # the day an automatic charge (assumed to succeed) pays it


def forecast_compute(*, days: int, as_of: dt.date | None = None, grouped: bool = True) -> Forecast:
    """The forecast for ``[as_of, as_of + days)``; reads only (no row, no number, no lock).

    ``grouped=False`` prices every subscription on its own (the run's code once per subscription, as before the
    pricing signatures): the same answer, slower; the bench and the signature tests compare the two."""
    as_of = as_of or billing_today()
    forecast_check(days=days, as_of=as_of)
    # A 90-day forecast of 100,000 subscriptions allocates millions of short-lived tuples and holds about a million
    # entries: the cyclic collector would walk them hundreds of times for nothing (they form no cycles).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _forecast(days=days, as_of=as_of, grouped=grouped)
    finally:
        if enabled:
            gc.enable()


def _forecast(*, days: int, as_of: dt.date, grouped: bool) -> Forecast:
    last_day = as_of + dt.timedelta(days=days - 1)
    planned: list[Entry] = []  # drafts and cancellations
    issued_all = _issued_invoices(as_of=as_of, last_day=last_day, entries=planned, grouped=grouped)
    subscriptions = len({invoice.subscription_id for invoice in issued_all})
    open_entries: list[Entry] = []
    open_chased: list[_Chased] = []
    _open_invoices(as_of=as_of, last_day=last_day, entries=open_entries, chased=open_chased)
    # A dunning step that suspends or cancels a subscription on day P stops its invoices after P; the invoices
    # left then have reminders of their own, which may stop another: repeat until nothing more stops.
    stops: dict[int, dt.date] = {}
    schedules: dict[tuple[Any, ...], _Schedule] = {}
    balances = _balances() if settings.PAYMENTS_APPLY_CREDIT_ON_FINALIZE and issued_all else {}
    paused = set(Subscription.objects.filter(pause_mode=PauseMode.COLLECTION).values_list("pk", flat=True))
    issued_all.sort(key=lambda invoice: (invoice.issue_date, invoice.subscription_id))
    # The rounds find the stops only (no entry is made); the last pass, with the final stops, makes the entries.
    for _round in range(5):
        issued = _not_stopped(issued_all, stops)
        chased: list[_Chased] = []
        _settle(issued, balances=dict(balances), paused=paused, entries=None, chased=chased)
        found = _reminders([*open_chased, *chased], as_of=as_of, last_day=last_day, entries=None, schedules=schedules)
        if found == stops:
            break
        stops = found
    issued = _not_stopped(issued_all, stops)
    settled: list[Entry] = []
    chased = []
    _settle(issued, balances=dict(balances), paused=paused, entries=settled, chased=chased)
    reminders: list[Entry] = []
    _reminders([*open_chased, *chased], as_of=as_of, last_day=last_day, entries=reminders, schedules=schedules)
    kept = [entry for entry in planned if not _stopped(entry.subscription_id, entry.day, stops)]
    # Reminders fall inside the horizon by construction; cash in by a due date may fall after it.
    entries = [entry for entry in (*kept, *open_entries, *settled) if as_of <= entry.day <= last_day]
    entries.extend(reminders)
    return Forecast(
        as_of=as_of,
        days=days,
        computed_at=timezone.now(),
        rows=_rows(entries),
        entries=entries,
        subscriptions=subscriptions,
    )


def _not_stopped(issued: list[_Issued], stops: dict[int, dt.date]) -> list[_Issued]:
    if not stops:
        return list(issued)
    get = stops.get
    return [
        invoice for invoice in issued if (stop := get(invoice.subscription_id)) is None or invoice.issue_date <= stop
    ]


def _stopped(subscription_id: int | None, day: dt.date | None, stops: dict[int, dt.date]) -> bool:
    stop = stops.get(subscription_id or 0)
    return stop is not None and day is not None and day > stop


@dataclass(slots=True)
class _Issued:
    """A forecast invoice (not an ``Invoice``: hundreds of thousands of them) with what settling and chasing it
    read; ``pk`` is None, as for an invoice not written."""

    issue_date: dt.date
    due_date: dt.date
    customer_id: int
    subscription_id: int
    currency: str
    total: Decimal
    tax_total: Decimal
    kind: str
    collection_method: str
    amount_due: Decimal = ZERO
    pk: None = None


def _issued_invoices(*, as_of: dt.date, last_day: dt.date, entries: list[Entry], grouped: bool) -> list[_Issued]:
    """The run's invoices of the horizon, priced by the run's code once per pricing signature
    (``reporting.forecast_billing``; held drafts become ``drafts`` entries, cancellations ``cancellations``)."""
    prices = PriceCache()
    groups = group_subscriptions(last_day=last_day, prices=prices, grouped=grouped)
    due_dates: dict[tuple[dt.date, int | None, int | None], dt.date] = {}  # due_date_for, once per tuple
    issued: list[_Issued] = []
    append = issued.append
    kinds_of: dict[int, list[str]] = {}  # per plan result (shared by its members): its invoices' kinds
    for member, result in member_results(groups, last_day=last_day, prices=prices):
        subscription_id, customer_id = member.subscription_id, member.customer_id
        kinds = kinds_of.get(id(result))
        if kinds is None:
            kinds = kinds_of[id(result)] = [
                _kind(period, result.old_status, position) for position, period in enumerate(result.periods)
            ]
        if result.ended_on is not None:
            currency = result.periods[0].currency if result.periods else member.currency
            entries.append(
                Entry(
                    max(result.ended_on, as_of), currency, "cancellations", customer_id, subscription_id=subscription_id
                )
            )
        for position, period in enumerate(result.periods):
            day = max(period.billing_date, as_of)
            if period.memo:
                entries.append(
                    Entry(
                        day,
                        period.currency,
                        "drafts",
                        member.payer_id,
                        period.total,
                        subscription_id,
                        kind=period.memo[:120],
                    )
                )
                continue
            due_key = (day, member.days_until_due, member.customer_terms_days)
            due_date = due_dates.get(due_key)
            if due_date is None:
                due_date = due_dates[due_key] = due_date_for(
                    issue_date=day,
                    subscription_days_until_due=member.days_until_due,
                    customer_payment_terms_days=member.customer_terms_days,
                )
            append(
                _Issued(
                    day,
                    due_date,
                    member.payer_id,  # the parent of a child billed to it (docs/decisions/parent-accounts.md)
                    subscription_id,
                    period.currency,
                    period.total,
                    period.tax_total,
                    kinds[position],
                    member.collection_method,
                )
            )
    return issued


def _kind(period: PeriodResult, old_status: str, position: int) -> str:
    if period.final:
        return FINAL
    if old_status == SubscriptionStatus.TRIALING and position == 0:
        return TRIAL_CONVERSION
    if period.billing_reason == BillingReason.SUBSCRIPTION_CHANGE or period.proration:
        return PLAN_CHANGE
    if period.billing_reason == BillingReason.SUBSCRIPTION_CREATE:
        return NEW
    return RENEWAL


def _balances() -> dict[tuple[int, str], Decimal]:
    """Every customer's positive credit balance per currency, grouped in SQL (cheaper than an IN list)."""
    return {
        (customer_id, currency): total
        for customer_id, currency, total in CreditLedgerEntry.objects.values_list("customer_id", "currency")
        .annotate(total=Sum("amount"))
        .filter(total__gt=0)
        .order_by()
    }


def _settle(
    issued: list[_Issued],
    *,
    balances: dict[tuple[int, str], Decimal],
    paused: set[int],
    entries: list[Entry] | None,
    chased: list[_Chased],
) -> None:
    """Credit, then the automatic charge, of every forecast invoice in issue order (the settle phase). With
    ``entries=None`` only the amounts due and the invoices chased are worked out."""
    append = entries.append if entries is not None else None
    automatic_method = CollectionMethod.CHARGE_AUTOMATICALLY
    for invoice in issued:
        day = invoice.issue_date
        currency = invoice.currency
        customer_id, subscription_id = invoice.customer_id, invoice.subscription_id
        total = invoice.total
        if append is not None:
            append(
                Entry(
                    day,
                    currency,
                    "invoices",
                    customer_id,
                    total,
                    subscription_id,
                    kind=invoice.kind,
                    net=total - invoice.tax_total,
                    tax=invoice.tax_total,
                )
            )
        due = total
        if balances:
            balance = balances.get((customer_id, currency), ZERO)
            credit = min(balance, due) if due > 0 else ZERO
            if credit > 0:
                balances[customer_id, currency] = balance - credit
                due -= credit
                if append is not None:
                    append(Entry(day, currency, "credit", customer_id, credit, subscription_id))
        invoice.amount_due = due
        if due <= 0:
            continue
        automatic = invoice.collection_method == automatic_method
        if automatic and subscription_id not in paused:
            if append is not None:
                append(Entry(day, currency, "charges", customer_id, due, subscription_id, kind="first"))
                append(Entry(day, currency, "cash_in", customer_id, due, subscription_id))
            continue
        if append is not None:
            append(Entry(invoice.due_date, currency, "cash_in", customer_id, due, subscription_id))
        if not automatic:
            chased.append(_Chased(invoice, customer_id, subscription_id, invoice.due_date, []))


def _open_invoices(*, as_of: dt.date, last_day: dt.date, entries: list[Entry], chased: list[_Chased]) -> None:
    """Open invoices today: retries and missed first charges, cash in by due date, and the reminders' subjects."""
    open_invoices = list(
        Invoice.objects.filter(status=InvoiceStatus.OPEN, amount_due__gt=0)
        .select_related("subscription")
        .annotate(
            attempted=Exists(PaymentAttempt.objects.filter(invoice_id=OuterRef("pk"))),
            processing=Exists(
                PaymentAttempt.objects.filter(invoice_id=OuterRef("pk"), status=AttemptStatus.PROCESSING)
            ),
        )
        .only(
            "pk",
            "customer_id",
            "subscription_id",
            "currency",
            "amount_due",
            "due_date",
            "hold_reminders",
            "status",
            "number",
            "subscription__collection_method",
            "subscription__pause_mode",
        )
        .order_by("pk")
    )
    retries: dict[int, dt.date] = {}
    for invoice_id, retry_on in (
        PaymentAttempt.objects.filter(
            status=AttemptStatus.FAILED, next_retry_on__isnull=False, invoice__status=InvoiceStatus.OPEN
        )
        .order_by("next_retry_on")
        .values_list("invoice_id", "next_retry_on")
    ):
        if retry_on is not None:
            retries.setdefault(invoice_id, retry_on)
    done: dict[int, list[DoneStep]] = defaultdict(list)
    for invoice_id, step_id, offset, action, status in DunningAction.objects.filter(
        invoice__status=InvoiceStatus.OPEN, invoice__amount_due__gt=0, step__isnull=False
    ).values_list("invoice_id", "step_id", "step__offset_days", "action", "status"):
        done[invoice_id].append(DoneStep(step_id, offset, action, status))
    for invoice in open_invoices:
        subscription = invoice.subscription
        paused = subscription is not None and subscription.pause_mode == PauseMode.COLLECTION
        automatic = subscription is not None and subscription.collection_method == CollectionMethod.CHARGE_AUTOMATICALLY
        currency = invoice.currency
        paid_on: dt.date | None = None
        charge_on: dt.date | None = None
        kind = ""
        if invoice.pk in retries and not paused:
            charge_on, kind = max(retries[invoice.pk], as_of), "retry"
        elif automatic and not paused and not invoice.attempted:  # type: ignore[attr-defined]
            charge_on, kind = as_of, "missed first charge"
        if charge_on is not None and not invoice.processing:  # type: ignore[attr-defined]
            entries.append(
                Entry(
                    charge_on,
                    currency,
                    "charges",
                    invoice.customer_id,
                    invoice.amount_due,
                    invoice.subscription_id,
                    invoice.pk,
                    kind,
                )
            )
            entries.append(
                Entry(
                    charge_on,
                    currency,
                    "cash_in",
                    invoice.customer_id,
                    invoice.amount_due,
                    invoice.subscription_id,
                    invoice.pk,
                )
            )
            paid_on = charge_on
        elif invoice.due_date is not None and invoice.due_date >= as_of:
            entries.append(
                Entry(
                    invoice.due_date,
                    currency,
                    "cash_in",
                    invoice.customer_id,
                    invoice.amount_due,
                    invoice.subscription_id,
                    invoice.pk,
                )
            )
        if invoice.due_date is not None and not invoice.hold_reminders and not paused:
            chased.append(
                _Chased(
                    invoice, invoice.customer_id, invoice.subscription_id, invoice.due_date, done[invoice.pk], paid_on
                )
            )


def _reminders(
    chased: list[_Chased],
    *,
    as_of: dt.date,
    last_day: dt.date,
    entries: list[Entry] | None,
    schedules: dict[tuple[Any, ...], _Schedule] | None = None,
) -> dict[int, dt.date]:
    """The dunning run's own plan (``plan_steps``), day by day on the days a step falls due, for each invoice.
    Returns, per subscription, the first day a step suspends or cancels it (billing stops after that day);
    ``entries=None`` finds only that.

    The plan of an invoice with no step done yet depends only on its policy, due date, first day chased and the
    day it is paid: computed once per such tuple (``schedules``, kept across the forecast's rounds)."""
    stops: dict[int, dt.date] = {}
    if schedules is None:
        schedules = {}
    policies = dunning_policies_load()
    default = dunning_policy_default(policies.values())
    default_pk = default.pk if default is not None else None
    # Every customer's own settings (a small table): cheaper than an IN list of every chased customer.
    settings_by_customer = {row.customer_id: row for row in CustomerDunningSettings.objects.all()}
    for item in chased:
        custom = settings_by_customer.get(item.customer_id) if settings_by_customer else None
        if custom is None:
            policy = default
        elif custom.hold_reminders:
            continue
        else:
            policy = policies.get(custom.policy_id) if custom.policy_id else default
        if policy is None:
            continue
        invoice = item.invoice
        # Chased from the day it is issued (a forecast invoice) or today (an open one), by the daily run.
        start = max(as_of, invoice.issue_date or as_of) if invoice.pk is None else as_of
        if item.done:
            schedule = _Schedule(_schedule(policy, item.due_date, start, item.paid_on, last_day, item.done))
        else:
            key = (default_pk if policy is default else policy.pk, item.due_date, start, item.paid_on)
            schedule = schedules.get(key)  # type: ignore[assignment]
            if schedule is None:
                schedule = schedules[key] = _Schedule(
                    _schedule(policy, item.due_date, start, item.paid_on, last_day, [])
                )
        currency, customer_id, subscription_id, pk = (
            invoice.currency,
            item.customer_id,
            item.subscription_id,
            invoice.pk,
        )
        amount_due = invoice.amount_due
        if entries is not None:
            entries.extend(
                [
                    Entry(day, currency, "reminders", customer_id, amount_due, subscription_id, pk, template)
                    for day, template in schedule.sends
                ]
            )
        for day, step in schedule.applied:
            if step.action == DunningActionKind.LATE_FEE and entries is not None:
                fee = late_fee_amount(step=step, invoice=invoice)  # type: ignore[arg-type]
                if fee is not None and fee > 0:
                    entries.append(Entry(day, currency, "late_fees", customer_id, fee, subscription_id, pk))
            elif step.action in STOPPING and subscription_id is not None:
                stops[subscription_id] = min(day, stops.get(subscription_id, day))
    return stops


class _Schedule:
    """One invoice's dunning plan split for emitting: the e-mails (day, template), the applied steps (day, step)."""

    __slots__ = ("applied", "sends")

    def __init__(self, planned: list[tuple[dt.date, DunningStep, str]]) -> None:
        self.sends = [(day, step.template) for day, step, decision in planned if decision == SEND]
        self.applied = [(day, step) for day, step, decision in planned if decision == APPLY]


def _schedule(
    policy: Any, due_date: dt.date, start: dt.date, paid_on: dt.date | None, last_day: dt.date, done: list[DoneStep]
) -> list[tuple[dt.date, DunningStep, str]]:
    """The steps the daily dunning run will send or apply for one invoice, in order: (day, step, decision)."""
    steps: list[DunningStep] = policy.ordered_steps
    done = list(done)
    out: list[tuple[dt.date, DunningStep, str]] = []
    days = sorted({max(start, due_date + dt.timedelta(days=step.offset_days)) for step in steps})
    for day in days:
        if day > last_day or (paid_on is not None and day >= paid_on):
            break
        stop = False
        for planned in dunning_plan_steps(due_date=due_date, steps=steps, done=done, as_of=day):
            step = planned.step
            status = "done" if planned.decision in (SEND, APPLY) else "superseded"
            done.append(DoneStep(step.pk, step.offset_days, step.action, status))
            if planned.decision in (SEND, APPLY):
                out.append((day, step, planned.decision))
            if planned.decision == APPLY and step.action == DunningActionKind.INVOICE_UNCOLLECTIBLE:
                stop = True  # no longer open: no later step
        if stop:
            break
    return out


def _rows(entries: list[Entry]) -> list[DayRow]:
    rows: dict[tuple[dt.date, str], DayRow] = {}
    for entry in entries:
        row = rows.get((entry.day, entry.currency))
        if row is None:
            row = rows[entry.day, entry.currency] = DayRow(entry.day, entry.currency)
        figure = entry.figure
        if figure == "reminders":  # the most numerous first
            row.reminders += 1
        elif figure == "invoices":
            row.invoices += 1
            row.total += entry.amount
            row.net += entry.net
            row.tax += entry.tax
            if entry.kind == RENEWAL:
                row.renewals += 1
            elif entry.kind == NEW:
                row.new += 1
            elif entry.kind == TRIAL_CONVERSION:
                row.trial_conversions += 1
            elif entry.kind == PLAN_CHANGE:
                row.plan_changes += 1
            elif entry.kind == FINAL:
                row.final_invoices += 1
        elif figure == "drafts":
            row.drafts += 1
            row.drafts_total += entry.amount
        elif figure == "credit":
            row.credit += entry.amount
        elif figure == "charges":
            row.charges += 1
            row.charges_amount += entry.amount
        elif figure == "late_fees":
            row.late_fees += 1
            row.late_fees_amount += entry.amount
        elif figure == "cash_in":
            row.cash_in += entry.amount
        elif figure == "cancellations":
            row.cancellations += 1
    return [rows[key] for key in sorted(rows)]


# --- cached, stored, compared ---------------------------------------------------------------------------


def _cache_key(days: int, as_of: dt.date) -> str:
    return f"reporting:forecast:{as_of.isoformat()}:{days}"


def forecast_cached(*, days: int, as_of: dt.date | None = None, refresh: bool = False) -> Forecast:
    """The forecast per (horizon, as-of date), from the cache (Redis) for ``CACHE_SECONDS``; its ``computed_at``
    says when it was computed."""
    as_of = as_of or billing_today()
    forecast_check(days=days, as_of=as_of)
    key = _cache_key(days, as_of)
    if not refresh:
        cached = cache.get(key)
        if isinstance(cached, Forecast):
            return cached
    forecast = forecast_compute(days=days, as_of=as_of)
    cache.set(key, forecast, CACHE_SECONDS)
    return forecast


def forecast_store(*, as_of: dt.date | None = None, days: int = 90) -> int:
    """The "Forecast snapshot" job: store the summary of today's forecast (replacing one made today already).
    Returns the number of day rows stored."""
    from reporting.models import ForecastDay

    forecast = forecast_cached(days=days, as_of=as_of, refresh=True)
    rows = [
        ForecastDay(
            made_on=forecast.as_of,
            day=row.day,
            currency=row.currency,
            invoices=row.invoices,
            net=row.net,
            tax=row.tax,
            total=row.total,
            credit=row.credit,
            charges=row.charges,
            reminders=row.reminders,
            late_fees=row.late_fees,
            cash_in=row.cash_in,
            computed_at=forecast.computed_at,
        )
        for row in forecast.rows
    ]
    with transaction.atomic():
        ForecastDay.objects.filter(made_on=forecast.as_of).delete()
        ForecastDay.objects.bulk_create(rows)
    return len(rows)


def _actual_row() -> dict[str, Any]:
    counts = dict.fromkeys(("invoices", "charges", "reminders", "late_fees"), 0)
    return counts | dict.fromkeys(("total", "net", "tax", "credit", "cash_in"), ZERO)


def forecast_actuals(*, start: dt.date, end: dt.date) -> dict[tuple[dt.date, str], dict[str, Any]]:
    """What happened on each day of ``[start, end]`` per currency, as the forecast counts it: invoices issued
    (late-fee invoices apart, as ``late_fees``), credit applied, charges attempted, reminder e-mails sent, late
    fees, payments received (cash in)."""
    out: dict[tuple[dt.date, str], dict[str, Any]] = defaultdict(_actual_row)
    late_fee = Exists(DunningAction.objects.filter(late_fee_invoice_id=OuterRef("pk")))
    for day, currency, count, total, tax in (
        Invoice.objects.filter(issue_date__range=(start, end))
        .exclude(status=InvoiceStatus.DRAFT)
        .exclude(late_fee)
        .values_list("issue_date", "currency")
        .annotate(n=Count("pk"), total=Sum("total"), tax=Sum("tax_total"))
        .order_by()
    ):
        row = out[day, currency]
        row["invoices"], row["total"], row["tax"], row["net"] = count, total, tax, total - tax
    for day, currency, amount in (
        CreditLedgerEntry.objects.filter(
            kind=CreditEntryKind.APPLIED_TO_INVOICE, invoice__issue_date__range=(start, end)
        )
        .values_list("invoice__issue_date", "currency")
        .annotate(amount=Sum("amount"))
        .order_by()
    ):
        out[day, currency]["credit"] = -amount
    for day, currency, count in (
        PaymentAttempt.objects.filter(attempted_on__range=(start, end))
        .values_list("attempted_on", "currency")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        out[day, currency]["charges"] = count
    for day, currency, count in (
        DunningAction.objects.filter(
            as_of__range=(start, end), action=DunningActionKind.EMAIL, status=DunningActionStatus.DONE
        )
        .values_list("as_of", "invoice__currency")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        out[day, currency]["reminders"] = count
    for day, currency, count in (
        DunningAction.objects.filter(as_of__range=(start, end), late_fee_invoice__isnull=False)
        .values_list("as_of", "invoice__currency")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        out[day, currency]["late_fees"] = count
    for day, currency, amount in (
        Payment.objects.filter(received_on__range=(start, end), status=PaymentStatus.SUCCEEDED)
        .values_list("received_on", "currency")
        .annotate(amount=Sum("amount"))
        .order_by()
    ):
        out[day, currency]["cash_in"] = amount
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class Comparison:
    made_on: dt.date
    computed_at: dt.datetime | None
    until: dt.date
    rows: list[dict[str, Any]]  # day, currency, then (forecast, actual) per compared figure


COMPARED = ("invoices", "total", "charges", "reminders", "cash_in")


def forecast_compare(*, made_on: dt.date, until: dt.date | None = None) -> Comparison:
    """The stored forecast made on ``made_on`` beside what happened from that day to ``until`` (default:
    yesterday — today is not over)."""
    from reporting.models import ForecastDay

    until = until or billing_today() - dt.timedelta(days=1)
    stored = list(ForecastDay.objects.filter(made_on=made_on, day__lte=until).order_by("day", "currency"))
    actual = forecast_actuals(start=made_on, end=until) if until >= made_on else {}
    keys = sorted({(row.day, row.currency) for row in stored} | set(actual))
    by_key = {(row.day, row.currency): row for row in stored}
    rows = []
    for key in keys:
        made = by_key.get(key)
        happened = actual.get(key, {})
        rows.append(
            {
                "day": key[0],
                "currency": key[1],
                **{name: (getattr(made, name) if made is not None else 0, happened.get(name, 0)) for name in COMPARED},
            }
        )
    return Comparison(made_on, stored[0].computed_at if stored else None, until, rows)


def forecast_made_on_dates() -> list[dt.date]:
    from reporting.models import ForecastDay

    return list(ForecastDay.objects.order_by("-made_on").values_list("made_on", flat=True).distinct()[:120])
