"""What is owed and when: the contract between ``subscriptions`` and ``invoicing``.

The billing run, the "upcoming invoice" preview and ``charges_due`` share one code path: ``plans_for_chunk``
loads a chunk of subscriptions with a fixed number of queries (7 at most, whatever the chunk size) and computes
every due period in plain Python. ``services.plans_commit`` then advances the subscriptions in bulk.

Periods (docs/DESIGN.md): a period is the half-open date range ``[start, end)``. Recurring fees are billed at a
period's start (in advance), usage for ``[start, end)`` at its end (in arrears). So the invoice issued at a
boundary ``D`` holds the recurring fees of ``[D, next boundary)`` and the usage of ``[previous boundary, D)``,
plus the pending prorations created before ``D``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Exists, F, OuterRef, Prefetch, Q
from djmoney.money import Money

from core.money import round_amount
from core.tax_categories import TaxCategory
from customers.models import Customer
from subscriptions.calendar import boundary_after, boundary_on_or_before, format_day
from subscriptions.models import (
    BillableMetric,
    BillingReason,
    CouponDuration,
    Discount,
    LineKind,
    PendingInvoiceItem,
    Price,
    PriceTier,
    Product,
    ProgressiveBilling,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
)
from subscriptions.pricing import DiscountRule, Tier, allocate_discounts, full_amount, price_parts, prorate
from subscriptions.usage import UsageSpan, UsageTotal, usage_totals

_UNIT_PLACES = Decimal("0.000001")


@dataclass(frozen=True)
class ChargeLine:
    """One line to invoice. ``amount`` is rounded to the currency's minor unit and is the amount BEFORE discount
    and tax; ``discount_amount`` (>= 0, rounded) is the part of the discounts allocated to this line, so the net
    line is ``amount - discount_amount``. Only a proration credit has a negative amount."""

    description: str
    quantity: Decimal
    unit_amount: Money  # may carry more decimals than the currency (0.0125 per API call)
    amount: Money
    discount_amount: Money
    period_start: dt.date
    period_end: dt.date  # exclusive
    price_id: int | None
    subscription_item_id: int | None
    kind: str  # "recurring" | "usage" | "proration" | "one_off"
    proration: bool
    tax_behavior: str  # "exclusive" | "inclusive"
    product_id: int | None = None
    # What is sold, for VAT (the price's category, else its product's); invoicing resolves it per customer.
    tax_category: str = TaxCategory.STANDARD
    tax_exemption_reason_code: str = ""
    tax_exemption_reason: str = ""
    pending_item_id: int | None = None  # set when the line comes from a PendingInvoiceItem
    discount_description: str = ""  # the coupons that reduced the line: name and terms, as the invoice prints them

    @property
    def net_amount(self) -> Money:
        return self.amount - self.discount_amount


@dataclass(frozen=True)
class PeriodCharges:
    """Everything one invoice of a subscription holds, for the billing boundary ``billing_date``.

    - ``billing_date`` is the boundary D at which the invoice is issued (its natural invoice date).
    - ``period_start``/``period_end`` is the service period the invoice is *for*: the recurring period
      ``[D, next boundary)`` when it bills recurring fees; when it bills none (every price metered, or the final
      invoice of a subscription that ends or was canceled), the span of its lines' periods — the usage window
      ``[previous boundary, D)``; for an "invoice now" change, the rest of the current period.
    - Each line carries its own period: recurring ``[D, next)``, usage ``[previous boundary, D)`` (late usage
      included), prorations ``[change day, period end)``.
    - ``period_key`` is unique per subscription and invoice: invoicing's "a period is billed at most once"
      constraint should be on (subscription, period_key).
    """

    subscription_id: int
    customer_id: int
    currency: str
    period_start: dt.date
    period_end: dt.date
    billing_reason: str  # "subscription_cycle" | "subscription_create" | "subscription_change"
    lines: list[ChargeLine]
    collection_method: str
    days_until_due: int
    billing_date: dt.date
    period_key: str

    @property
    def subtotal(self) -> Money:
        return sum((line.amount for line in self.lines), Money(0, self.currency))

    @property
    def discount_total(self) -> Money:
        return sum((line.discount_amount for line in self.lines), Money(0, self.currency))


@dataclass
class BillingPlan:
    """One subscription's due periods (in order, each exactly once) and what committing them changes.

    A plan may have no periods when only the state moves on (a canceled trial, a metered-only subscription with
    no usage yet): commit it all the same. ``services.plans_commit`` applies it, guarded by the old values."""

    subscription_id: int
    periods: list[PeriodCharges]
    old_current_period_start: dt.date
    old_next_billing_date: dt.date | None
    old_status: str
    new_current_period_start: dt.date
    new_current_period_end: dt.date
    new_next_billing_date: dt.date | None
    new_usage_open_from: dt.date
    new_status: str
    new_ended_at: dt.date | None
    status_reason: str = ""
    discount_periods: dict[int, int] = field(default_factory=dict)  # discount id -> periods it applied to
    pending_item_ids: list[int] = field(default_factory=list)
    customer: Customer | None = None  # loaded with the subscription, for the invoice
    days_until_due: int | None = None  # the subscription's own terms (None: the customer's), for the due date
    # The recurring fees (net) billed in advance for the period the subscription is in after the plan: the
    # recurring part of its minimum commitment when that period's usage is billed (docs/decisions/commitments.md).
    new_period_recurring_net: Decimal = Decimal(0)

    @property
    def status_changes(self) -> bool:
        return self.new_status != self.old_status


# --- Loading (a fixed number of queries per chunk) ------------------------------------------------------


@dataclass(slots=True)
class _Item:
    """A subscription item as the plan reads it: a chunk loads thousands, so a slotted row instead of a model
    instance (building ``SubscriptionItem`` objects was a tenth of a chunk's time)."""

    pk: int
    subscription_id: int
    price_id: int
    quantity: int
    removed_on: dt.date | None
    price: Price


@dataclass
class _Loaded:
    items: dict[int, list[_Item]]
    discounts_by_subscription: dict[int, list[Discount]]
    discounts_by_customer: dict[int, list[Discount]]
    pending: dict[int, list[PendingInvoiceItem]]
    usage: dict[UsageSpan, UsageTotal]  # the usage windows' aggregates, and the late usage's corrections
    tiers: dict[int, list[Tier]]
    # (subscription, usage window start) -> the newest threshold invoice of that window (progressive billing)
    progressive: dict[tuple[int, dt.date], ProgressiveBilling] = field(default_factory=dict)


class PriceCache(dict[int, Price]):
    """Prices (with their product) shared by every chunk of a billing run: a chunk's items then load without
    joining and instantiating the same few prices a thousand times. Unknown ids are fetched on demand."""

    def resolve(self, price_ids: set[int]) -> None:
        missing = price_ids - self.keys()
        if missing:
            self.update(
                (price.pk, price) for price in Price.objects.select_related("product", "metric").filter(pk__in=missing)
            )


def _load(subscriptions: Sequence[Subscription], as_of: dt.date, prices: PriceCache | None = None) -> _Loaded:
    ids = [s.pk for s in subscriptions]
    customer_ids = {s.customer_id for s in subscriptions if getattr(s, "has_discounts", True)}
    items: dict[int, list[_Item]] = defaultdict(list)
    tiers: dict[int, list[Tier]] = {}
    # Items still live, or removed while their usage is not billed yet (a removed metered item's last usage).
    item_rows = (
        SubscriptionItem.objects.filter(subscription_id__in=ids)
        .filter(Q(removed_on__isnull=True) | Q(removed_on__gt=F("subscription__usage_open_from")))
        .order_by("pk")
    )
    loaded_items: list[_Item]
    if prices is None:  # one subscription (a preview): the prices ride along in the same query
        loaded_items = [
            _Item(item.pk, item.subscription_id, item.price_id, item.quantity, item.removed_on, item.price)
            for item in item_rows.select_related("price__product", "price__metric")
        ]
    else:  # a billing run's chunk: plain rows, the prices from the run's cache
        plain = list(item_rows.values_list("pk", "subscription_id", "price_id", "quantity", "removed_on"))
        prices.resolve({price_id for _, _, price_id, _, _ in plain})
        loaded_items = [
            _Item(pk, subscription_id, price_id, quantity, removed_on, prices[price_id])
            for pk, subscription_id, price_id, quantity, removed_on in plain
        ]
    tiered_price_ids: set[int] = set()
    for item in loaded_items:
        price = item.price
        items[item.subscription_id].append(item)
        price_id = item.price_id
        tiers.setdefault(price_id, [])
        if price.is_tiered:
            tiered_price_ids.add(price_id)
    # Tiers, discounts and pending items are read only when the chunk has some (flags on the subscription
    # query), so a plain chunk costs a plain number of queries.
    if tiered_price_ids:
        for tier in PriceTier.objects.filter(price_id__in=tiered_price_ids).order_by("price_id", "up_to"):
            tiers[tier.price_id].append(Tier(tier.up_to, tier.unit_amount, tier.flat_amount))

    by_subscription: dict[int, list[Discount]] = defaultdict(list)
    by_customer: dict[int, list[Discount]] = defaultdict(list)
    with_discounts = [s.pk for s in subscriptions if getattr(s, "has_discounts", True)]
    discount_rows = (
        Discount.objects.none()
        if not with_discounts
        else Discount.objects.filter(Q(subscription_id__in=with_discounts) | Q(customer_id__in=customer_ids))
        .exclude(coupon__duration=CouponDuration.ONCE, periods_applied__gte=1)
        .exclude(coupon__duration=CouponDuration.REPEATING, periods_applied__gte=F("coupon__duration_in_periods"))
        .filter(start__lte=as_of)
        .select_related("coupon")
        .prefetch_related(Prefetch("coupon__products", queryset=Product.objects.only("pk")))
        .order_by("start", "pk")
    )
    for discount in discount_rows:
        if discount.subscription_id is not None:
            by_subscription[discount.subscription_id].append(discount)
        elif discount.customer_id is not None:
            by_customer[discount.customer_id].append(discount)

    pending: dict[int, list[PendingInvoiceItem]] = defaultdict(list)
    with_pending = [s.pk for s in subscriptions if getattr(s, "has_pending", True)]
    for pending_item in (
        PendingInvoiceItem.objects.filter(
            subscription_id__in=with_pending, billed_at__isnull=True, effective_on__lte=as_of
        )
        .select_related("price__product")
        .order_by("pk")
        if with_pending
        else ()
    ):
        pending[pending_item.subscription_id].append(pending_item)

    usage = _load_usage(subscriptions, items, as_of)
    with_progressive = [s.pk for s in subscriptions if getattr(s, "has_progressive", True)]
    return _Loaded(items, by_subscription, by_customer, pending, usage, tiers, _load_progressive(with_progressive))


def _load_progressive(subscription_ids: list[int]) -> dict[tuple[int, dt.date], ProgressiveBilling]:
    """What threshold invoices billed in the windows still open, in one query (none when the chunk has none):
    per window its newest row, whose lines are the usage billed so far (cumulative)."""
    if not subscription_ids:
        return {}
    rows = (
        ProgressiveBilling.objects.filter(
            subscription_id__in=subscription_ids, period_start__gte=F("subscription__usage_open_from")
        )
        .only("subscription_id", "period_start", "threshold", "billed_on", "amount", "currency", "lines")
        .order_by("subscription_id", "period_start", "threshold")
    )
    return {(row.subscription_id, row.period_start): row for row in rows}  # the last (highest) wins


def _load_usage(
    subscriptions: Sequence[Subscription], items: dict[int, list[_Item]], as_of: dt.date
) -> dict[UsageSpan, UsageTotal]:
    """The usage windows every due invoice of the chunk bills, aggregated in one query; a second query only
    when some window picked up late usage: per period it belongs to, what was billed and what it is now."""
    metrics: dict[int, BillableMetric | None] = {}
    spans: list[UsageSpan] = []
    metered_by_subscription: dict[int, list[_Item]] = {}
    for sub in subscriptions:
        metered = [item for item in items.get(sub.pk, []) if item.price.is_metered]
        if not metered:
            continue
        metered_by_subscription[sub.pk] = metered
        for step in _walk(sub, as_of):
            for item in metered:
                metrics[item.pk] = item.price.metric
                spans.append(_window_span(item.pk, step.usage_start, step.boundary))
    usage = usage_totals(spans=spans, metrics=metrics)
    corrections = [
        span
        for sub in subscriptions
        for item in metered_by_subscription.get(sub.pk, [])
        for step in _walk(sub, as_of)
        for span in _late_spans(sub, item.pk, step.usage_start, step.boundary, usage)
    ]
    if corrections:
        usage.update(usage_totals(spans=corrections, metrics=metrics))
    return usage


def _window_span(item_id: int, start: dt.date, end: dt.date) -> UsageSpan:
    return UsageSpan(item_id, start, end, start, end)


def _late_periods(
    sub: Subscription, late_from: dt.date, late_to: dt.date, before: dt.date
) -> list[tuple[dt.date, dt.date]]:
    """The billing-cycle periods holding the usage dates ``[late_from, late_to]``, each cut to what an earlier
    invoice billed: not before the start (or the end of a trial: trial usage is free), not after ``before``."""
    cycle = (sub.billing_cycle_anchor, sub.interval, sub.interval_count)
    first_billable = max(sub.start_date, sub.trial_end or sub.start_date)
    periods = []
    start = boundary_on_or_before(*cycle, late_from)
    while start <= late_to:
        end = boundary_after(*cycle, start)
        cut_start, cut_end = max(start, first_billable), min(end, before)
        if cut_start < cut_end:
            periods.append((cut_start, cut_end))
        start = end
    return periods


def _late_spans(
    sub: Subscription, item_id: int, start: dt.date, end: dt.date, usage: dict[UsageSpan, UsageTotal]
) -> list[UsageSpan]:
    total = usage.get(_window_span(item_id, start, end))
    if total is None or total.late_from is None or total.late_to is None:
        return []
    spans = []
    for period_start, period_end in _late_periods(sub, total.late_from, total.late_to, start):
        spans.append(UsageSpan(item_id, period_start, period_end, period_start, start))  # as billed before
        spans.append(UsageSpan(item_id, period_start, period_end, period_start, end))  # with the late usage
    return spans


_NOT_PLANNED = (
    "created_at",
    "updated_at",
    "canceled_at",
    "paused_at",
    "trial_end",
    "metadata",
    "customer__created_at",
    "customer__updated_at",
    "customer__metadata",
    "customer__notes",
    "customer__cc_emails",
    "customer__phone",
)


def plans_for_chunk(
    *, subscription_ids: list[int], as_of: dt.date, lock: bool = False, prices: PriceCache | None = None
) -> list[BillingPlan]:
    """The billing plans of the chunk's subscriptions that have something due on or before ``as_of``.

    At most 7 queries whatever the chunk size (subscriptions, items with prices, tiers, discounts, coupon
    products, pending items, usage aggregates per item and day). Paused subscriptions and those with nothing due
    are left out. ``lock=True`` locks the subscription rows first (``FOR UPDATE SKIP LOCKED``; a row another
    run holds is left out) — the billing run must use it inside its transaction so that usage ingested
    concurrently (which takes the same row lock) lands either wholly before or wholly after the plan.
    """
    queryset = Subscription.objects.filter(pk__in=subscription_ids, next_billing_date__lte=as_of).exclude(
        status=SubscriptionStatus.PAUSED
    )
    # The customer rides along in the same query (the invoice needs its address, tax status and terms).
    queryset = queryset.select_related("customer").annotate(
        customer_terms_days=F("customer__payment_terms_days"),
        has_discounts=Exists(Discount.objects.filter(subscription_id=OuterRef("pk")))
        | Exists(Discount.objects.filter(customer_id=OuterRef("customer_id"))),
        has_pending=Exists(PendingInvoiceItem.objects.filter(subscription_id=OuterRef("pk"), billed_at__isnull=True)),
        has_progressive=Exists(
            ProgressiveBilling.objects.filter(
                subscription_id=OuterRef("pk"), period_start__gte=OuterRef("usage_open_from")
            )
        ),
    )
    # Only the columns the plan and the invoice read: timestamps and JSON are the costly ones to load (a chunk
    # reads a thousand rows of each), and neither the plan nor the invoice reads these.
    queryset = queryset.defer(*_NOT_PLANNED)
    if lock:
        queryset = queryset.select_for_update(skip_locked=True, of=("self",))
    subscriptions = list(queryset.order_by("pk"))
    if not subscriptions:
        return []
    loaded = _load(subscriptions, as_of, prices)
    plans = [_plan(subscription, loaded, as_of) for subscription in subscriptions]
    for plan, subscription in zip(plans, subscriptions, strict=True):
        plan.customer = subscription.customer
        plan.days_until_due = subscription.days_until_due
    return plans


def charges_due(*, subscription: Subscription, as_of: dt.date) -> list[PeriodCharges]:
    """Every period of one subscription due on or before ``as_of`` — the billing run's own code path."""
    plans = plans_for_chunk(subscription_ids=[subscription.pk], as_of=as_of)
    return plans[0].periods if plans else []


def upcoming_invoice(*, subscription: Subscription, as_of: dt.date) -> PeriodCharges | None:
    """Preview of the next invoice: the first due period if one is due, else the one at the next billing date,
    with the usage and pending prorations recorded so far. None when nothing more will be billed."""
    subscription.refresh_from_db(fields=["next_billing_date", "status"])
    if subscription.next_billing_date is None or subscription.status == SubscriptionStatus.PAUSED:
        return None
    at = max(as_of, subscription.next_billing_date)
    plans = plans_for_chunk(subscription_ids=[subscription.pk], as_of=at)
    if not plans or not plans[0].periods:
        return None
    return plans[0].periods[0]


def change_invoice_now_charges(*, subscription: Subscription, pending_item_ids: list[int]) -> PeriodCharges | None:
    """The "invoice now" half of a plan change: the change's pending proration lines as one PeriodCharges with
    billing reason "subscription_change". Invoicing builds the invoice from it and then calls
    ``services.pending_items_mark_billed`` in the same transaction; lines not marked billed by then simply go
    to the next cycle invoice (never lost, never twice). None when those items were billed already."""
    items = list(
        PendingInvoiceItem.objects.filter(subscription=subscription, pk__in=pending_item_ids, billed_at__isnull=True)
        .select_related("price__product")
        .order_by("pk")
    )
    if not items:
        return None
    lines = [_pending_line(item) for item in items]
    start = min(line.period_start for line in lines)
    end = max(line.period_end for line in lines)
    return PeriodCharges(
        subscription_id=subscription.pk,
        customer_id=subscription.customer_id,
        currency=subscription.currency,
        period_start=start,
        period_end=end,
        billing_reason=BillingReason.SUBSCRIPTION_CHANGE,
        lines=lines,
        collection_method=subscription.collection_method,
        days_until_due=subscription.effective_days_until_due,
        billing_date=min(item.effective_on for item in items),
        period_key=f"change:{items[0].pk}",
    )


# --- Computation (plain Python on loaded rows) ----------------------------------------------------------


def _days_until_due(sub: Subscription) -> int:
    if sub.days_until_due is not None:
        return sub.days_until_due
    terms = getattr(sub, "customer_terms_days", None)
    return int(terms if terms is not None else sub.customer.payment_terms_days)


def _money(amount: Decimal, currency: str) -> Money:
    return Money(amount, currency)


def _unit(amount: Decimal) -> Decimal:
    return amount.quantize(_UNIT_PLACES)


def _pending_line(item: PendingInvoiceItem) -> ChargeLine:
    currency = str(item.amount.currency.code)
    category, code, reason = (
        item.price.tax_category_effective if item.price is not None else (TaxCategory.STANDARD, "", "")
    )
    return ChargeLine(
        description=item.description,
        quantity=item.quantity,
        unit_amount=item.unit_amount,
        amount=item.amount,
        discount_amount=_money(Decimal(0), currency),
        period_start=item.period_start,
        period_end=item.period_end,
        price_id=item.price_id,
        subscription_item_id=item.subscription_item_id,
        kind=item.kind,
        proration=item.proration,
        tax_behavior=item.tax_behavior,
        product_id=None,
        pending_item_id=item.pk,
        tax_category=category,
        tax_exemption_reason_code=code,
        tax_exemption_reason=reason,
    )


@dataclass
class _Draft:
    description: str
    quantity: Decimal
    unit_amount: Decimal
    amount: Decimal  # rounded
    period_start: dt.date
    period_end: dt.date
    price: Price
    item_id: int
    kind: str
    proration: bool


def _describe(price: Price, quantity: Decimal | int, label: str, with_quantity: bool) -> str:
    base = price.public_name
    if with_quantity:
        base = f"{base} × {Decimal(quantity).normalize():f}"
    return f"{base} — {label}" if label else base


def _recurring_drafts(
    items: Iterable[_Item], tiers: dict[int, list[Tier]], sub: Subscription, start: dt.date, end: dt.date
) -> list[_Draft]:
    """Recurring fees of [start, end); a first period shorter than a full one (anchor after the start date) is
    prorated by days like a change."""
    currency = sub.currency
    full_start = boundary_on_or_before(
        sub.billing_cycle_anchor, sub.interval, sub.interval_count, end - dt.timedelta(days=1)
    )
    partial = full_start != start
    drafts = []
    for item in items:
        price = item.price
        if item.removed_on is not None or price.is_metered:
            continue
        quantity = Decimal(item.quantity)
        parts = price_parts(
            pricing_model=price.pricing_model,
            unit_amount=price.unit_amount.amount,
            quantity=quantity,
            tiers=tiers.get(price.pk, ()),
            package_size=price.package_size,
        )
        if partial:
            remaining, period_days = (end - start).days, (end - full_start).days
            amount = prorate(full_amount(parts), remaining, period_days)
            label = f"prorated {remaining}/{period_days} days from {format_day(start)}"
            drafts.append(
                _Draft(
                    _describe(price, quantity, label, True),
                    quantity,
                    _unit(amount / quantity) if quantity else amount,
                    round_amount(amount, currency),
                    start,
                    end,
                    price,
                    item.pk,
                    LineKind.RECURRING,
                    True,
                )
            )
            continue
        with_quantity = price.pricing_model != "flat"
        for part in parts:
            drafts.append(
                _Draft(
                    _describe(price, quantity, part.label, with_quantity),
                    part.quantity,
                    part.unit_amount,
                    round_amount(part.amount, currency),
                    start,
                    end,
                    price,
                    item.pk,
                    LineKind.RECURRING,
                    False,
                )
            )
    return drafts


def _usage_parts_amount(price: Price, quantity: Decimal, loaded: _Loaded, currency: str) -> Decimal:
    """What ``quantity`` costs as the usage lines would bill it: the sum of the rounded parts."""
    parts = price_parts(
        pricing_model=price.pricing_model,
        unit_amount=price.unit_amount.amount,
        quantity=quantity,
        tiers=loaded.tiers.get(price.pk, ()),
        package_size=price.package_size,
    )
    return sum((round_amount(part.amount, currency) for part in parts), Decimal(0))


def _usage_drafts(
    items: Iterable[_Item],
    loaded: _Loaded,
    sub: Subscription,
    window_start: dt.date,
    window_end: dt.date,
) -> list[_Draft]:
    """The usage lines of the window ``[window_start, window_end)``, then one adjustment line per period whose
    late usage arrived after it was invoiced: what the period costs now minus what was billed for it."""
    drafts = []
    for item in items:
        price = item.price
        if not price.is_metered:
            continue
        total = loaded.usage.get(_window_span(item.pk, window_start, window_end))
        if total is None:
            continue
        if total.events:
            quantity = total.quantity
            parts = price_parts(
                pricing_model=price.pricing_model,
                unit_amount=price.unit_amount.amount,
                quantity=quantity,
                tiers=loaded.tiers.get(price.pk, ()),
                package_size=price.package_size,
            )
            for part in parts:
                label = f"usage {format_day(window_start)} – {format_day(window_end - dt.timedelta(days=1))}"
                if part.label:
                    label = f"{label}, {part.label}"
                drafts.append(
                    _Draft(
                        _describe(price, part.quantity if price.pricing_model != "package" else quantity, label, True),
                        part.quantity,
                        part.unit_amount,
                        round_amount(part.amount, sub.currency),
                        window_start,
                        window_end,
                        price,
                        item.pk,
                        LineKind.USAGE,
                        False,
                    )
                )
        if total.late_from is None or total.late_to is None:
            continue
        for period_start, period_end in _late_periods(sub, total.late_from, total.late_to, window_start):
            billed = loaded.usage.get(UsageSpan(item.pk, period_start, period_end, period_start, window_start))
            now = loaded.usage.get(UsageSpan(item.pk, period_start, period_end, period_start, window_end))
            billed_quantity = billed.quantity if billed is not None and billed.events else Decimal(0)
            now_quantity = now.quantity if now is not None and now.events else Decimal(0)
            billed_amount = _usage_parts_amount(price, billed_quantity, loaded, sub.currency) if billed_quantity else 0
            amount = _usage_parts_amount(price, now_quantity, loaded, sub.currency) - billed_amount
            quantity = now_quantity - billed_quantity
            if not amount and not quantity:
                continue  # the late events changed nothing billed (a max below the peak, a filtered-out event)
            last_day = format_day(period_end - dt.timedelta(days=1))
            label = f"late usage of {format_day(period_start)} – {last_day}"
            drafts.append(
                _Draft(
                    _describe(price, quantity, label, True),
                    quantity,
                    _unit(amount / quantity) if quantity else amount,
                    Decimal(amount),
                    period_start,
                    period_end,
                    price,
                    item.pk,
                    LineKind.ADJUSTMENT,
                    False,
                )
            )
    return drafts


def _discount_rules(
    discounts: list[Discount], used: dict[int, int], billing_date: dt.date, currency: str
) -> list[DiscountRule]:
    rules = []
    for discount in discounts:
        coupon = discount.coupon
        if discount.start > billing_date or (discount.end is not None and billing_date >= discount.end):
            continue
        limit = coupon.periods_limit
        if limit is not None and discount.periods_applied + used.get(discount.pk, 0) >= limit:
            continue
        amount_off = None
        if coupon.amount_off is not None:
            if str(coupon.amount_off.currency.code) != currency:
                continue  # refused when the discount is created; never converted
            amount_off = coupon.amount_off.amount
        rules.append(
            DiscountRule(
                discount_id=discount.pk,
                percent_off=coupon.percent_off,
                amount_off=amount_off,
                product_ids=frozenset(p.pk for p in coupon.products.all()),
            )
        )
    return rules


def _finish(
    sub: Subscription,
    drafts: list[_Draft],
    pending: list[PendingInvoiceItem],
    discounts: list[Discount],
    used: dict[int, int],
    billing_date: dt.date,
) -> list[ChargeLine]:
    currency = sub.currency
    rules = _discount_rules(discounts, used, billing_date, currency)
    taken, applied = allocate_discounts(
        amounts=[d.amount for d in drafts],
        product_ids=[d.price.product_id for d in drafts],
        eligible=[d.kind in (LineKind.RECURRING, LineKind.USAGE) for d in drafts],
        rules=rules,
        currency=currency,
    )
    for discount_id in applied:
        used[discount_id] = used.get(discount_id, 0) + 1
    coupons = {discount.pk: discount.coupon for discount in discounts}
    covering = [rule for rule in rules if rule.discount_id in applied]

    def discount_description(draft: _Draft, taken: Decimal) -> str:
        if not taken:
            return ""
        names = [
            f"{coupons[rule.discount_id].public_name} ({coupons[rule.discount_id].terms})"
            for rule in covering
            if not rule.product_ids or draft.price.product_id in rule.product_ids
        ]
        return "; ".join(dict.fromkeys(names))[:300]

    lines = [
        ChargeLine(
            description=d.description,
            quantity=d.quantity,
            unit_amount=_money(d.unit_amount, currency),
            amount=_money(d.amount, currency),
            discount_amount=_money(discount, currency),
            period_start=d.period_start,
            period_end=d.period_end,
            price_id=d.price.pk,
            subscription_item_id=d.item_id,
            kind=d.kind,
            proration=d.proration,
            tax_behavior=d.price.tax_behavior,
            product_id=d.price.product_id,
            discount_description=discount_description(d, discount),
            tax_category=d.price.tax_category_effective[0],
            tax_exemption_reason_code=d.price.tax_category_effective[1],
            tax_exemption_reason=d.price.tax_category_effective[2],
        )
        for d, discount in zip(drafts, taken, strict=True)
    ]
    lines.extend(_pending_line(item) for item in pending)
    return lines


@dataclass(frozen=True)
class _Step:
    """One due boundary of a subscription and what billing it changes (computed by ``_walk``)."""

    boundary: dt.date
    usage_start: dt.date  # the usage window is [usage_start, boundary)
    final: bool
    recurring: bool  # whether the invoice bills the recurring fees of [period_start, period_end)
    period_start: dt.date
    period_end: dt.date
    next_boundary: dt.date | None
    reason: str
    current_period: tuple[dt.date, dt.date]  # the subscription's current period after this step
    status: str  # the status after this step
    ended_at: dt.date | None
    status_reason: str
    restarted: bool = False  # the first period of a cycle restarted by an interval change


def _walk(sub: Subscription, as_of: dt.date) -> Iterable[_Step]:
    """The boundaries due on or before ``as_of``, in order: the calendar of the plan, shared by the usage
    loading (which windows to aggregate) and ``_plan`` (what to bill at each)."""
    status, ended_at, status_reason = sub.status, sub.ended_at, ""
    current_start, current_end = sub.current_period_start, sub.current_period_end
    usage_open_from = sub.usage_open_from
    cycle = (sub.billing_cycle_anchor, sub.interval, sub.interval_count)
    # The first period of a cycle restarted by an interval change: on the day the old period was billed it starts
    # on that period's date, so its key names the change (unique per subscription: the changes are counted).
    restarted = sub.interval_changes and sub.status != SubscriptionStatus.TRIALING
    restarted_on = sub.billing_cycle_anchor if restarted else None
    boundary = sub.next_billing_date
    while boundary is not None and boundary <= as_of:
        usage_start = usage_open_from
        final = status == SubscriptionStatus.CANCELED or (sub.cancel_at_period_end and boundary == current_end)
        reason = BillingReason.SUBSCRIPTION_CYCLE
        recurring = True
        next_boundary: dt.date | None
        if final:
            recurring = False
            period_start, period_end = min(usage_start, boundary), boundary
            if period_start >= period_end:  # canceled on its first day: the credit covers the current period
                period_start, period_end = current_start, current_end
            next_boundary = None
            if status != SubscriptionStatus.CANCELED:
                status, ended_at, status_reason = SubscriptionStatus.ENDED, boundary, "canceled at period end"
        elif boundary == current_start:
            # The current period is not billed yet: a new subscription, a trial ended early, a resume.
            period_start, period_end = boundary, current_end
            next_boundary = period_end
            if boundary == sub.start_date:
                reason = BillingReason.SUBSCRIPTION_CREATE
            elif restarted_on == boundary:
                reason = BillingReason.SUBSCRIPTION_CHANGE
        else:
            period_start, period_end = boundary, boundary_after(*cycle, boundary)
            current_start, current_end = period_start, period_end
            next_boundary = period_end
        if status == SubscriptionStatus.TRIALING:
            status, status_reason = SubscriptionStatus.ACTIVE, "trial ended"
        yield _Step(
            boundary=boundary,
            usage_start=usage_start,
            final=final,
            recurring=recurring,
            period_start=period_start,
            period_end=period_end,
            next_boundary=next_boundary,
            reason=reason,
            current_period=(current_start, current_end),
            status=status,
            ended_at=ended_at,
            status_reason=status_reason,
            restarted=boundary == restarted_on,
        )
        usage_open_from = max(usage_open_from, boundary)
        boundary = next_boundary


def _plan(sub: Subscription, loaded: _Loaded, as_of: dt.date) -> BillingPlan:
    items = loaded.items.get(sub.pk, [])
    discounts = [
        *loaded.discounts_by_subscription.get(sub.pk, []),
        *loaded.discounts_by_customer.get(sub.customer_id, []),
    ]
    discounts.sort(key=lambda d: (d.start, d.pk))
    pending_left = list(loaded.pending.get(sub.pk, []))
    used: dict[int, int] = {}
    recurring_net = sub.period_recurring_net  # billed in advance for the window the first step's usage closes
    plan = BillingPlan(
        subscription_id=sub.pk,
        periods=[],
        old_current_period_start=sub.current_period_start,
        old_next_billing_date=sub.next_billing_date,
        old_status=sub.status,
        new_current_period_start=sub.current_period_start,
        new_current_period_end=sub.current_period_end,
        new_next_billing_date=sub.next_billing_date,
        new_usage_open_from=sub.usage_open_from,
        new_status=sub.status,
        new_ended_at=sub.ended_at,
    )
    for step in _walk(sub, as_of):
        boundary = step.boundary
        drafts = _usage_drafts(items, loaded, sub, step.usage_start, boundary)
        if step.recurring:
            drafts = _recurring_drafts(items, loaded.tiers, sub, step.period_start, step.period_end) + drafts
        period_start, period_end = step.period_start, step.period_end
        plan.new_current_period_start, plan.new_current_period_end = step.current_period
        if step.status != plan.new_status:
            plan.status_reason = step.status_reason
        plan.new_status, plan.new_ended_at = step.status, step.ended_at
        due_pending = [p for p in pending_left if p.effective_on <= boundary]
        pending_left = [p for p in pending_left if p.effective_on > boundary]
        lines = _finish(sub, drafts, due_pending, discounts, used, boundary)
        plan.pending_item_ids.extend(p.pk for p in due_pending)
        if step.usage_start < boundary:  # the invoice closes the usage window [usage_start, boundary)
            window = (step.usage_start, boundary)
            true_up = _commitment_true_up(sub, items, lines, recurring_net, window)
            billed_before = loaded.progressive.get((sub.pk, step.usage_start))
            if billed_before is not None:
                lines.extend(_billed_during_period(billed_before, sub.currency))
            if true_up is not None:
                lines.append(true_up)
        recurring_net = (
            sum(
                (line.net_amount.amount for line in lines if line.kind == LineKind.RECURRING),
                Decimal(0),
            )
            if step.recurring
            else Decimal(0)
        )
        if lines and not any(line.kind == LineKind.RECURRING for line in lines):
            # No recurring fee on this invoice (every price metered, or a final invoice): its service period is
            # what its lines bill — the usage window in arrears — not the recurring period that starts now.
            period_start = min(line.period_start for line in lines)
            period_end = max(line.period_end for line in lines)
        if lines:
            plan.periods.append(
                PeriodCharges(
                    subscription_id=sub.pk,
                    customer_id=sub.customer_id,
                    currency=sub.currency,
                    period_start=period_start,
                    period_end=period_end,
                    billing_reason=step.reason,
                    lines=lines,
                    collection_method=sub.collection_method,
                    days_until_due=_days_until_due(sub),
                    billing_date=boundary,
                    period_key=f"{boundary.isoformat()}{'/final' if step.final else ''}"
                    + (f"/interval-{sub.interval_changes}" if step.restarted else ""),
                )
            )
        plan.new_usage_open_from = max(plan.new_usage_open_from, boundary)
        plan.new_next_billing_date = step.next_boundary
    plan.discount_periods = used
    plan.new_period_recurring_net = recurring_net
    return plan


# --- Minimum commitments and progressive billing (docs/decisions/commitments.md) ------------------------


def commitment_for_window(sub: Subscription, window: tuple[dt.date, dt.date]) -> Decimal | None:
    """The minimum spend of the usage window ``[start, end)``, rounded: the commitment itself for a full period,
    prorated by days (docs/DESIGN.md) for a shorter one — a first period before the anchor, a final one."""
    minimum = sub.minimum_commitment
    if not minimum:
        return None
    start, end = window
    cycle = (sub.billing_cycle_anchor, sub.interval, sub.interval_count)
    full_start = boundary_on_or_before(*cycle, end - dt.timedelta(days=1))
    full_end = boundary_after(*cycle, full_start)
    days, period_days = (end - max(start, full_start)).days, (full_end - full_start).days
    if days >= period_days:
        return round_amount(minimum, sub.currency)
    return round_amount(prorate(minimum, days, period_days), sub.currency)


def _plan_price(items: Sequence[_Item]) -> Price | None:
    """The plan's main price — the first live item's (its tax category taxes the true-up)."""
    live = [item for item in items if item.removed_on is None] or list(items)
    return live[0].price if live else None


def _commitment_true_up(
    sub: Subscription,
    items: Sequence[_Item],
    lines: list[ChargeLine],
    recurring_net: Decimal,
    window: tuple[dt.date, dt.date],
) -> ChargeLine | None:
    """The true-up line when what the window was billed falls short of its minimum: the recurring fees billed in
    advance for it, plus this invoice's usage and prorations of the window, each net of discounts, before tax.
    Late usage of earlier periods and the "billed during the period" lines do not count (docs/decisions)."""
    minimum = commitment_for_window(sub, window)
    price = _plan_price(items)
    if minimum is None or price is None:
        return None
    start, end = window
    billed = recurring_net + sum(
        (
            line.net_amount.amount
            for line in lines
            if line.kind in (LineKind.USAGE, LineKind.PRORATION)
            and line.period_start >= start
            and line.period_end <= end
        ),
        Decimal(0),
    )
    shortfall = round_amount(minimum - billed, sub.currency)
    if shortfall <= 0:
        return None
    category, code, reason = price.tax_category_effective
    currency = sub.currency
    last_day = format_day(end - dt.timedelta(days=1))
    return ChargeLine(
        description=(
            f"Minimum commitment true-up — {format_day(start)} – {last_day} "
            f"(minimum {minimum:f} {currency}, billed {round_amount(billed, currency):f})"
        ),
        quantity=Decimal(1),
        unit_amount=_money(shortfall, currency),
        amount=_money(shortfall, currency),
        discount_amount=_money(Decimal(0), currency),
        period_start=start,
        period_end=end,
        price_id=None,
        subscription_item_id=None,
        kind=LineKind.COMMITMENT,
        proration=False,
        tax_behavior=price.tax_behavior,
        tax_category=category,
        tax_exemption_reason_code=code,
        tax_exemption_reason=reason,
    )


def _billed_during_period(billed: ProgressiveBilling, currency: str) -> list[ChargeLine]:
    """The threshold invoices' usage lines, each negated: the period's invoice bills the window's whole usage and
    deducts these, so each tax category's tax is exactly the difference and the period sums to one invoice."""
    on = format_day(billed.billed_on)
    return [
        ChargeLine(
            description=f"Billed during the period (invoiced {on}) — {line['description']}"[:500],
            quantity=-Decimal(line["quantity"]),
            unit_amount=_money(Decimal(line["unit_amount"]), currency),
            amount=_money(-Decimal(line["amount"]), currency),
            discount_amount=_money(Decimal(0), currency),
            period_start=dt.date.fromisoformat(line["period_start"]),
            period_end=dt.date.fromisoformat(line["period_end"]),
            price_id=line["price_id"],
            subscription_item_id=line["subscription_item_id"],
            kind=LineKind.USAGE,
            proration=False,
            tax_behavior=line["tax_behavior"],
            product_id=line.get("product_id"),
            tax_category=line["tax_category"],
            tax_exemption_reason_code=line.get("tax_exemption_reason_code", ""),
            tax_exemption_reason=line.get("tax_exemption_reason", ""),
        )
        for line in billed.lines
    ]


def charge_line_record(line: ChargeLine) -> dict[str, object]:
    """A usage line as a threshold invoice billed it, kept on its ``ProgressiveBilling`` row (JSON)."""
    return {
        "description": line.description,
        "quantity": str(line.quantity),
        "unit_amount": str(line.unit_amount.amount),
        "amount": str(line.amount.amount),
        "period_start": line.period_start.isoformat(),
        "period_end": line.period_end.isoformat(),
        "price_id": line.price_id,
        "subscription_item_id": line.subscription_item_id,
        "product_id": line.product_id,
        "tax_behavior": line.tax_behavior,
        "tax_category": line.tax_category,
        "tax_exemption_reason_code": line.tax_exemption_reason_code,
        "tax_exemption_reason": line.tax_exemption_reason,
    }


@dataclass(frozen=True)
class PeriodAccrual:
    """A subscription's open usage window up to a day: what its usage comes to so far (list price, before
    discounts and tax), what threshold invoices billed of it, and its commitment and thresholds."""

    subscription_id: int
    currency: str
    window_start: dt.date
    window_end: dt.date  # exclusive: the day after as-of
    usage_amount: Decimal
    usage_lines: list[ChargeLine]
    billed: ProgressiveBilling | None
    thresholds: list[Decimal]
    commitment: Decimal | None  # for the whole window up to the period's end, prorated if it is short

    @property
    def billed_amount(self) -> Decimal:
        return self.billed.amount if self.billed is not None else Decimal(0)

    @property
    def threshold_due(self) -> Decimal | None:
        """The highest threshold the usage crossed and no threshold invoice of the window billed yet."""
        crossed = [t for t in self.thresholds if self.usage_amount >= t]
        if not crossed or (self.billed is not None and self.billed.threshold >= crossed[-1]):
            return None
        return crossed[-1]


def usage_thresholds_parse(values: Iterable[object], currency: str) -> list[Decimal]:
    """The thresholds as sorted, distinct, positive amounts rounded to the currency (the stored JSON strings)."""
    amounts = {round_amount(Decimal(str(value)), currency) for value in values}
    return sorted(amount for amount in amounts if amount > 0)


def period_accruals(
    *, subscription_ids: list[int], as_of: dt.date, lock: bool = False, only_with_thresholds: bool = True
) -> list[PeriodAccrual]:
    """The open usage window ``[usage_open_from, as_of + 1 day)`` of each live subscription whose period does
    not end by ``as_of`` (those the billing run bills), priced by the billing plan's own usage code: four queries
    whatever the number (subscriptions, items with prices, tiers, usage), plus the threshold invoices.
    ``lock`` locks the rows (waiting: the progressive billing job must see what a concurrent run committed)."""
    queryset = Subscription.objects.filter(
        pk__in=subscription_ids,
        status__in=[SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE],
        next_billing_date__gt=as_of,
        usage_open_from__lte=as_of,
    ).select_related("customer")
    if only_with_thresholds:
        queryset = queryset.exclude(usage_thresholds=[])
    if lock:
        queryset = queryset.select_for_update(of=("self",))
    subscriptions = list(queryset.order_by("pk"))
    if not subscriptions:
        return []
    window_end = as_of + dt.timedelta(days=1)
    items: dict[int, list[_Item]] = defaultdict(list)
    tiers: dict[int, list[Tier]] = {}
    metrics: dict[int, BillableMetric | None] = {}
    spans = []
    by_pk = {sub.pk: sub for sub in subscriptions}
    for item in (
        SubscriptionItem.objects.filter(subscription_id__in=list(by_pk))
        .filter(Q(removed_on__isnull=True) | Q(removed_on__gt=F("subscription__usage_open_from")))
        .select_related("price__product", "price__metric")
        .order_by("pk")
    ):
        items[item.subscription_id].append(
            _Item(item.pk, item.subscription_id, item.price_id, item.quantity, item.removed_on, item.price)
        )
        tiers.setdefault(item.price_id, [])
        if item.price.is_metered:
            metrics[item.pk] = item.price.metric
            spans.append(_window_span(item.pk, by_pk[item.subscription_id].usage_open_from, window_end))
    tiered = {item.price_id for rows in items.values() for item in rows if item.price.is_tiered}
    if tiered:
        for tier in PriceTier.objects.filter(price_id__in=tiered).order_by("price_id", "up_to"):
            tiers[tier.price_id].append(Tier(tier.up_to, tier.unit_amount, tier.flat_amount))
    loaded = _Loaded(
        items, {}, {}, {}, usage_totals(spans=spans, metrics=metrics), tiers, _load_progressive(list(by_pk))
    )
    accruals = []
    for sub in subscriptions:
        start = sub.usage_open_from
        drafts = [
            draft
            for draft in _usage_drafts(items.get(sub.pk, []), loaded, sub, start, window_end)
            if draft.kind == LineKind.USAGE
        ]
        usage_lines = _finish(sub, drafts, [], [], {}, as_of)
        period_end = sub.next_billing_date or window_end
        accruals.append(
            PeriodAccrual(
                subscription_id=sub.pk,
                currency=sub.currency,
                window_start=start,
                window_end=window_end,
                usage_amount=sum((line.amount.amount for line in usage_lines), Decimal(0)),
                usage_lines=usage_lines,
                billed=loaded.progressive.get((sub.pk, start)),
                thresholds=usage_thresholds_parse(sub.usage_thresholds or [], sub.currency),
                commitment=commitment_for_window(sub, (start, period_end)),
            )
        )
    return accruals


def threshold_charges(*, accrual: PeriodAccrual, subscription: Subscription, as_of: dt.date) -> PeriodCharges | None:
    """The mid-period invoice of a threshold the usage crossed: the window's usage so far, less what threshold
    invoices of the window billed already. Keyed per window and threshold, so it is issued once."""
    threshold = accrual.threshold_due
    if threshold is None:
        return None
    lines = list(accrual.usage_lines)
    if accrual.billed is not None:
        lines.extend(_billed_during_period(accrual.billed, accrual.currency))
    return PeriodCharges(
        subscription_id=accrual.subscription_id,
        customer_id=subscription.customer_id,
        currency=accrual.currency,
        period_start=accrual.window_start,
        period_end=accrual.window_end,
        billing_reason=BillingReason.SUBSCRIPTION_THRESHOLD,
        lines=lines,
        collection_method=subscription.collection_method,
        days_until_due=_days_until_due(subscription),
        billing_date=as_of,
        period_key=f"{accrual.window_start.isoformat()}/threshold-{threshold:f}",
    )
