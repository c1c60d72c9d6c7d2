"""The forecast's invoices, fast: every subscription that bills exactly what another one bills is priced once.

The billing run plans and builds one invoice per subscription and period (``subscriptions.charges.plans_for_chunk``
and ``invoicing.billing_run.invoice_build_for_period``). Most subscriptions produce, period after period, the very
invoice many others produce: same prices and quantities, same currency, same tax profile, same discount state, the
same calendar. So the forecast (docs/decisions/forecast.md, "Speed") groups the subscriptions by a **pricing
signature** — everything the run's planning and invoice building read, with the subscription's and the customer's
identity left out — and runs the run's own code, unchanged, for ONE subscription per signature (its
representative); every other member gets the representative's amounts, period by period.

The signature holds:
- the calendar: the billing steps of the horizon from the run's own calendar (``charges._walk``: dates, reasons,
  final invoices, trial conversions, interval changes) and, per step, whether its recurring period is a short
  first period (the proration test of ``charges._recurring_drafts``); so members bill on the same days;
- every column of the subscription the run may read, except its identity and the calendar dates the steps stand
  for (``SUBSCRIPTION_NOT_PRICED``, ``SUBSCRIPTION_CALENDAR``): a column added later is in the signature by default;
- every column of the customer except identity and contact details (``CUSTOMER_NOT_PRICED``); the VAT number as
  "has one" (the tax rules read only that; the reverse-charge note prints it, amounts do not); a customer with an
  e-invoice format is unique (the pre-issue check reads the address);
- the items (price, quantity, removal) in the run's order; the discounts (coupon, periods applied, and per step
  whether it is in force — the run's own date test); the pending invoice items (amounts, periods, category, and
  the step that bills them); per step and metered item, the usage the run would bill (the run's
  ``usage_totals``); a subscription with late usage (usage arriving for a period billed already) is unique.

Two subscriptions with the same signature make the run's code do the same arithmetic on the same numbers, so a
member's amounts are the representative's to the cent (``tests/reporting/test_forecast_speed.py`` flips each
ingredient and compares with every subscription computed on its own).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import F, Max, Min, Q, TextField
from django.db.models.functions import Cast

from customers.models import BillingMode, Customer
from invoicing.billing_run import invoice_build_for_period
from invoicing.taxes import tax_rates_load
from subscriptions.calendar import boundary_on_or_before
from subscriptions.charges import BillingPlan, PriceCache, _walk, _window_span, plans_for_chunk
from subscriptions.models import (
    CouponDuration,
    Discount,
    PendingInvoiceItem,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
    UsageEvent,
)
from subscriptions.usage import UsageSpan, UsageTotal, usage_totals

CHUNK = 2_000
USAGE_SPANS_PER_QUERY = 100_000  # arrays (``usage_totals``): one query is cheaper than chunks

# Subscription columns the run's planning does not read (identity, texts, timestamps).
SUBSCRIPTION_NOT_PRICED = frozenset(
    {
        "id",
        "customer_id",
        "metadata",
        "created_at",
        "updated_at",
        "cancellation_reason",
        "cancellation_comment",
        "canceled_at",
        "paused_at",
    }
)
# Subscription dates the calendar steps (``_walk``) stand for in the signature; ``trial_end`` and ``start_date`` are
# read besides only for late usage, which makes a subscription unique.
SUBSCRIPTION_CALENDAR = frozenset(
    {
        "start_date",
        "billing_cycle_anchor",
        "current_period_start",
        "current_period_end",
        "next_billing_date",
        "usage_open_from",
        "trial_end",
        "ended_at",
    }
)
# Customer columns the invoice builder and the tax rules do not read (identity, contact, evidence of location).
CUSTOMER_NOT_PRICED = frozenset(
    {
        "id",
        "name",
        "legal_name",
        "email",
        "cc_emails",
        "phone",
        "address_line1",
        "address_line2",
        "postal_code",
        "city",
        "ip_country",
        "bank_country",
        "language",
        "notes",
        "external_id",
        "metadata",
        "created_at",
        "updated_at",
        "tax_id",  # in the signature as "has one"
        "buyer_reference",
        "purchase_order",
        "einvoice_address",
        "einvoice_address_scheme",
    }
)
# What ``_walk`` reads (the calendar's own inputs; memoised per distinct tuple).
_WALK_FIELDS = (
    "status",
    "ended_at",
    "current_period_start",
    "current_period_end",
    "usage_open_from",
    "billing_cycle_anchor",
    "interval",
    "interval_count",
    "interval_changes",
    "next_billing_date",
    "cancel_at_period_end",
    "start_date",
)


def _priced_fields(model: type[Any], excluded: Iterable[str]) -> tuple[str, ...]:
    left_out = set(excluded)
    return tuple(f.attname for f in model._meta.concrete_fields if f.attname not in left_out)


class _Calendar:
    """The attributes ``_walk`` reads, from a plain row (no model instance)."""

    __slots__ = (*_WALK_FIELDS, "pk")

    def __init__(self, values: tuple[Any, ...]) -> None:
        for name, value in zip(_WALK_FIELDS, values, strict=True):
            setattr(self, name, value)
        self.pk = 0


@dataclass(frozen=True, slots=True)
class PeriodResult:
    """One invoice of a representative, as the run built it (amounts in the currency's minor unit)."""

    billing_date: dt.date
    currency: str
    total: Decimal
    tax_total: Decimal
    memo: str  # non-empty: a draft held for review
    billing_reason: str
    final: bool
    proration: bool  # a line is a proration


@dataclass(frozen=True, slots=True)
class PlanResult:
    periods: tuple[PeriodResult, ...]
    ended_on: dt.date | None  # canceled at period end within the horizon: the day it ends
    old_status: str


@dataclass(slots=True)
class Member:
    subscription_id: int
    customer_id: int
    days_until_due: int | None
    customer_terms_days: int | None
    collection_method: str
    currency: str
    payer_id: int  # the customer the invoice is addressed to: the parent of a child billed to it


@dataclass
class Groups:
    """The subscriptions due by the horizon's last day, grouped by pricing signature (members in id order)."""

    by_signature: dict[Hashable, list[Member]] = field(default_factory=dict)
    subscriptions: int = 0

    @property
    def representatives(self) -> list[int]:
        return [members[0].subscription_id for members in self.by_signature.values()]


def group_subscriptions(*, last_day: dt.date, prices: PriceCache, grouped: bool = True) -> Groups:
    """Load every subscription due by ``last_day`` with a few lean queries and group them by signature
    (``grouped=False``: each subscription alone, priced on its own)."""
    sub_fields = _priced_fields(Subscription, SUBSCRIPTION_NOT_PRICED | SUBSCRIPTION_CALENDAR)
    customer_fields = _priced_fields(Customer, CUSTOMER_NOT_PRICED)
    due = Subscription.objects.filter(next_billing_date__lte=last_day).exclude(status=SubscriptionStatus.PAUSED)
    columns = (
        "pk",
        "customer_id",
        "days_until_due",
        "collection_method",
        "currency",
        "customer__payment_terms_days",
        "customer__tax_id",
        "customer__parent__payment_terms_days",
        *_WALK_FIELDS,
        *_as_text(Subscription, sub_fields, ""),
        *_as_text(Customer, customer_fields, "customer__"),
    )
    rows = list(due.order_by("pk").values_list(*columns))
    walk_at = 8
    sub_at = walk_at + len(_WALK_FIELDS)
    customer_at = sub_at + len(sub_fields)
    einvoice_at = customer_at + customer_fields.index("einvoice_format")
    thresholds_at = sub_at + sub_fields.index("usage_thresholds")  # JSON text (``_as_text``)
    parent_at = customer_at + customer_fields.index("parent_id")
    mode_at = customer_at + customer_fields.index("billing_mode")

    items, item_ids = _items(last_day=last_day, prices=prices)
    discounts = _discounts(last_day=last_day)
    pending = _pending(last_day=last_day)

    walks: dict[tuple[Any, ...], tuple[tuple[Any, ...], tuple[bool, ...]]] = {}
    calendars: list[tuple[tuple[Any, ...], tuple[bool, ...]]] = []
    # Per distinct calendar (steps, short-first-period tests): a number standing for it in the signatures — equal
    # calendars, equal numbers — so a signature does not hash its steps (dataclasses) once per subscription.
    numbers: dict[tuple[tuple[Any, ...], tuple[bool, ...]], int] = {}
    number_of: dict[int, int] = {}  # id(calendar) -> its number
    for row in rows:
        walk_key = row[walk_at:sub_at]
        walked = walks.get(walk_key)
        if walked is None:
            walked = walks[walk_key] = _steps(_Calendar(walk_key), last_day)
            number_of[id(walked)] = numbers.setdefault(walked, len(numbers))
        calendars.append(walked)
    usage = _usage(rows, calendars, items, item_ids, prices, last_day)

    has_thresholds: dict[str | None, bool] = {}  # per JSON text of ``usage_thresholds``: is the list not empty
    groups = Groups(subscriptions=len(rows))
    by_signature = groups.by_signature
    for row, steps_and_partials in zip(rows, calendars, strict=True):
        steps = steps_and_partials[0]
        pk, customer_id = row[0], row[1]
        boundaries = [step.boundary for step in steps]
        sub_discounts = [*discounts.get(("s", pk), ()), *discounts.get(("c", customer_id), ())]
        if len(sub_discounts) > 1:
            sub_discounts.sort(key=lambda d: (d[0], d[1]))
        thresholds = has_thresholds.get(row[thresholds_at])
        if thresholds is None:
            thresholds = has_thresholds[row[thresholds_at]] = bool(json.loads(row[thresholds_at] or "null"))
        signature: tuple[Any, ...] = (
            row[sub_at:customer_at],
            row[customer_at:],
            bool(row[6]),
            number_of[id(steps_and_partials)],
            items.get(pk, ()),
            tuple(
                (coupon_id, applied, tuple(start <= b and (end is None or b < end) for b in boundaries))
                for start, _pk, end, coupon_id, applied in sub_discounts
            ),
            tuple(
                (next((i for i, b in enumerate(boundaries) if effective_on <= b), None), *values)
                for effective_on, values in pending.get(pk, ())
            ),
        )
        totals = usage.get(pk)
        if totals is not None:
            signature += (totals,)
            if any(total is not None and total.late_from is not None for total in totals):
                signature += (("late usage", pk),)  # its late periods read its own dates: priced alone
        if thresholds:
            signature += (("thresholds", pk),)  # the period's final invoice deducts its own threshold invoices
        if row[einvoice_at]:
            signature += (("e-invoice", customer_id),)  # the pre-issue check reads the customer's address
        if not grouped:
            signature = (pk,)
        member = Member(pk, customer_id, row[2], row[5], row[3], row[4], customer_id)
        if row[parent_at] is not None and row[mode_at] != BillingMode.OWN:
            # billed to the parent (docs/decisions/parent-accounts.md): taxed per the child (the signature holds the
            # child's columns), owed by the parent on its terms; a consolidated invoice has no subscription terms
            member.payer_id = row[parent_at]
            member.customer_terms_days = row[7]
            if row[mode_at] == BillingMode.CONSOLIDATED:
                member.days_until_due = None
        members = by_signature.get(signature)
        if members is None:
            by_signature[signature] = [member]
        else:
            members.append(member)
    return groups


def _as_text(model: type[Any], names: Iterable[str], prefix: str) -> list[str | Cast]:
    """The columns to select; a JSON column as its text (equal values, equal texts: what a signature needs) rather
    than parsed into a list or dict per row, which would be half the query's cost and unhashable."""
    return [
        Cast(f"{prefix}{name}", TextField())
        if model._meta.get_field(name).get_internal_type() == "JSONField"
        else f"{prefix}{name}"
        for name in names
    ]


def _steps(calendar: _Calendar, last_day: dt.date) -> tuple[tuple[Any, ...], tuple[bool, ...]]:
    """The run's calendar for the horizon and, per recurring step, the short-first-period test of
    ``_recurring_drafts`` (the same ``boundary_on_or_before`` call)."""
    steps = tuple(_walk(calendar, last_day))  # type: ignore[arg-type]
    cycle = (calendar.billing_cycle_anchor, calendar.interval, calendar.interval_count)  # type: ignore[attr-defined]
    partials = tuple(
        step.recurring and boundary_on_or_before(*cycle, step.period_end - dt.timedelta(days=1)) != step.period_start
        for step in steps
    )
    return steps, partials


def _items(
    *, last_day: dt.date, prices: PriceCache
) -> tuple[dict[int, tuple[tuple[Any, ...], ...]], dict[int, tuple[int, ...]]]:
    """Per subscription, its items as the run loads them (live, or removed with usage still to bill), in id order:
    (price, quantity, removal) for the signature, and the items' ids."""
    rows = list(
        SubscriptionItem.objects.filter(subscription__next_billing_date__lte=last_day)
        .filter(Q(removed_on__isnull=True) | Q(removed_on__gt=F("subscription__usage_open_from")))
        .order_by("subscription_id", "pk")
        .values_list("subscription_id", "pk", "price_id", "quantity", "removed_on")
    )
    prices.resolve({row[2] for row in rows})
    items: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    ids: dict[int, list[int]] = defaultdict(list)
    for subscription_id, pk, price_id, quantity, removed_on in rows:
        items[subscription_id].append((price_id, quantity, removed_on))
        ids[subscription_id].append(pk)
    return {sub: tuple(values) for sub, values in items.items()}, {sub: tuple(values) for sub, values in ids.items()}


def _discounts(*, last_day: dt.date) -> dict[tuple[str, int], list[tuple[Any, ...]]]:
    """The discounts the run loads (not used up, started by the horizon's end), per subscription and customer."""
    found: dict[tuple[str, int], list[tuple[Any, ...]]] = defaultdict(list)
    for pk, subscription_id, customer_id, start, end, coupon_id, applied in (
        Discount.objects.exclude(coupon__duration=CouponDuration.ONCE, periods_applied__gte=1)
        .exclude(coupon__duration=CouponDuration.REPEATING, periods_applied__gte=F("coupon__duration_in_periods"))
        .filter(start__lte=last_day)
        .values_list("pk", "subscription_id", "customer_id", "start", "end", "coupon_id", "periods_applied")
    ):
        key = ("s", subscription_id) if subscription_id is not None else ("c", customer_id)
        found[key].append((start, pk, end, coupon_id, applied))
    return found


def _pending(*, last_day: dt.date) -> dict[int, list[tuple[dt.date, tuple[Any, ...]]]]:
    found: dict[int, list[tuple[dt.date, tuple[Any, ...]]]] = defaultdict(list)
    for subscription_id, effective_on, *values in (
        PendingInvoiceItem.objects.filter(billed_at__isnull=True, effective_on__lte=last_day)
        .order_by("pk")
        .values_list(
            "subscription_id",
            "effective_on",
            "price_id",
            "quantity",
            "unit_amount",
            "unit_amount_currency",
            "amount",
            "amount_currency",
            "period_start",
            "period_end",
            "kind",
            "proration",
            "tax_behavior",
            "invoice_now",
        )
    ):
        found[subscription_id].append((effective_on, tuple(values)))
    return found


def _usage(
    rows: list[tuple[Any, ...]],
    calendars: list[tuple[tuple[Any, ...], tuple[bool, ...]]],
    items: dict[int, tuple[tuple[Any, ...], ...]],
    item_ids: dict[int, tuple[int, ...]],
    prices: PriceCache,
    last_day: dt.date,
) -> dict[int, tuple[UsageTotal | None, ...]]:
    """Per subscription with a metered item: the usage the run would bill, per step and metered item (the run's
    ``usage_totals`` over the same windows as ``charges._load_usage``).

    A window can hold usage only if an event of its item is billed inside it, so ``usage_totals`` is asked only
    for those (one grouped query gives each item's first and last billing date); the others have none — the
    answer ``usage_totals`` gives for a window without events."""
    billed = _billing_dates(before=last_day + dt.timedelta(days=1))
    windows: dict[int, list[tuple[int, dt.date, dt.date]]] = {}
    metrics: dict[int, Any] = {}
    spans: list[UsageSpan] = []
    for row, (steps, _partials) in zip(rows, calendars, strict=True):
        pk = row[0]
        if not steps or pk not in items:
            continue
        metered = []
        for item_id, (price_id, _quantity, _removed) in zip(item_ids[pk], items[pk], strict=True):
            price = prices[price_id]
            if price.is_metered:
                metered.append(item_id)
                metrics[item_id] = price.metric
        if not metered:
            continue
        own = windows[pk] = [(item_id, step.usage_start, step.boundary) for step in steps for item_id in metered]
        for item_id, start, end in own:
            found = billed.get(item_id)
            if found is not None and found[0] < end and found[1] >= start:
                spans.append(_window_span(item_id, start, end))
    totals: dict[UsageSpan, UsageTotal] = {}
    for at in range(0, len(spans), USAGE_SPANS_PER_QUERY):
        totals.update(usage_totals(spans=spans[at : at + USAGE_SPANS_PER_QUERY], metrics=metrics))
    by_window = {(span.item_id, span.usage_from, span.usage_to): total for span, total in totals.items()}
    return {pk: tuple(by_window.get(window) for window in own) for pk, own in windows.items()}


def _billing_dates(*, before: dt.date | None) -> dict[int, tuple[dt.date, dt.date]]:
    """Per item with usage, the first and last billing date of its events billed before ``before``."""
    if before is None:
        return {}
    return {
        item_id: (first, last)
        for item_id, first, last in UsageEvent.objects.filter(billing_date__lt=before)
        .values_list("subscription_item_id")
        .annotate(first=Min("billing_date"), last=Max("billing_date"))
        .values_list("subscription_item_id", "first", "last")
        .order_by()
    }


def price_representatives(
    subscription_ids: list[int], *, last_day: dt.date, prices: PriceCache
) -> dict[int, PlanResult]:
    """The run's own planning and invoice building for these subscriptions, in memory (nothing written)."""
    tax_rates = tax_rates_load()
    results: dict[int, PlanResult] = {}
    for start in range(0, len(subscription_ids), CHUNK):
        chunk = subscription_ids[start : start + CHUNK]
        for plan in plans_for_chunk(subscription_ids=chunk, as_of=last_day, lock=False, prices=prices):
            results[plan.subscription_id] = _result(plan, tax_rates)
    return results


def _result(plan: BillingPlan, tax_rates: Any) -> PlanResult:
    customer = plan.customer
    assert customer is not None
    periods = []
    for period in plan.periods:
        invoice, _lines = invoice_build_for_period(period=period, customer=customer, tax_rates=tax_rates)
        periods.append(
            PeriodResult(
                billing_date=period.billing_date,
                currency=invoice.currency,
                total=invoice.total,
                tax_total=invoice.tax_total,
                memo=invoice.memo,
                billing_reason=period.billing_reason,
                final=period.period_key.endswith("/final"),
                proration=any(line.proration for line in period.lines),
            )
        )
    ended = plan.new_status == SubscriptionStatus.ENDED and plan.status_changes and plan.new_ended_at is not None
    return PlanResult(tuple(periods), plan.new_ended_at if ended else None, plan.old_status)


def signature_results(
    groups: Groups, *, last_day: dt.date, prices: PriceCache
) -> Iterator[tuple[list[Member], PlanResult]]:
    """Every signature's members with their plan's result: its representative's, computed once per signature. A
    group whose representative has no plan (it changed between the queries) is priced member by member (each
    yielded alone)."""
    results = price_representatives(groups.representatives, last_day=last_day, prices=prices)
    for members in groups.by_signature.values():
        result = results.get(members[0].subscription_id)
        if result is not None:
            yield members, result
            continue
        own = price_representatives([m.subscription_id for m in members[1:]], last_day=last_day, prices=prices)
        for member in members[1:]:
            if member.subscription_id in own:
                yield [member], own[member.subscription_id]
