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
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
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
from reporting.forecast_billing import PeriodResult, group_subscriptions, signature_results
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
    """One thing behind a figure: who, which subscription or invoice, how much (in the row's currency)."""

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


class EntryGroup(NamedTuple):
    """Entries that differ only in who they are about: the same figure, currency and amounts on each ``when`` (day,
    kind) for every (customer, subscription) of ``who``. The forecast keeps these, not its entries: the members of a
    pricing signature share their invoices, and an invoice its reminder schedule, so a 90-day forecast of 100,000
    subscriptions is a few thousand groups standing for about a million entries. ``who`` lists are shared between
    the groups of one invoice (its invoice, charge, cash in, reminders): the pickled forecast (the cache) holds each
    once."""

    figure: str  # one of FIGURES
    currency: str
    when: tuple[tuple[dt.date, str], ...]  # (day, kind): one, or a reminder schedule's e-mails
    who: list[tuple[int, int | None]]  # (customer_id, subscription_id)
    amount: Decimal = ZERO
    invoice_id: int | None = None
    net: Decimal = ZERO
    tax: Decimal = ZERO

    def expand(self, day: dt.date | None = None) -> Iterator[Entry]:
        """The entries the group stands for (on ``day`` only, if given)."""
        figure, currency, amount, invoice_id, net, tax = (
            self.figure,
            self.currency,
            self.amount,
            self.invoice_id,
            self.net,
            self.tax,
        )
        for on, kind in self.when:
            if day is None or on == day:
                for customer_id, subscription_id in self.who:
                    yield Entry(on, currency, figure, customer_id, amount, subscription_id, invoice_id, kind, net, tax)


def _entry_order(entry: Entry) -> tuple[Any, ...]:
    return (
        entry.day,
        entry.currency,
        entry.figure,
        entry.subscription_id or 0,
        entry.invoice_id or 0,
        entry.customer_id,
    )


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
    groups: list[EntryGroup] = field(default_factory=list)  # the entries behind the figures, grouped
    subscriptions: int = 0

    @property
    def last_day(self) -> dt.date:
        return self.as_of + dt.timedelta(days=self.days - 1)

    @property
    def entries(self) -> list[Entry]:
        """Every entry behind the figures, in order of day, currency, figure, subscription, invoice (a million for
        100,000 subscriptions over 90 days: the drill-down expands only what it shows, ``entries_for``)."""
        return sorted((entry for group in self.groups for entry in group.expand()), key=_entry_order)

    @property
    def entry_count(self) -> int:
        return sum(len(group.when) * len(group.who) for group in self.groups)

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
        """The entries behind one figure of one currency, on one day or (``day=None``) over the horizon, in order of
        day, subscription, invoice."""
        found = [
            entry
            for group in self.groups
            if group.currency == currency and group.figure == figure
            for entry in group.expand(day)
        ]
        found.sort(key=_entry_order)
        return found


class ForecastError(InvalidInput):
    pass


def forecast_check(*, days: int, as_of: dt.date) -> None:
    if not 1 <= days <= MAX_DAYS:
        raise ForecastError(f"days: give a number of days from 1 to {MAX_DAYS}.", field="days")


# --- the forecast ---------------------------------------------------------------------------------------


def forecast_compute(*, days: int, as_of: dt.date | None = None, grouped: bool = True) -> Forecast:
    """The forecast for ``[as_of, as_of + days)``; reads only (no row, no number, no lock).

    ``grouped=False`` prices every subscription on its own (the run's code once per subscription, as before the
    pricing signatures) and settles and chases every invoice on its own: the same answer, slower; the bench and the
    signature tests compare the two."""
    as_of = as_of or billing_today()
    forecast_check(days=days, as_of=as_of)
    # The forecast allocates hundreds of thousands of short-lived tuples: the cyclic collector would walk them many
    # times for nothing (they form no cycles).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _forecast(days=days, as_of=as_of, grouped=grouped)
    finally:
        if enabled:
            gc.enable()


def _forecast(*, days: int, as_of: dt.date, grouped: bool) -> Forecast:
    last_day = as_of + dt.timedelta(days=days - 1)
    balances = _balances() if settings.PAYMENTS_APPLY_CREDIT_ON_FINALIZE else {}
    paused = set(Subscription.objects.filter(pause_mode=PauseMode.COLLECTION).values_list("pk", flat=True))
    planned: list[EntryGroup] = []  # drafts and cancellations
    issued_all = _issued_invoices(
        as_of=as_of,
        last_day=last_day,
        entries=planned,
        grouped=grouped,
        alone={customer_id for customer_id, _currency in balances},
        paused=paused,
    )
    subscriptions = len({subscription_id for invoice in issued_all for _customer, subscription_id in invoice.who})
    open_entries: list[EntryGroup] = []
    open_chased: list[_Chased] = []
    _open_invoices(as_of=as_of, last_day=last_day, entries=open_entries, chased=open_chased)
    policies = _Policies()
    # Credit is consumed in issue order (per customer and currency).
    issued_all.sort(key=lambda invoice: (invoice.issue_date, invoice.who[0][1]))
    # A dunning step that suspends or cancels a subscription on day P stops its invoices after P; the invoices
    # left then have reminders of their own, which may stop another: repeat until nothing more stops (at once if
    # no policy suspends or cancels). Each round's groups are those of its stops; the last round's are kept.
    stops: dict[int, dt.date] = {}
    schedules: dict[tuple[Any, ...], _Schedule] = {}
    settled: list[EntryGroup] = []
    reminders: list[EntryGroup] = []
    for _round in range(6):
        issued = _not_stopped(issued_all, stops)
        settled, reminders = [], []
        chased: list[_Chased] = []
        _settle(issued, balances=dict(balances), entries=settled, chased=chased)
        found = _reminders(
            [*open_chased, *chased], last_day=last_day, entries=reminders, schedules=schedules, policies=policies
        )
        if found == stops:
            break
        stops = found
    kept = _groups_not_stopped(planned, stops)
    # Reminders fall inside the horizon by construction; cash in by a due date may fall after it.
    groups = [group for group in (*kept, *open_entries, *settled) if as_of <= group.when[0][0] <= last_day]
    groups.extend(reminders)
    return Forecast(
        as_of=as_of,
        days=days,
        computed_at=timezone.now(),
        rows=_rows(groups),
        groups=groups,
        subscriptions=subscriptions,
    )


@dataclass(slots=True)
class _Issued:
    """Forecast invoices of the same amounts, kind, dates and collection, one per (customer, subscription) of
    ``who`` — the members of one pricing signature that settle alike (no credit balance, same terms and
    collection); a member with a credit balance or a paused collection is alone. Not an ``Invoice``: ``pk`` is None,
    as for an invoice not written."""

    issue_date: dt.date
    due_date: dt.date
    currency: str
    total: Decimal
    tax_total: Decimal
    kind: str
    collection_method: str
    who: list[tuple[int, int | None]]  # (customer the invoice is addressed to, subscription)
    paused: bool = False  # the (one) subscription's collection is paused: no charge
    amount_due: Decimal = ZERO
    pk: None = None


@dataclass(slots=True)
class _Chased:
    """Invoices the reminders will chase alike (open today, or issued by the forecast and sent for payment)."""

    invoice: Invoice | _Issued  # what a late fee reads: amount due, currency
    who: list[tuple[int, int | None]]  # (customer, subscription) per invoice
    due_date: dt.date
    start: dt.date  # the first day the daily run chases it: today, or the day it is issued
    done: list[DoneStep]
    paid_on: dt.date | None = None  # the day an automatic charge (assumed to succeed) pays it


def _not_stopped(issued: list[_Issued], stops: dict[int, dt.date]) -> list[_Issued]:
    if not stops:
        return list(issued)
    get = stops.get
    kept = []
    for invoice in issued:
        day, who = invoice.issue_date, invoice.who
        left = [pair for pair in who if (stop := get(pair[1] or 0)) is None or day <= stop]
        if len(left) == len(who):
            kept.append(invoice)
        elif left:
            kept.append(replace(invoice, who=left))
    return kept


def _groups_not_stopped(groups: list[EntryGroup], stops: dict[int, dt.date]) -> list[EntryGroup]:
    """Single-day groups (drafts, cancellations) without the subscriptions stopped before their day."""
    if not stops:
        return groups
    get = stops.get
    kept = []
    for group in groups:
        day = group.when[0][0]
        left = [pair for pair in group.who if (stop := get(pair[1] or 0)) is None or day <= stop]
        if left:
            kept.append(group if len(left) == len(group.who) else group._replace(who=left))
    return kept


def _issued_invoices(
    *, as_of: dt.date, last_day: dt.date, entries: list[EntryGroup], grouped: bool, alone: set[int], paused: set[int]
) -> list[_Issued]:
    """The run's invoices of the horizon, priced by the run's code once per pricing signature
    (``reporting.forecast_billing``; held drafts become ``drafts`` entries, cancellations ``cancellations``).
    Members billed to a customer of ``alone`` (a credit balance: consumed invoice by invoice) or whose collection is
    paused get invoices of their own; the others share them per due-date terms and collection method
    (``grouped=False``: every member alone)."""
    prices = PriceCache()
    groups = group_subscriptions(last_day=last_day, prices=prices, grouped=grouped)
    due_dates: dict[tuple[dt.date, int | None, int | None], dt.date] = {}  # due_date_for, once per tuple
    issued: list[_Issued] = []
    append = issued.append
    for members, result in signature_results(groups, last_day=last_day, prices=prices):
        if result.ended_on is not None:
            currency = result.periods[0].currency if result.periods else members[0].currency
            entries.append(
                EntryGroup(
                    "cancellations",
                    currency,
                    ((max(result.ended_on, as_of), ""),),
                    [(member.customer_id, member.subscription_id) for member in members],
                )
            )
        if not result.periods:
            continue
        payers: list[tuple[int, int | None]] = [(member.payer_id, member.subscription_id) for member in members]
        cohorts: dict[tuple[Any, ...], list[tuple[int, int | None]]] = {}
        for member, payer in zip(members, payers, strict=True):
            own = not grouped or member.payer_id in alone or member.subscription_id in paused
            key = (
                member.days_until_due,
                member.customer_terms_days,
                member.collection_method,
                member.subscription_id if own else None,
            )
            cohort = cohorts.get(key)
            if cohort is None:
                cohorts[key] = [payer]
            else:
                cohort.append(payer)
        for position, period in enumerate(result.periods):
            day = max(period.billing_date, as_of)
            if period.memo:
                entries.append(EntryGroup("drafts", period.currency, ((day, period.memo[:120]),), payers, period.total))
                continue
            kind = _kind(period, result.old_status, position)
            for (days_until_due, terms_days, collection_method, own_id), who in cohorts.items():
                due_key = (day, days_until_due, terms_days)
                due_date = due_dates.get(due_key)
                if due_date is None:
                    due_date = due_dates[due_key] = due_date_for(
                        issue_date=day,
                        subscription_days_until_due=days_until_due,
                        customer_payment_terms_days=terms_days,
                    )
                append(
                    _Issued(
                        day,
                        due_date,
                        period.currency,
                        period.total,
                        period.tax_total,
                        kind,
                        collection_method,
                        who,
                        paused=own_id is not None and own_id in paused,
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
    entries: list[EntryGroup],
    chased: list[_Chased],
) -> None:
    """Credit, then the automatic charge, of every forecast invoice in issue order (the settle phase). Invoices
    shared by several subscriptions have no credit to consume (see ``_Issued``)."""
    append = entries.append
    automatic_method = CollectionMethod.CHARGE_AUTOMATICALLY
    for invoice in issued:
        day = invoice.issue_date
        currency = invoice.currency
        who = invoice.who
        total = invoice.total
        append(
            EntryGroup(
                "invoices",
                currency,
                ((day, invoice.kind),),
                who,
                total,
                None,
                total - invoice.tax_total,
                invoice.tax_total,
            )
        )
        due = total
        if balances and len(who) == 1:
            customer_id = who[0][0]
            balance = balances.get((customer_id, currency), ZERO)
            credit = min(balance, due) if due > 0 else ZERO
            if credit > 0:
                balances[customer_id, currency] = balance - credit
                due -= credit
                append(EntryGroup("credit", currency, ((day, ""),), who, credit))
        invoice.amount_due = due
        if due <= 0:
            continue
        automatic = invoice.collection_method == automatic_method
        if automatic and not invoice.paused:
            append(EntryGroup("charges", currency, ((day, "first"),), who, due))
            append(EntryGroup("cash_in", currency, ((day, ""),), who, due))
            continue
        append(EntryGroup("cash_in", currency, ((invoice.due_date, ""),), who, due))
        if not automatic:
            chased.append(_Chased(invoice, who, invoice.due_date, day, []))


def _open_invoices(*, as_of: dt.date, last_day: dt.date, entries: list[EntryGroup], chased: list[_Chased]) -> None:
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
        who: list[tuple[int, int | None]] = [(invoice.customer_id, invoice.subscription_id)]
        paid_on: dt.date | None = None
        charge_on: dt.date | None = None
        kind = ""
        if invoice.pk in retries and not paused:
            charge_on, kind = max(retries[invoice.pk], as_of), "retry"
        elif automatic and not paused and not invoice.attempted:  # type: ignore[attr-defined]
            charge_on, kind = as_of, "missed first charge"
        if charge_on is not None and not invoice.processing:  # type: ignore[attr-defined]
            entries.append(EntryGroup("charges", currency, ((charge_on, kind),), who, invoice.amount_due, invoice.pk))
            entries.append(EntryGroup("cash_in", currency, ((charge_on, ""),), who, invoice.amount_due, invoice.pk))
            paid_on = charge_on
        elif invoice.due_date is not None and invoice.due_date >= as_of:
            entries.append(
                EntryGroup("cash_in", currency, ((invoice.due_date, ""),), who, invoice.amount_due, invoice.pk)
            )
        if invoice.due_date is not None and not invoice.hold_reminders and not paused:
            chased.append(_Chased(invoice, who, invoice.due_date, as_of, done[invoice.pk], paid_on))


class _Policies:
    """The dunning policies (with their steps) and every customer's own settings (a small table: cheaper than an IN
    list of every chased customer), loaded once per forecast."""

    def __init__(self) -> None:
        self.by_pk = dunning_policies_load()
        self.default = dunning_policy_default(self.by_pk.values())
        self.custom = {row.customer_id: row for row in CustomerDunningSettings.objects.all()}

    def of(self, customer_id: int) -> Any:
        """The customer's policy, or None if they are not chased (held, or no policy at all)."""
        custom = self.custom.get(customer_id)
        if custom is None:
            return self.default
        if custom.hold_reminders:
            return None
        return self.by_pk.get(custom.policy_id) if custom.policy_id else self.default


def _reminders(
    chased: list[_Chased],
    *,
    last_day: dt.date,
    entries: list[EntryGroup],
    schedules: dict[tuple[Any, ...], _Schedule],
    policies: _Policies,
) -> dict[int, dt.date]:
    """The dunning run's own plan (``plan_steps``), day by day on the days a step falls due, for each invoice.
    Returns, per subscription, the first day a step suspends or cancels it (billing stops after that day).

    The plan of an invoice with no step done yet depends only on its policy, due date, first day chased and the
    day it is paid: computed once per such tuple (``schedules``, kept across the forecast's rounds) and shared by
    the invoices of a ``_Chased``, whose customers have the same policy unless some have settings of their own."""
    stops: dict[int, dt.date] = {}
    default = policies.default
    for item in chased:
        parts: list[tuple[Any, list[tuple[int, int | None]]]]
        if policies.custom:
            by_policy: dict[int, tuple[Any, list[tuple[int, int | None]]]] = {}
            for pair in item.who:
                policy = policies.of(pair[0])
                if policy is not None:
                    by_policy.setdefault(policy.pk, (policy, []))[1].append(pair)
            parts = list(by_policy.values())
        else:
            parts = [(default, item.who)] if default is not None else []
        invoice = item.invoice
        currency, amount_due, invoice_id = invoice.currency, invoice.amount_due, invoice.pk
        for policy, who in parts:
            if item.done:
                schedule = _Schedule(_schedule(policy, item.due_date, item.start, item.paid_on, last_day, item.done))
            else:
                key = (policy.pk, item.due_date, item.start, item.paid_on)
                schedule = schedules.get(key)  # type: ignore[assignment]
                if schedule is None:
                    schedule = schedules[key] = _Schedule(
                        _schedule(policy, item.due_date, item.start, item.paid_on, last_day, [])
                    )
            if schedule.sends:
                entries.append(EntryGroup("reminders", currency, schedule.sends, who, amount_due, invoice_id))
            for day, step in schedule.applied:
                if step.action == DunningActionKind.LATE_FEE:
                    fee = late_fee_amount(step=step, invoice=invoice)  # type: ignore[arg-type]
                    if fee is not None and fee > 0:
                        entries.append(EntryGroup("late_fees", currency, ((day, ""),), who, fee, invoice_id))
            stop = schedule.stop
            if stop is not None:
                for _customer_id, subscription_id in who:
                    if subscription_id is not None:
                        stops[subscription_id] = min(stop, stops.get(subscription_id, stop))
    return stops


class _Schedule:
    """One invoice's dunning plan split for emitting: the e-mails (day, template), the applied steps (day, step),
    and the first day a step suspends or cancels its subscription."""

    __slots__ = ("applied", "sends", "stop")

    def __init__(self, planned: list[tuple[dt.date, DunningStep, str]]) -> None:
        self.sends = tuple((day, step.template) for day, step, decision in planned if decision == SEND)
        self.applied = [(day, step) for day, step, decision in planned if decision == APPLY]
        self.stop = min((day for day, step in self.applied if step.action in STOPPING), default=None)


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


def _rows(groups: list[EntryGroup]) -> list[DayRow]:
    """The day rows, summed per group: a group adds its amounts once per member (``who``) on each of its days."""
    rows: dict[tuple[dt.date, str], DayRow] = {}
    for group in groups:
        figure, currency, amount, count = group.figure, group.currency, group.amount, len(group.who)
        for day, kind in group.when:
            row = rows.get((day, currency))
            if row is None:
                row = rows[day, currency] = DayRow(day, currency)
            if figure == "reminders":
                row.reminders += count
            elif figure == "invoices":
                row.invoices += count
                row.total += amount * count
                row.net += group.net * count
                row.tax += group.tax * count
                if kind == RENEWAL:
                    row.renewals += count
                elif kind == NEW:
                    row.new += count
                elif kind == TRIAL_CONVERSION:
                    row.trial_conversions += count
                elif kind == PLAN_CHANGE:
                    row.plan_changes += count
                elif kind == FINAL:
                    row.final_invoices += count
            elif figure == "drafts":
                row.drafts += count
                row.drafts_total += amount * count
            elif figure == "credit":
                row.credit += amount * count
            elif figure == "charges":
                row.charges += count
                row.charges_amount += amount * count
            elif figure == "late_fees":
                row.late_fees += count
                row.late_fees_amount += amount * count
            elif figure == "cash_in":
                row.cash_in += amount * count
            elif figure == "cancellations":
                row.cancellations += count
    return [rows[key] for key in sorted(rows)]


# --- cached, stored, compared ---------------------------------------------------------------------------


def _cache_key(days: int, as_of: dt.date) -> str:
    return f"reporting:forecast:v2:{as_of.isoformat()}:{days}"  # v2: the entries grouped (EntryGroup)


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
