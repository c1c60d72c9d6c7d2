"""Writes on subscriptions. Plain functions, keyword-only and typed (docs/STYLE.md); every one that depends on
"today" takes ``as_of`` (a date in BILLING_TIMEZONE).

Status changes go through ``_transition``: an explicit map of allowed transitions, an ``UPDATE … WHERE
status=<old>`` that must change exactly one row, and a ``SubscriptionEvent`` (who, when, from, to, why).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from enum import StrEnum
from typing import IO, Any, NamedTuple

import msgspec
import psycopg
from django.contrib.auth.models import AnonymousUser, User
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone
from djmoney.money import Money

from core import events, imports
from core.csvfile import RowError, read_csv
from core.dates import billing_date_of, billing_tz
from core.errors import ApplicationError, Conflict, InvalidInput, NotAllowed
from core.money import CurrencyMismatch, amount_limit_problem, round_amount
from core.queries import values_in
from customers.models import Customer
from subscriptions.calendar import add_interval, boundary_after, boundary_on_or_before, format_day
from subscriptions.charges import BillingPlan, ChargeLine, PeriodAccrual, charge_line_record, usage_thresholds_parse
from subscriptions.models import (
    METRIC_PROPERTY_RE,
    Aggregation,
    BillableMetric,
    CancellationReason,
    CollectionMethod,
    Coupon,
    CouponDuration,
    Discount,
    LineKind,
    PauseMode,
    PendingInvoiceItem,
    Price,
    ProgressiveBilling,
    Subscription,
    SubscriptionEvent,
    SubscriptionItem,
    SubscriptionStatus,
    UsageEvent,
)
from subscriptions.pricing import Tier, full_amount, price_parts, prorate
from subscriptions.usage_schema import (
    UsageEventIn,
    describe_decode_error,
    event_decoder,
    events_decoder,
    properties_decoder,
)

Status = SubscriptionStatus
Actor = User | AnonymousUser | None


class SubscriptionError(ApplicationError, ValueError):
    """A request the subscription's rules refuse; the message says why, for staff."""


class IntervalMismatch(InvalidInput, SubscriptionError):
    pass


class InvalidTransition(NotAllowed, SubscriptionError):
    pass


class ConcurrentUpdate(Conflict, SubscriptionError):
    pass


class CouponNotRedeemable(NotAllowed, SubscriptionError):
    pass


class UsageRejected(InvalidInput, SubscriptionError):
    pass


class IdempotencyConflict(Conflict, UsageRejected):
    pass


ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    Status.TRIALING: frozenset({Status.ACTIVE, Status.CANCELED, Status.ENDED}),
    Status.ACTIVE: frozenset({Status.PAST_DUE, Status.PAUSED, Status.CANCELED, Status.ENDED}),
    Status.PAST_DUE: frozenset({Status.ACTIVE, Status.PAUSED, Status.CANCELED, Status.ENDED}),
    Status.PAUSED: frozenset({Status.ACTIVE, Status.CANCELED}),
    Status.CANCELED: frozenset(),
    Status.ENDED: frozenset(),
}


class ProrationBehavior(StrEnum):
    CREATE_PRORATIONS = "create_prorations"  # add the prorations to the next invoice (default)
    ALWAYS_INVOICE = "always_invoice"  # invoice them now (charges.change_invoice_now_charges)
    NONE = "none"


# Seats per item: far above any real plan, and quantity × a price must still fit an invoice line (a larger
# value would be an integer overflow in the database, not a validation error).
MAX_ITEM_QUANTITY = 1_000_000
CANCELLATION_COMMENT_MAX = 1000  # Subscription.cancellation_comment's max_length


@dataclass(frozen=True)
class ItemSpec:
    price: Price
    quantity: int = 1


def _event(
    subscription: Subscription,
    *,
    from_status: str,
    to_status: str,
    actor: Actor,
    reason: str,
    domain_event: str = "subscription.updated",
    extra: dict[str, Any] | None = None,
) -> None:
    """The status history row, and the domain event (``subscription.created`` / ``.updated`` / ``.canceled``)
    other apps and, later, webhooks react to — both in the caller's transaction."""
    user = actor if isinstance(actor, User) else None
    SubscriptionEvent.objects.create(
        subscription=subscription,
        from_status=from_status,
        to_status=to_status,
        actor=user,
        reason=reason[:300],
    )
    events.event_record(
        domain_event,
        subject_type="subscription",
        subject_id=subscription.pk,
        payload={
            "subscription_id": subscription.pk,
            "customer_id": subscription.customer_id,
            "currency": subscription.currency,
            "from_status": from_status,
            "status": to_status,
            "reason": reason[:300],
            **(extra or {}),
        },
        actor_id=user.pk if user is not None else None,
    )


def _noted(subscription: Subscription, *, actor: Actor, reason: str, extra: dict[str, Any] | None = None) -> None:
    """A change that keeps the status (plan, coupon, trial, cancel at period end): its history row and
    ``subscription.updated`` (``extra`` rides in its payload for the handlers that react to it)."""
    _event(
        subscription,
        from_status=subscription.status,
        to_status=subscription.status,
        actor=actor,
        reason=reason,
        extra=extra,
    )


def _transition(subscription: Subscription, *, to: str, actor: Actor, reason: str, **changes: Any) -> Subscription:
    old = subscription.status
    if to not in ALLOWED_TRANSITIONS[old]:
        raise InvalidTransition(f"a {old} subscription cannot become {to}")
    updated = Subscription.objects.filter(pk=subscription.pk, status=old).update(
        status=to, updated_at=timezone.now(), **changes
    )
    if updated != 1:
        raise ConcurrentUpdate(f"subscription #{subscription.pk} changed meanwhile; reload and retry")
    _event(
        subscription,
        from_status=old,
        to_status=to,
        actor=actor,
        reason=reason,
        domain_event="subscription.canceled" if to == Status.CANCELED else "subscription.updated",
    )
    subscription.refresh_from_db()
    return subscription


def _locked(subscription: Subscription) -> Subscription:
    """Lock the row and reload the caller's instance from it, so the caller sees what the service did."""
    Subscription.objects.select_for_update().filter(pk=subscription.pk).values_list("pk").get()
    subscription.refresh_from_db()
    return subscription


def _cycle_of(items: list[ItemSpec]) -> tuple[str, str, int]:
    if not items:
        raise SubscriptionError("a subscription needs at least one item", field="items")
    first = items[0].price
    prices = set()
    for spec in items:
        price = spec.price
        if price.pk in prices:
            raise SubscriptionError(
                f"{price.display_name} is listed twice; use one item with a quantity", field="items"
            )
        prices.add(price.pk)
        if price.is_metered and spec.quantity > 1:
            raise InvalidInput(
                f"{price.display_name} is metered: it is billed by the usage recorded, not by a quantity; "
                "leave the quantity empty",
                field="quantity",
            )
        if spec.quantity < 0 or (spec.quantity == 0 and not price.is_metered):
            raise SubscriptionError(f"{price.display_name}: the quantity must be at least 1", field="quantity")
        if spec.quantity > MAX_ITEM_QUANTITY:
            raise SubscriptionError(
                f"{price.display_name}: the quantity must be at most {MAX_ITEM_QUANTITY:,}", field="quantity"
            )
        if not price.is_metered and (
            problem := amount_limit_problem(_full_amount(price, spec.quantity), price.currency)
        ):
            raise SubscriptionError(f"{price.display_name} × {spec.quantity}: {problem}", field="quantity")
        if price.currency != first.currency:
            raise CurrencyMismatch(
                f"all items of a subscription share one currency: {price.display_name} is in {price.currency}, "
                f"{first.display_name} in {first.currency}",
                field="price",
            )
        if (price.interval, price.interval_count) != (first.interval, first.interval_count):
            raise IntervalMismatch(
                f"all items of a subscription share one billing interval: {price.display_name} is every "
                f"{price.interval_label}, {first.display_name} every {first.interval_label}",
                field="price",
            )
    return first.currency, first.interval, first.interval_count


# --- Create ---------------------------------------------------------------------------------------------


@transaction.atomic
def subscription_create(
    *,
    customer: Customer,
    items: list[ItemSpec],
    start_date: dt.date,
    trial_days: int | None = None,
    trial_end: dt.date | None = None,
    billing_cycle_anchor: dt.date | None = None,
    collection_method: str = CollectionMethod.SEND_INVOICE,
    days_until_due: int | None = None,
    metadata: dict[str, Any] | None = None,
    coupon: Coupon | None = None,
    actor: Actor = None,
) -> Subscription:
    """Start a subscription on ``start_date``. With a trial (``trial_end``, or ``trial_days``, defaulting to the
    longest trial of its prices) nothing is charged until the trial ends, and the cycle is anchored on that day.
    Without one, the first period is billed at the start (in advance); ``billing_cycle_anchor`` (a later date)
    makes the first period a prorated partial one ending on the anchor."""
    if customer.is_archived:
        raise SubscriptionError(f"{customer} is archived", field="customer")
    currency, interval, interval_count = _cycle_of(items)
    for spec in items:
        if spec.price.currency != customer.currency:
            raise CurrencyMismatch(
                f"{customer} is billed in {customer.currency}, the prices are in {spec.price.currency} "
                f"({spec.price.display_name})",
                field="price",
            )
    if collection_method not in CollectionMethod.values:
        raise InvalidInput(f"unknown collection method {collection_method!r}", field="collection_method")
    if days_until_due is not None and not 0 <= days_until_due <= 365:
        raise InvalidInput("days until due must be between 0 and 365", field="days_until_due")
    if trial_days is not None and trial_days < 0:
        raise InvalidInput("the trial cannot have a negative number of days", field="trial_days")
    if trial_end is None:
        days = max(spec.price.trial_days for spec in items) if trial_days is None else trial_days
        trial_end = start_date + dt.timedelta(days=days) if days > 0 else None
    if trial_end is not None and trial_end <= start_date:
        raise SubscriptionError("the trial must end after the start date", field="trial_end")
    if billing_cycle_anchor is not None:
        if trial_end is not None:
            raise InvalidInput(
                "a subscription with a trial is anchored on the trial's end; leave the billing anchor empty",
                field="billing_cycle_anchor",
            )
        first_boundary = add_interval(start_date, interval, interval_count, 1)
        if not start_date <= billing_cycle_anchor < first_boundary:
            raise InvalidInput(
                f"the billing anchor must lie within the first period, {start_date} to "
                f"{first_boundary - dt.timedelta(days=1)} (one {interval} from the start date)",
                field="billing_cycle_anchor",
            )
    if coupon is not None:
        coupon_problem(
            coupon=coupon, as_of=start_date, currency=currency, product_ids={s.price.product_id for s in items}
        )
    subscription = Subscription(
        customer=customer,
        currency=currency,
        interval=interval,
        interval_count=interval_count,
        start_date=start_date,
        collection_method=collection_method,
        days_until_due=days_until_due,
        metadata=metadata or {},
    )
    if trial_end is not None:
        subscription.status = Status.TRIALING
        subscription.trial_end = trial_end
        subscription.billing_cycle_anchor = trial_end
        subscription.current_period_start = start_date
        subscription.current_period_end = trial_end
        subscription.next_billing_date = trial_end
        subscription.usage_open_from = trial_end
    else:
        anchor = billing_cycle_anchor or start_date
        subscription.status = Status.ACTIVE
        subscription.billing_cycle_anchor = anchor
        subscription.current_period_start = start_date
        subscription.current_period_end = boundary_after(anchor, interval, interval_count, start_date)
        subscription.next_billing_date = start_date
        subscription.usage_open_from = start_date
    subscription.save()
    SubscriptionItem.objects.bulk_create(
        [SubscriptionItem(subscription=subscription, price=spec.price, quantity=spec.quantity) for spec in items]
    )
    _event(
        subscription,
        from_status=subscription.status,
        to_status=subscription.status,
        actor=actor,
        reason="created",
        domain_event="subscription.created",
    )
    if coupon is not None:
        discount_create(coupon=coupon, subscription=subscription, as_of=start_date, actor=actor)
    return subscription


# --- Change with proration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangePreview:
    """The exact lines a change would create, before it is made (empty when nothing is prorated)."""

    lines: list[ChargeLine]
    change_date: dt.date
    period_start: dt.date
    period_end: dt.date
    prorated: bool
    # A change to prices of another interval (monthly → yearly): the cycle restarts on the change date, the
    # new period [new_period_start, new_period_end) is invoiced at once (docs/proration.md).
    interval_change: bool = False
    new_period_start: dt.date | None = None
    new_period_end: dt.date | None = None

    @property
    def total(self) -> Decimal:
        return sum((line.amount.amount for line in self.lines), Decimal(0))


@dataclass(frozen=True)
class ChangeResult:
    subscription: Subscription
    lines: list[ChargeLine]
    pending_item_ids: list[int]
    invoice_now: bool
    # An interval change restarted the cycle on this day: the new period is due now (invoicing bills it at once).
    restarted_on: dt.date | None = None


def _tiers(price: Price) -> list[Tier]:
    return [Tier(t.up_to, t.unit_amount, t.flat_amount) for t in price.tiers.all()]


def _full_amount(price: Price, quantity: int) -> Decimal:
    parts = price_parts(
        pricing_model=price.pricing_model,
        unit_amount=price.unit_amount.amount,
        quantity=Decimal(quantity),
        tiers=_tiers(price) if price.is_tiered else (),
        package_size=price.package_size,
    )
    return full_amount(parts)


def proration_line(
    *,
    price: Price,
    quantity: int,
    credit: bool,
    change_date: dt.date,
    period_start: dt.date,
    period_end: dt.date,
    subscription_item_id: int | None,
) -> ChargeLine:
    """One proration line (docs/proration.md): fraction = (end − d) / (end − start) in days, the change day
    counting as remaining; amount = ± round(full amount × fraction), rounded on its own."""
    remaining, period_days = (period_end - change_date).days, (period_end - period_start).days
    currency = price.currency
    signed = prorate(_full_amount(price, quantity), remaining, period_days) * (-1 if credit else 1)
    amount = round_amount(signed, currency)
    what = "Unused time on" if credit else "Remaining time on"
    description = (
        f"{what} {price.display_name} × {quantity} from {format_day(change_date)} ({remaining}/{period_days} days)"
    )
    return ChargeLine(
        description=description,
        quantity=Decimal(quantity),
        unit_amount=Money((signed / quantity).quantize(Decimal("0.000001")) if quantity else signed, currency),
        amount=Money(amount, currency),
        discount_amount=Money(0, currency),
        period_start=change_date,
        period_end=period_end,
        price_id=price.pk,
        subscription_item_id=subscription_item_id,
        kind=LineKind.PRORATION,
        proration=True,
        tax_behavior=price.tax_behavior,
        product_id=price.product_id,
    )


def _full_period_start(subscription: Subscription) -> dt.date:
    """The start of the full period that ends at current_period_end (earlier than current_period_start only for
    a partial first period): prorations are fractions of what a full period costs."""
    return boundary_on_or_before(
        subscription.billing_cycle_anchor,
        subscription.interval,
        subscription.interval_count,
        subscription.current_period_end - dt.timedelta(days=1),
    )


def _change_lines(
    subscription: Subscription, items: list[ItemSpec], as_of: dt.date, behavior: ProrationBehavior
) -> tuple[ChangePreview, dict[int, SubscriptionItem]]:
    if subscription.status not in (Status.ACTIVE, Status.PAST_DUE, Status.TRIALING):
        raise SubscriptionError(f"a {subscription.status} subscription cannot change plan")
    # One subscription has one period: every item after the change shares one interval (the error names the
    # price that does not), which may be another one than today's.
    currency, interval, interval_count = _cycle_of(items)
    if currency != subscription.currency:
        raise CurrencyMismatch(f"the subscription is billed in {subscription.currency}, the new prices in {currency}")
    interval_change = (interval, interval_count) != (subscription.interval, subscription.interval_count)
    start, end = subscription.current_period_start, subscription.current_period_end
    if not start <= as_of < end:
        raise SubscriptionError(
            f"the change date {as_of} lies outside the current period {start} – {end}; bill the due periods first"
        )
    trialing = subscription.status == Status.TRIALING
    unbilled_since = subscription.next_billing_date
    if interval_change and not trialing and unbilled_since is not None and unbilled_since < as_of:
        # The period the change would cut short was never invoiced: restarting the cycle would lose it.
        raise SubscriptionError(
            f"the period from {unbilled_since} is not invoiced yet; bill it first (Bill now), then change the interval"
        )
    old = {item.price_id: item for item in subscription.items.filter(removed_on__isnull=True).select_related("price")}
    new = {spec.price.pk: spec for spec in items}
    if {pid: item.quantity for pid, item in old.items()} == {pid: spec.quantity for pid, spec in new.items()}:
        raise SubscriptionError("nothing changes: the new items are the current ones")
    already_billed = subscription.next_billing_date == end and not trialing
    prorated = behavior != ProrationBehavior.NONE and already_billed
    lines: list[ChargeLine] = []
    if interval_change:
        # Stripe's rule: the old period's unused time is credited (as a proration, unless ``none``) and the new
        # period is billed in full, now, by the cycle invoice at the change date — which also carries the
        # credit, the usage so far and the discounts, as every cycle invoice does. A trial keeps its end: only
        # the interval of the periods after it changes.
        new_start = start if trialing else as_of
        new_end = end if trialing else add_interval(as_of, interval, interval_count, 1)
        if prorated:
            full_start = _full_period_start(subscription)
            lines = [
                proration_line(
                    price=item.price,
                    quantity=item.quantity,
                    credit=True,
                    change_date=as_of,
                    period_start=full_start,
                    period_end=end,
                    subscription_item_id=item.pk,
                )
                for item in old.values()
                if not item.price.is_metered
            ]
        preview = ChangePreview(
            lines=lines,
            change_date=as_of,
            period_start=start,
            period_end=end,
            prorated=prorated,
            interval_change=True,
            new_period_start=new_start,
            new_period_end=new_end,
        )
        return preview, old
    if prorated:
        full_start = _full_period_start(subscription)
        for price_id, item in old.items():
            spec = new.get(price_id)
            if item.price.is_metered or (spec is not None and spec.quantity == item.quantity):
                continue
            lines.append(
                proration_line(
                    price=item.price,
                    quantity=item.quantity,
                    credit=True,
                    change_date=as_of,
                    period_start=full_start,
                    period_end=end,
                    subscription_item_id=item.pk,
                )
            )
        for price_id, spec in new.items():
            current = old.get(price_id)
            if spec.price.is_metered or (current is not None and current.quantity == spec.quantity):
                continue
            lines.append(
                proration_line(
                    price=spec.price,
                    quantity=spec.quantity,
                    credit=False,
                    change_date=as_of,
                    period_start=full_start,
                    period_end=end,
                    subscription_item_id=current.pk if current is not None else None,
                )
            )
    preview = ChangePreview(lines=lines, change_date=as_of, period_start=start, period_end=end, prorated=prorated)
    return preview, old


def subscription_change_preview(
    *,
    subscription: Subscription,
    items: list[ItemSpec],
    as_of: dt.date,
    proration_behavior: ProrationBehavior = ProrationBehavior.CREATE_PRORATIONS,
) -> ChangePreview:
    """The exact proration lines ``subscription_change`` would create with the same arguments; writes nothing."""
    preview, _ = _change_lines(subscription, items, as_of, ProrationBehavior(proration_behavior))
    return preview


@transaction.atomic
def subscription_change(
    *,
    subscription: Subscription,
    items: list[ItemSpec],
    as_of: dt.date,
    proration_behavior: ProrationBehavior = ProrationBehavior.CREATE_PRORATIONS,
    actor: Actor = None,
    reason: str = "",
) -> ChangeResult:
    """Replace the subscription's items by ``items`` (quantity up/down, price switch, upgrade, downgrade) on
    ``as_of``. Prorations credit the unused time of the old items and charge the remaining time of the new ones;
    they become pending invoice items: billed with the next invoice (default) or, with ``always_invoice``,
    returned by ``charges.change_invoice_now_charges`` for an immediate invoice. ``none`` prorates nothing.

    Prices of another interval (monthly → yearly; every item must then have it): the cycle is re-anchored on
    ``as_of`` and the new period is due that day — the unused time of the old items is credited (unless
    ``none``) on that period's invoice, which invoicing issues at once whatever the proration behaviour
    (``invoicing.subscription_billing``; the event's payload carries ``interval_changed_on``)."""
    behavior = ProrationBehavior(proration_behavior)
    subscription = _locked(subscription)
    preview, old = _change_lines(subscription, items, as_of, behavior)
    restart = preview.interval_change and subscription.status != Status.TRIALING
    new_item_by_price: dict[int, SubscriptionItem] = {}
    for price_id, item in old.items():
        if price_id not in {spec.price.pk for spec in items}:
            item.removed_on = as_of
            item.save(update_fields=["removed_on"])
    for spec in items:
        current = old.get(spec.price.pk)
        if current is None:
            new_item_by_price[spec.price.pk] = SubscriptionItem.objects.create(
                subscription=subscription, price=spec.price, quantity=spec.quantity
            )
        elif current.quantity != spec.quantity:
            current.quantity = spec.quantity
            current.save(update_fields=["quantity"])
    # An interval change's credit is billed by the new period's own invoice (due today), not by a separate one.
    invoice_now = behavior == ProrationBehavior.ALWAYS_INVOICE and not preview.interval_change
    pending = [
        PendingInvoiceItem(
            subscription=subscription,
            subscription_item_id=line.subscription_item_id
            or (new_item_by_price[line.price_id].pk if line.price_id in new_item_by_price else None),
            price_id=line.price_id,
            description=line.description,
            quantity=line.quantity,
            unit_amount=line.unit_amount,  # type: ignore[misc]
            amount=line.amount,  # type: ignore[misc]
            period_start=line.period_start,
            period_end=line.period_end,
            kind=line.kind,
            proration=True,
            tax_behavior=line.tax_behavior,
            effective_on=as_of,
            invoice_now=invoice_now,
        )
        for line in preview.lines
    ]
    created = PendingInvoiceItem.objects.bulk_create(pending)
    summary = ", ".join(f"{spec.price.display_name} × {spec.quantity}" for spec in items)
    extra: dict[str, Any] = {}
    if preview.interval_change:
        new_price = items[0].price
        assert preview.new_period_start is not None and preview.new_period_end is not None
        cycle: dict[str, Any] = {
            "interval": new_price.interval,
            "interval_count": new_price.interval_count,
            "interval_changes": F("interval_changes") + 1,
        }
        if restart:
            cycle.update(
                billing_cycle_anchor=as_of,
                current_period_start=preview.new_period_start,
                current_period_end=preview.new_period_end,
                next_billing_date=as_of,
            )
            extra["interval_changed_on"] = as_of.isoformat()
        Subscription.objects.filter(pk=subscription.pk).update(**cycle)
        subscription.refresh_from_db()
        summary += (
            f"; billed every {new_price.interval_label} from {format_day(preview.new_period_start)}"
            if restart
            else f"; billed every {new_price.interval_label} after the trial"
        )
    _noted(
        subscription,
        actor=actor,
        reason=f"plan changed on {as_of} to {summary} ({behavior.value}){': ' + reason if reason else ''}",
        extra=extra,
    )
    subscription.updated_at = timezone.now()
    subscription.save(update_fields=["updated_at"])
    return ChangeResult(
        subscription=subscription,
        lines=preview.lines,
        pending_item_ids=[p.pk for p in created],
        invoice_now=invoice_now,
        restarted_on=as_of if restart else None,
    )


# --- Trial, cancel, pause, resume, past due -------------------------------------------------------------


@transaction.atomic
def subscription_end_trial(*, subscription: Subscription, as_of: dt.date, actor: Actor = None) -> Subscription:
    """End a trial early on ``as_of``: the first paid period starts that day and is billed at once."""
    subscription = _locked(subscription)
    if subscription.status != Status.TRIALING or subscription.trial_end is None:
        raise InvalidTransition("only a trialing subscription can end its trial")
    if not subscription.start_date <= as_of < subscription.trial_end:
        raise SubscriptionError(f"the trial runs {subscription.start_date} – {subscription.trial_end}")
    end = add_interval(as_of, subscription.interval, subscription.interval_count, 1)
    return _transition(
        subscription,
        to=Status.ACTIVE,
        actor=actor,
        reason=f"trial ended early on {as_of}",
        trial_end=as_of,
        billing_cycle_anchor=as_of,
        current_period_start=as_of,
        current_period_end=end,
        next_billing_date=as_of,
        usage_open_from=as_of,
    )


@transaction.atomic
def subscription_cancel(
    *,
    subscription: Subscription,
    as_of: dt.date,
    at_period_end: bool = False,
    prorate_credit: bool = False,
    actor: Actor = None,
    reason: str = "",
    cancellation_reason: str = "",
    cancellation_comment: str = "",
) -> Subscription:
    """Cancel at the end of the current period (billing stops there; status becomes ``ended``) or now.

    Cancel now: status ``canceled`` on ``as_of``; the final invoice (at ``as_of``) bills the usage so far and,
    with ``prorate_credit``, credits the unused time of the already billed period, like a change to nothing.

    ``cancellation_reason`` (a ``CancellationReason``) and ``cancellation_comment`` are the customer's answer to
    "why" (the portal asks); they are stored on the subscription for staff, and cleared by an undo."""
    if cancellation_reason and cancellation_reason not in CancellationReason.values:
        raise InvalidInput(f"'{cancellation_reason}' is not a cancellation reason", field="cancellation_reason")
    cancellation_comment = cancellation_comment.strip()
    if len(cancellation_comment) > CANCELLATION_COMMENT_MAX:
        raise InvalidInput(
            f"the comment is longer than {CANCELLATION_COMMENT_MAX} characters", field="cancellation_comment"
        )
    subscription = _locked(subscription)
    why = f": {reason}" if reason else ""
    if at_period_end:
        if subscription.status not in (Status.TRIALING, Status.ACTIVE, Status.PAST_DUE):
            raise InvalidTransition(f"a {subscription.status} subscription cannot be canceled at period end")
        if subscription.cancel_at_period_end:
            return subscription
        Subscription.objects.filter(pk=subscription.pk).update(
            cancel_at_period_end=True,
            canceled_at=timezone.now(),
            updated_at=timezone.now(),
            cancellation_reason=cancellation_reason,
            cancellation_comment=cancellation_comment,
        )
        _noted(
            subscription, actor=actor, reason=f"cancel at period end ({subscription.current_period_end}) requested{why}"
        )
        subscription.refresh_from_db()
        return subscription
    if Status.CANCELED not in ALLOWED_TRANSITIONS[subscription.status]:
        raise InvalidTransition(f"a {subscription.status} subscription cannot be canceled")
    start, end = subscription.current_period_start, subscription.current_period_end
    if as_of < start or (as_of >= end and subscription.status != Status.PAUSED):
        raise SubscriptionError(f"cancel within the current period {start} – {end}; bill the due periods first")
    billed = subscription.next_billing_date == end and subscription.status != Status.TRIALING
    if prorate_credit and billed and as_of < end:
        full_start = _full_period_start(subscription)
        credits = []
        for item in subscription.items.filter(removed_on__isnull=True).select_related("price"):
            if item.price.is_metered:
                continue
            line = proration_line(
                price=item.price,
                quantity=item.quantity,
                credit=True,
                change_date=as_of,
                period_start=full_start,
                period_end=end,
                subscription_item_id=item.pk,
            )
            credits.append(
                PendingInvoiceItem(
                    subscription=subscription,
                    subscription_item_id=item.pk,
                    price_id=item.price_id,
                    description=line.description,
                    quantity=line.quantity,
                    unit_amount=line.unit_amount,  # type: ignore[misc]
                    amount=line.amount,  # type: ignore[misc]
                    period_start=line.period_start,
                    period_end=line.period_end,
                    kind=LineKind.PRORATION,
                    proration=True,
                    tax_behavior=line.tax_behavior,
                    effective_on=as_of,
                )
            )
        PendingInvoiceItem.objects.bulk_create(credits)
    return _transition(
        subscription,
        to=Status.CANCELED,
        actor=actor,
        reason=f"canceled on {as_of}{' with prorated credit' if prorate_credit else ''}{why}",
        canceled_at=timezone.now(),
        ended_at=as_of,
        cancel_at_period_end=False,
        next_billing_date=as_of,
        paused_at=None,
        # Canceled, its open invoices are collected again (a collection pause ends with the subscription).
        pause_mode="",
        resumes_on=None,
        # A reason given earlier (cancel at period end) stays unless this request gives one.
        **({"cancellation_reason": cancellation_reason} if cancellation_reason else {}),
        **({"cancellation_comment": cancellation_comment} if cancellation_comment else {}),
    )


@transaction.atomic
def subscription_cancel_undo(*, subscription: Subscription, actor: Actor = None, reason: str = "") -> Subscription:
    """Take back a "cancel at period end" that has not happened yet: the subscription renews as before."""
    subscription = _locked(subscription)
    if not subscription.cancel_at_period_end:
        raise InvalidTransition("the subscription is not set to cancel at period end")
    if subscription.status not in (Status.TRIALING, Status.ACTIVE, Status.PAST_DUE):
        raise InvalidTransition(f"a {subscription.status} subscription cannot be renewed")
    Subscription.objects.filter(pk=subscription.pk).update(
        cancel_at_period_end=False,
        canceled_at=None,
        updated_at=timezone.now(),
        cancellation_reason="",
        cancellation_comment="",
    )
    _noted(subscription, actor=actor, reason=f"cancel at period end taken back{': ' + reason if reason else ''}")
    subscription.refresh_from_db()
    return subscription


@transaction.atomic
def subscription_trial_extend(
    *, subscription: Subscription, trial_end: dt.date, as_of: dt.date, actor: Actor = None, reason: str = ""
) -> Subscription:
    """Move the end of a running trial later: nothing is billed until ``trial_end``, where the cycle is anchored
    (as a new subscription with that trial would be)."""
    subscription = _locked(subscription)
    if subscription.status != Status.TRIALING or subscription.trial_end is None:
        raise InvalidTransition("only a trialing subscription can have its trial extended")
    if trial_end <= subscription.trial_end or trial_end <= as_of:
        raise InvalidInput(
            f"the new trial end must be after the current one ({subscription.trial_end}) and after today",
            field="trial_end",
        )
    old_end = subscription.trial_end
    Subscription.objects.filter(pk=subscription.pk, status=Status.TRIALING).update(
        trial_end=trial_end,
        billing_cycle_anchor=trial_end,
        current_period_end=trial_end,
        next_billing_date=trial_end,
        usage_open_from=trial_end,
        updated_at=timezone.now(),
    )
    _noted(
        subscription,
        actor=actor,
        reason=f"trial extended from {old_end} to {trial_end}{': ' + reason if reason else ''}",
    )
    subscription.refresh_from_db()
    return subscription


@transaction.atomic
def subscription_pause(
    *,
    subscription: Subscription,
    as_of: dt.date,
    mode: str = PauseMode.BILLING,
    resumes_on: dt.date | None = None,
    actor: Actor = None,
    reason: str = "",
) -> Subscription:
    """Pause from ``as_of``, until ``subscription_resume`` or ``resumes_on`` (the billing run resumes it then).

    - ``billing``: status ``paused``, no invoices while paused. The period already billed runs to its end.
    - ``collection``: the status stays and invoices are still issued (and e-mailed), but none of this
      subscription's invoices is charged automatically (first charge or retry) and dunning sends them no
      reminder; customer credit still applies. On resume they are charged and chased as usual."""
    subscription = _locked(subscription)
    if mode not in PauseMode.values:
        raise InvalidInput(f"unknown pause mode {mode!r}", field="mode")
    if resumes_on is not None and resumes_on <= as_of:
        raise InvalidInput(f"the resume date must be after the pause date ({as_of})", field="resumes_on")
    why = f": {reason}" if reason else ""
    until = f" until {resumes_on}" if resumes_on else ""
    if subscription.pause_mode == PauseMode.COLLECTION:
        raise InvalidTransition("collection is paused already; resume it first")
    if mode == PauseMode.BILLING:
        return _transition(
            subscription,
            to=Status.PAUSED,
            actor=actor,
            reason=f"billing paused on {as_of}{until}{why}",
            paused_at=as_of,
            pause_mode=PauseMode.BILLING,
            resumes_on=resumes_on,
        )
    if subscription.status not in (Status.TRIALING, Status.ACTIVE, Status.PAST_DUE):
        raise InvalidTransition(f"a {subscription.status} subscription cannot pause its collection")
    Subscription.objects.filter(pk=subscription.pk).update(
        pause_mode=PauseMode.COLLECTION, paused_at=as_of, resumes_on=resumes_on, updated_at=timezone.now()
    )
    _noted(
        subscription,
        actor=actor,
        reason=f"collection paused on {as_of}{until}{why}",
        extra={"pause_mode": PauseMode.COLLECTION},
    )
    subscription.refresh_from_db()
    return subscription


@transaction.atomic
def subscription_resume(
    *, subscription: Subscription, as_of: dt.date, actor: Actor = None, reason: str = ""
) -> Subscription:
    """End a pause on ``as_of``.

    Billing paused: back within the period already billed, nothing else changes. Later: the periods in between
    are not billed; the cycle re-anchors on ``as_of`` and the new period is billed that day (with any usage not
    billed yet). Collection paused: the subscription's open invoices are charged (charge automatically) and
    chased again — the payload's ``collection_resumed`` tells payments to charge them now."""
    subscription = _locked(subscription)
    why = f": {reason}" if reason else ""
    if subscription.pause_mode == PauseMode.COLLECTION:
        Subscription.objects.filter(pk=subscription.pk).update(
            pause_mode="", paused_at=None, resumes_on=None, updated_at=timezone.now()
        )
        _noted(
            subscription,
            actor=actor,
            reason=f"collection resumed on {as_of}{why}",
            extra={"collection_resumed": as_of.isoformat()},
        )
        subscription.refresh_from_db()
        return subscription
    if subscription.status != Status.PAUSED:
        raise InvalidTransition(f"a {subscription.status} subscription is not paused")
    changes: dict[str, Any] = {"paused_at": None, "pause_mode": "", "resumes_on": None}
    if as_of >= subscription.current_period_end:
        changes.update(
            billing_cycle_anchor=as_of,
            current_period_start=as_of,
            current_period_end=add_interval(as_of, subscription.interval, subscription.interval_count, 1),
            next_billing_date=as_of,
        )
    return _transition(
        subscription,
        to=Status.ACTIVE,
        actor=actor,
        reason=f"resumed on {as_of}{why}",
        **changes,
    )


def subscriptions_resume_due(*, as_of: dt.date, actor: Actor = None) -> list[int]:
    """Resume every pause whose ``resumes_on`` has come (on or before ``as_of``), each on its resume date, each
    in its own transaction; the billing run calls it first, so a subscription back on its billing day is billed
    that day. Command: ``resume_subscriptions --as-of DATE``. Returns the ids resumed."""
    resumed = []
    due = Subscription.objects.filter(resumes_on__lte=as_of).exclude(pause_mode="").order_by("pk")
    for subscription_id, resumes_on in due.values_list("pk", "resumes_on"):
        subscription = Subscription.objects.get(pk=subscription_id)
        assert resumes_on is not None
        try:
            subscription_resume(subscription=subscription, as_of=resumes_on, actor=actor, reason="resume date reached")
        except SubscriptionError:  # changed meanwhile (resumed or canceled by hand): nothing to resume
            continue
        resumed.append(subscription_id)
    return resumed


@transaction.atomic
def subscription_collection_update(
    *,
    subscription: Subscription,
    collection_method: str,
    days_until_due: int | None,
    actor: Actor = None,
    reason: str = "",
) -> Subscription:
    """Change how the subscription's next invoices are collected: charge automatically or send invoice, and the
    days until due (None: the customer's terms). Invoices already issued keep their due dates."""
    subscription = _locked(subscription)
    if collection_method not in CollectionMethod.values:
        raise InvalidInput(f"unknown collection method {collection_method!r}", field="collection_method")
    if days_until_due is not None and not 0 <= days_until_due <= 365:
        raise InvalidInput("days until due must be between 0 and 365", field="days_until_due")
    if (subscription.collection_method, subscription.days_until_due) == (collection_method, days_until_due):
        return subscription
    old_method, old_days = subscription.get_collection_method_display(), subscription.days_until_due
    Subscription.objects.filter(pk=subscription.pk).update(
        collection_method=collection_method, days_until_due=days_until_due, updated_at=timezone.now()
    )
    subscription.refresh_from_db()

    def terms(days: int | None) -> str:
        return "customer's terms" if days is None else f"{days} days"

    _noted(
        subscription,
        actor=actor,
        reason=f"collection changed: {old_method}, due in {terms(old_days)} → "
        f"{subscription.get_collection_method_display()}, due in {terms(days_until_due)}"
        f"{': ' + reason if reason else ''}",
    )
    return subscription


@transaction.atomic
def subscription_commitments_update(
    *,
    subscription: Subscription,
    minimum_commitment: Decimal | None,
    usage_thresholds: Sequence[Decimal | str | int],
    actor: Actor = None,
) -> Subscription:
    """Set the minimum spend per period and the progressive-billing thresholds (docs/decisions/commitments.md),
    in the subscription's currency. They take effect from the next invoice that bills a period's usage; threshold
    invoices issued already stay and are deducted as before."""
    subscription = _locked(subscription)
    currency = subscription.currency
    if minimum_commitment is not None:
        if isinstance(minimum_commitment, float):
            raise InvalidInput("the minimum commitment must be a decimal amount", field="minimum_commitment")
        problem = amount_limit_problem(Decimal(minimum_commitment), currency)
        if problem:
            raise InvalidInput(problem, field="minimum_commitment")
        if Decimal(minimum_commitment) <= 0:
            raise InvalidInput(
                "the minimum commitment must be more than zero (empty: none)", field="minimum_commitment"
            )
        if round_amount(Decimal(minimum_commitment), currency) != Decimal(minimum_commitment):
            raise InvalidInput(
                f"the minimum commitment has more decimals than {currency} allows", field="minimum_commitment"
            )
    thresholds: list[Decimal] = []
    for value in usage_thresholds:
        if isinstance(value, float):
            raise InvalidInput("thresholds must be decimal amounts", field="usage_thresholds")
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            raise InvalidInput(f"{value!r} is not an amount", field="usage_thresholds") from None
        problem = amount_limit_problem(amount, currency)
        if problem:
            raise InvalidInput(problem, field="usage_thresholds")
        if amount <= 0:
            raise InvalidInput("every threshold must be more than zero", field="usage_thresholds")
        thresholds.append(amount)
    stored = [f"{amount:f}" for amount in usage_thresholds_parse(thresholds, currency)]
    old = (subscription.minimum_commitment, list(subscription.usage_thresholds or []))
    if (old[0], old[1]) == (minimum_commitment, stored):
        return subscription
    Subscription.objects.filter(pk=subscription.pk).update(
        minimum_commitment=minimum_commitment, usage_thresholds=stored, updated_at=timezone.now()
    )
    subscription.refresh_from_db()
    commitment = f"{minimum_commitment:f} {currency}" if minimum_commitment is not None else "none"
    _noted(
        subscription,
        actor=actor,
        reason=f"commitment changed: minimum {commitment}, usage thresholds {', '.join(stored) or 'none'}",
    )
    return subscription


def progressive_billing_record(
    *, accrual: PeriodAccrual, threshold: Decimal, invoice_id: int | None, billed_on: dt.date
) -> ProgressiveBilling:
    """Record a threshold invoice, in the transaction that issues it (the subscription row locked by the caller):
    the window's usage lines billed so far, which the period's invoice will deduct. Unique per subscription,
    window and threshold: a second one raises ``IntegrityError`` and rolls the invoice back with it."""
    return ProgressiveBilling.objects.create(
        subscription_id=accrual.subscription_id,
        period_start=accrual.window_start,
        threshold=threshold,
        billed_on=billed_on,
        amount=accrual.usage_amount,
        currency=accrual.currency,
        lines=[charge_line_record(line) for line in accrual.usage_lines],
        invoice_id=invoice_id,
    )


@transaction.atomic
def subscription_mark_past_due(*, subscription: Subscription, actor: Actor = None, reason: str = "") -> Subscription:
    """For invoicing/dunning: an invoice of this subscription is overdue."""
    return _transition(_locked(subscription), to=Status.PAST_DUE, actor=actor, reason=reason or "invoice overdue")


@transaction.atomic
def subscription_mark_paid_up(*, subscription: Subscription, actor: Actor = None, reason: str = "") -> Subscription:
    """For payments: the overdue invoices are paid."""
    return _transition(_locked(subscription), to=Status.ACTIVE, actor=actor, reason=reason or "overdue invoices paid")


# --- Coupons and discounts ------------------------------------------------------------------------------


def coupon_problem(*, coupon: Coupon, as_of: dt.date, currency: str, product_ids: set[int]) -> None:
    """Raise ``CouponNotRedeemable`` / ``CurrencyMismatch`` (field ``coupon``) if ``coupon`` cannot be redeemed on
    ``as_of`` for prices of ``product_ids`` in ``currency``: inactive, past its redeem-by date, redeemed as often
    as it may be, an amount in another currency, or limited to products none of the items is."""
    if not coupon.active:
        raise CouponNotRedeemable(f"coupon {coupon.code} is not active", field="coupon")
    if coupon.redeem_by is not None and as_of > coupon.redeem_by:
        raise CouponNotRedeemable(
            f"coupon {coupon.code} has expired: it could be redeemed until {coupon.redeem_by}", field="coupon"
        )
    if coupon.max_redemptions is not None and coupon.times_redeemed >= coupon.max_redemptions:
        raise CouponNotRedeemable(
            f"coupon {coupon.code} has reached its redemption limit: redeemed {coupon.max_redemptions} times already",
            field="coupon",
        )
    if coupon.amount_off is not None and str(coupon.amount_off.currency.code) != currency:
        raise CurrencyMismatch(
            f"coupon {coupon.code} is an amount in {coupon.amount_off.currency.code}, not {currency}", field="coupon"
        )
    allowed = {product.pk: product.name for product in coupon.products.all()}
    if allowed and product_ids and not set(allowed) & product_ids:
        names = ", ".join(sorted(allowed.values()))
        raise CouponNotRedeemable(
            f"coupon {coupon.code} is not valid for these products: it applies to {names}", field="coupon"
        )


@transaction.atomic
def discount_create(
    *,
    coupon: Coupon,
    as_of: dt.date,
    subscription: Subscription | None = None,
    customer: Customer | None = None,
    end: dt.date | None = None,
    actor: Actor = None,
) -> Discount:
    """Redeem ``coupon`` for one subscription or for a customer (all their subscriptions) from ``as_of``, after
    the checks of ``coupon_problem`` (the coupon row locked, so the redemption limit holds under concurrency).

    A customer-wide discount must be ``forever`` (optionally until ``end``): a once / repeating coupon counts
    billed periods, which only a single subscription has."""
    if (subscription is None) == (customer is None):
        raise SubscriptionError("a discount applies to a subscription or to a customer, not both")
    coupon = Coupon.objects.select_for_update().get(pk=coupon.pk)
    if subscription is not None:
        currency = subscription.currency
        product_ids = set(
            subscription.items.filter(removed_on__isnull=True).values_list("price__product_id", flat=True)
        )
    else:
        assert customer is not None
        currency, product_ids = customer.currency, set()
    coupon_problem(coupon=coupon, as_of=as_of, currency=currency, product_ids=product_ids)
    if customer is not None and coupon.duration != CouponDuration.FOREVER:
        raise SubscriptionError(
            "a customer-wide discount needs a 'forever' coupon; apply it to a subscription", field="coupon"
        )
    if subscription is not None and subscription.status in (Status.CANCELED, Status.ENDED):
        raise SubscriptionError("the subscription has ended", field="subscription")
    if end is not None and end <= as_of:
        raise InvalidInput("the discount must end after it starts", field="end")
    discount = Discount.objects.create(
        coupon=coupon, subscription=subscription, customer=customer, start=as_of, end=end
    )
    Coupon.objects.filter(pk=coupon.pk).update(times_redeemed=F("times_redeemed") + 1)
    if subscription is not None:
        _noted(subscription, actor=actor, reason=f"coupon {coupon.code} applied from {as_of}")
    return discount


@transaction.atomic
def discount_remove(*, discount: Discount, as_of: dt.date, actor: Actor = None) -> Discount | None:
    """Stop a discount from ``as_of`` on: invoices at a billing date on or after it get no discount from it. A
    discount that starts on or after ``as_of`` and never applied is deleted (returns None); one that applied to
    a period keeps its row, ended. The redemption is not given back to the coupon."""
    discount = Discount.objects.select_for_update().select_related("coupon").get(pk=discount.pk)
    if discount.end is not None and discount.end <= as_of:
        raise NotAllowed(f"the discount {discount.coupon.code} ended on {discount.end} already", field="discount")
    subscription = discount.subscription
    code = discount.coupon.code
    if discount.start >= as_of and discount.periods_applied == 0:
        discount.delete()
        result = None
    else:
        discount.end = max(as_of, discount.start + dt.timedelta(days=1))
        discount.save(update_fields=["end"])
        result = discount
    if subscription is not None:
        _noted(subscription, actor=actor, reason=f"coupon {code} removed from {as_of}")
    return result


def price_archive(*, price: Price) -> Price:
    """Prices are never edited once used: archive, then create the replacement."""
    if price.active:
        price.active = False
        price.save(update_fields=["active"])
    return price


# --- Usage ----------------------------------------------------------------------------------------------


# UsageEvent.value is numeric(19, 6): PostgreSQL rounds extra decimals away without a word (0.0000001 was stored
# as 0) and refuses 10^13 and more with a database error (1e30 crashed the import). Both are refused by name.
USAGE_QUANTITY_DECIMALS = 6
USAGE_QUANTITY_LIMIT = Decimal(10) ** 13


def usage_quantity_problem(quantity: Decimal) -> str | None:
    """Why the column cannot hold ``quantity`` exactly, or None."""
    if not quantity.is_finite() or quantity < 0:
        return "not a non-negative number"
    if quantity >= USAGE_QUANTITY_LIMIT:
        return f"too large: {quantity} (at most 9999999999999.999999)"
    if quantity != quantity.quantize(Decimal(1).scaleb(-USAGE_QUANTITY_DECIMALS), rounding=ROUND_DOWN):
        return f"more than {USAGE_QUANTITY_DECIMALS} decimal places: {quantity} would be stored rounded"
    return None


class _UsageTerms(NamedTuple):
    """What a usage check reads of a subscription (``_usage_billing_date``): the import reads thousands at a time,
    as rows, not model instances (a model instance cost as much as the rest of a chunk's look-ups)."""

    pk: int
    customer_id: int
    status: str
    start_date: dt.date
    trial_end: dt.date | None
    ended_at: dt.date | None
    next_billing_date: dt.date | None
    usage_open_from: dt.date


def _usage_billing_date(
    *, item_id: int, removed_on: dt.date | None, subscription: Subscription | _UsageTerms, usage_date: dt.date
) -> dt.date:
    """Whether a usage date can be billed on ``item`` (raises ``UsageRejected`` naming why not), and on which
    date: the usage date, or the first open date when that period was already invoiced (late usage)."""
    if subscription.next_billing_date is None or subscription.status == Status.ENDED:
        raise UsageRejected(f"subscription #{subscription.pk} has ended; its usage can no longer be billed")
    if subscription.status == Status.CANCELED and subscription.ended_at and usage_date >= subscription.ended_at:
        raise UsageRejected(f"subscription #{subscription.pk} was canceled on {subscription.ended_at}")
    if usage_date < subscription.start_date:
        raise UsageRejected(f"the usage date {usage_date} is before the subscription started")
    if removed_on is not None and (usage_date >= removed_on or removed_on <= subscription.usage_open_from):
        raise UsageRejected(f"item #{item_id} was removed on {removed_on}")
    if subscription.trial_end is not None and usage_date < subscription.trial_end:
        return usage_date  # trial usage is free: before usage_open_from, never billed
    # Usage of a period already invoiced (late) goes to the first open period, never lost: the next invoice
    # bills it as an adjustment line (subscriptions.usage, docs/decisions/usage-events.md).
    return max(usage_date, subscription.usage_open_from)


def _usage_record(
    *, item: SubscriptionItem, subscription: Subscription, quantity: Decimal, timestamp: dt.datetime, key: str
) -> UsageEvent:
    """Validate one usage quantity recorded on an item against its (locked) subscription: an event of the
    item's metric carrying the quantity in the metric's property."""
    price = item.price
    if not price.is_metered:
        raise UsageRejected(f"item #{item.pk} ({price.display_name}) is not metered")
    metric = price.metric
    if metric is not None and not metric.numeric:
        raise UsageRejected(
            f"item #{item.pk} bills the metric '{metric.code}' ({metric.get_aggregation_display().lower()}): "
            "send its usage as events, not as a quantity"
        )
    if isinstance(quantity, float):
        raise UsageRejected("the quantity must be a non-negative Decimal")
    problem = usage_quantity_problem(quantity)
    if problem:
        raise UsageRejected(f"quantity: {problem}")
    if not key or len(key) > 200:
        raise UsageRejected("an idempotency key of 1–200 characters is required")
    if timezone.is_naive(timestamp):
        raise UsageRejected("the timestamp needs a time zone")
    usage_date = billing_date_of(timestamp)
    billing_date = _usage_billing_date(
        item_id=item.pk, removed_on=item.removed_on, subscription=subscription, usage_date=usage_date
    )
    return UsageEvent(
        transaction_id=key,
        customer_id=subscription.customer_id,
        subscription_item=item,
        metric=metric,
        value=quantity,
        properties={metric.field_name: str(quantity)} if metric is not None else {},
        timestamp=timestamp,
        usage_date=usage_date,
        billing_date=billing_date,
    )


def _same_record(existing: UsageEvent, item_id: int, quantity: Decimal, timestamp: dt.datetime) -> bool:
    return existing.subscription_item_id == item_id and existing.value == quantity and existing.timestamp == timestamp


def usage_record_create(
    *, subscription_item: SubscriptionItem, quantity: Decimal, timestamp: dt.datetime, idempotency_key: str
) -> tuple[UsageEvent, bool]:
    """Record a usage quantity on a metered item (staff, the usage CSV) as one usage event whose transaction id
    is ``idempotency_key``. A re-sent record (same key, same values) returns the stored one and ``False``; the
    same key with other values is refused (``IdempotencyConflict``).

    Takes the subscription row lock so that a billing run (which locks it too) sees the record wholly before or
    wholly after its plan."""
    quantity = Decimal(quantity)
    existing = UsageEvent.objects.filter(transaction_id=idempotency_key).first()
    if existing is not None:
        if _same_record(existing, subscription_item.pk, quantity, timestamp):
            return existing, False
        raise IdempotencyConflict(f"idempotency key '{idempotency_key}' was used for another record")
    try:
        with transaction.atomic():
            subscription = Subscription.objects.select_for_update(no_key=True).get(pk=subscription_item.subscription_id)
            item = SubscriptionItem.objects.select_related("price__metric").get(pk=subscription_item.pk)
            record = _usage_record(
                item=item, subscription=subscription, quantity=quantity, timestamp=timestamp, key=idempotency_key
            )
            record.save()
            return record, True
    except IntegrityError:
        existing = UsageEvent.objects.filter(transaction_id=idempotency_key).first()
        if existing is not None and _same_record(existing, subscription_item.pk, quantity, timestamp):
            return existing, False
        raise


USAGE_COLUMNS = ("subscription_item_id", "quantity", "timestamp", "idempotency_key")
MAX_IMPORT_BYTES = 50 * 1024 * 1024


UsageImportRowError = RowError


@dataclass(kw_only=True)
class UsageImportReport(imports.ImportReport):
    counters = ("created", "duplicates")

    created: int = 0
    duplicates: int = 0  # re-sent records (same key and values), ignored

    def outcome(self) -> str:
        verb = "Dry run: would record" if self.dry_run else "Recorded"
        return f"{verb} {self.created} usage record(s); ignored {self.duplicates} already recorded."


class UsageImportError(imports.DataImportError):
    report: UsageImportReport


def _parse_timestamp(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return moment.replace(tzinfo=billing_tz()) if timezone.is_naive(moment) else moment


def usage_import_csv(*, stream: IO[bytes] | IO[str], dry_run: bool = False) -> UsageImportReport:
    """Import usage records from CSV (columns: subscription_item_id, quantity, timestamp, idempotency_key), all
    or nothing. Timestamps are ISO 8601; without an offset they are read in BILLING_TIMEZONE. Rows already
    recorded (same key and values) are ignored, so a re-sent file is harmless. Raises ``UsageImportError``
    carrying a report that names each bad row and column."""
    report = UsageImportReport(dry_run=dry_run)
    try:
        header, all_rows = read_csv(stream, max_bytes=MAX_IMPORT_BYTES)
    except (ValueError, csv.Error) as exc:
        report.errors.append(UsageImportRowError(1, "(file)", str(exc)))
        raise UsageImportError(report) from exc
    for column in header:
        if column not in USAGE_COLUMNS:
            report.errors.append(UsageImportRowError(1, column, "unknown column"))
    for column in USAGE_COLUMNS:
        if column not in header:
            report.errors.append(UsageImportRowError(1, column, "required column is missing"))
    report.rows = len(all_rows)
    rows = all_rows if not report.errors else []
    if not rows and not report.errors:
        report.errors.append(UsageImportRowError(2, "(file)", "the file has no data rows"))
    if report.errors:
        raise UsageImportError(report)

    parsed: list[tuple[int, int, Decimal, dt.datetime, str]] = []
    seen_keys: dict[str, int] = {}
    for row in rows:
        line = row.row  # as a spreadsheet shows it: blank lines and quoted line breaks do not shift it
        values = {column: (row.get(column) or "").strip() for column in USAGE_COLUMNS}
        errors_before = len(report.errors)
        item_id = quantity = moment = None
        try:
            item_id = int(values["subscription_item_id"])
        except ValueError:
            report.errors.append(UsageImportRowError(line, "subscription_item_id", "not a whole number"))
        try:
            quantity = Decimal(values["quantity"])
        except InvalidOperation:
            report.errors.append(UsageImportRowError(line, "quantity", "not a non-negative number"))
        else:
            problem = usage_quantity_problem(quantity)
            if problem:
                report.errors.append(UsageImportRowError(line, "quantity", problem))
        try:
            moment = _parse_timestamp(values["timestamp"])
        except ValueError:
            report.errors.append(UsageImportRowError(line, "timestamp", "not an ISO 8601 date and time"))
        key = values["idempotency_key"]
        if not key or len(key) > 200:
            report.errors.append(UsageImportRowError(line, "idempotency_key", "required, at most 200 characters"))
        elif key in seen_keys:
            report.errors.append(
                UsageImportRowError(line, "idempotency_key", f"duplicate of row {seen_keys[key]} in this file")
            )
        else:
            seen_keys[key] = line
        if len(report.errors) == errors_before:
            assert item_id is not None and quantity is not None and moment is not None
            parsed.append((line, item_id, quantity, moment, key))

    with transaction.atomic():
        items = {
            item.pk: item
            for item in SubscriptionItem.objects.filter(pk__in={p[1] for p in parsed}).select_related("price__metric")
        }
        # Lock the subscriptions in id order (docs/STYLE.md: fixed lock order), like usage_record_create does one.
        subscriptions = {
            sub.pk: sub
            for sub in Subscription.objects.select_for_update(no_key=True)
            .filter(pk__in={item.subscription_id for item in items.values()})
            .order_by("pk")
        }
        existing = {
            record.transaction_id: record
            for record in UsageEvent.objects.filter(transaction_id__in=[p[4] for p in parsed])
        }
        new_records: list[UsageEvent] = []
        for line, item_id, quantity, moment, key in parsed:
            item = items.get(item_id)
            if item is None:
                report.errors.append(UsageImportRowError(line, "subscription_item_id", f"no item #{item_id}"))
                continue
            if key in existing:
                if _same_record(existing[key], item_id, quantity, moment):
                    report.duplicates += 1
                else:
                    report.errors.append(
                        UsageImportRowError(line, "idempotency_key", "already used for another record")
                    )
                continue
            try:
                new_records.append(
                    _usage_record(
                        item=item,
                        subscription=subscriptions[item.subscription_id],
                        quantity=quantity,
                        timestamp=moment,
                        key=key,
                    )
                )
            except UsageRejected as exc:
                column = "timestamp" if "date" in str(exc) or "canceled" in str(exc) else "subscription_item_id"
                report.errors.append(UsageImportRowError(line, column, str(exc)))
        report.errors.sort(key=lambda e: e.row)
        if report.errors:
            transaction.set_rollback(True)
            raise UsageImportError(report)
        report.created = len(new_records)
        if not dry_run:
            UsageEvent.objects.bulk_create(new_records, batch_size=1000)
    return report


# --- Billing run: commit plans --------------------------------------------------------------------------

_PLAN_FIELDS = (
    "current_period_start",
    "current_period_end",
    "next_billing_date",
    "usage_open_from",
    "status",
    "ended_at",
    "period_recurring_net",
    "updated_at",
)


def plans_commit(*, plans: list[BillingPlan], actor: Actor = None, locked: bool = False) -> list[int]:
    """Apply the plans' advancement in bulk, in the caller's transaction (the one that writes the invoices).

    Guarded: a subscription advances only while its current period start, next billing date and status are
    still those the plan was computed from, so a period is advanced once even if two runs overlap. Returns the
    ids that were advanced; a planned id missing from it was changed meanwhile (roll back its invoice).
    A fixed number of queries: lock+read subscriptions and pending items, update, events, discounts, pending."""
    if not plans:
        return []
    by_id = {plan.subscription_id: plan for plan in plans}
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        # locked: the caller planned under FOR UPDATE in this very transaction (plans_for_chunk(lock=True)), so
        # the rows cannot have changed since and the guard holds without reading them again.
        advanced = list(by_id) if locked else _unchanged_since_planned(by_id)
        if not advanced:
            return []
        _apply_plans(by_id, advanced, actor=actor, now=now)
    return advanced


def _advance_postgresql(rows: list[tuple[Any, ...]], *, now: Any) -> None:
    """One UPDATE … FROM unnest(arrays) for the whole chunk. ``bulk_update`` builds a CASE WHEN per row and
    field — half the time of a 1,000-subscription chunk went into compiling it."""
    columns = list(zip(*rows, strict=True))
    table = Subscription._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE {table} AS s SET current_period_start = v.start, current_period_end = v.end_,
                   next_billing_date = v.next_billing, usage_open_from = v.usage_from, status = v.status,
                   ended_at = v.ended, period_recurring_net = v.recurring_net, updated_at = %s
               FROM unnest(%s::bigint[], %s::date[], %s::date[], %s::date[], %s::date[], %s::varchar[], %s::date[],
                   %s::numeric[])
                   AS v(id, start, end_, next_billing, usage_from, status, ended, recurring_net)
               WHERE s.id = v.id""",  # noqa: S608 — the table name is ours, every value is a parameter
            [now, *(list(column) for column in columns)],
        )


def _unchanged_since_planned(by_id: dict[int, BillingPlan]) -> list[int]:
    current = (
        Subscription.objects.select_for_update()
        .filter(pk__in=list(by_id))
        .order_by("pk")
        .values_list("pk", "current_period_start", "next_billing_date", "status")
    )
    planned_pending = [item_id for plan in by_id.values() for item_id in plan.pending_item_ids]
    still_pending = set(
        PendingInvoiceItem.objects.select_for_update()
        .filter(pk__in=planned_pending, billed_at__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)
        if planned_pending
        else []
    )
    return [
        pk
        for pk, period_start, next_billing_date, status in current
        if (period_start, next_billing_date, status)
        == (by_id[pk].old_current_period_start, by_id[pk].old_next_billing_date, by_id[pk].old_status)
        # A pending line billed meanwhile ("invoice now") must not be billed twice.
        and all(item_id in still_pending for item_id in by_id[pk].pending_item_ids)
    ]


def _apply_plans(by_id: dict[int, BillingPlan], advanced: list[int], *, actor: Actor, now: Any) -> None:
    rows = [
        (
            pk,
            by_id[pk].new_current_period_start,
            by_id[pk].new_current_period_end,
            by_id[pk].new_next_billing_date,
            by_id[pk].new_usage_open_from,
            by_id[pk].new_status,
            by_id[pk].new_ended_at,
            by_id[pk].new_period_recurring_net,
        )
        for pk in advanced
    ]
    if connection.vendor == "postgresql":
        _advance_postgresql(rows, now=now)
    else:
        Subscription.objects.bulk_update(
            [
                Subscription(
                    pk=pk,
                    current_period_start=start,
                    current_period_end=end,
                    next_billing_date=next_billing,
                    usage_open_from=usage_from,
                    status=status,
                    ended_at=ended,
                    period_recurring_net=recurring_net,
                    updated_at=now,
                )
                for pk, start, end, next_billing, usage_from, status, ended, recurring_net in rows
            ],
            list(_PLAN_FIELDS),
        )
    events = [
        SubscriptionEvent(
            subscription_id=pk,
            from_status=by_id[pk].old_status,
            to_status=by_id[pk].new_status,
            actor=actor if isinstance(actor, User) else None,
            reason=by_id[pk].status_reason or "billing run",
        )
        for pk in advanced
        if by_id[pk].status_changes
    ]
    if events:
        SubscriptionEvent.objects.bulk_create(events)
    increments: dict[int, int] = defaultdict(int)
    for pk in advanced:
        for discount_id, periods in by_id[pk].discount_periods.items():
            increments[discount_id] += periods
    if increments:
        Discount.objects.filter(pk__in=list(increments)).update(
            periods_applied=F("periods_applied")
            + Case(*(When(pk=pk, then=Value(n)) for pk, n in increments.items()), default=Value(0))
        )
    pending_ids = [item_id for pk in advanced for item_id in by_id[pk].pending_item_ids]
    if pending_ids:
        PendingInvoiceItem.objects.filter(pk__in=pending_ids, billed_at__isnull=True).update(billed_at=now)


def pending_items_mark_billed(*, pending_item_ids: list[int]) -> list[int]:
    """Mark pending items billed by an "invoice now" invoice; returns those that were still unbilled (an id
    missing from the answer was billed by someone else: do not invoice it twice)."""
    with transaction.atomic():
        ids = list(
            PendingInvoiceItem.objects.select_for_update()
            .filter(pk__in=pending_item_ids, billed_at__isnull=True)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        PendingInvoiceItem.objects.filter(pk__in=ids).update(billed_at=timezone.now())
    return ids


# --- Usage events (API, import_usage_events) -------------------------------------------------------------


class UsageEventsRejected(InvalidInput, SubscriptionError):
    """A batch of events refused whole: ``errors`` lists (event index, field, message) for every bad event."""

    def __init__(self, errors: list[tuple[int, str, str]]) -> None:
        self.errors = errors
        index, field_name, message = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"events[{index}].{field_name}: {message}{more}", field=f"events[{index}].{field_name}")


@dataclass(frozen=True)
class UsageIngestResult:
    accepted: int  # events written now
    duplicates: int  # events whose transaction id was already stored (or repeated in the batch): ignored


def metric_filters_problem(filters: Any) -> str | None:
    """Why ``filters`` is not a metric's property filter (``{"region": ["eu", "us"]}``), or None."""
    if not isinstance(filters, dict):
        return 'an object of property → list of values, e.g. {"region": ["eu", "us"]}'
    for name, values in filters.items():
        if not re.match(METRIC_PROPERTY_RE, name):
            return f"'{name}' is not a property name (letters, digits, _ . -)"
        if not isinstance(values, list) or not values:
            return f"'{name}': a non-empty list of values"
        if any(not isinstance(value, str | int) or isinstance(value, bool) for value in values):
            return f"'{name}': values are strings or whole numbers"
    return None


def _event_value(metric: BillableMetric, properties: dict[str, Any]) -> tuple[Decimal, str | None]:
    """The number an event adds to its metric, or the problem with its properties (named by property)."""
    if metric.aggregation == Aggregation.COUNT:
        return Decimal(0), None
    raw = properties.get(metric.field_name)
    if raw is None:
        return Decimal(0), f"properties.{metric.field_name}: required by the metric '{metric.code}'"
    if not metric.numeric:  # unique count: any scalar that identifies something
        if isinstance(raw, dict | list | bool) or str(raw) == "":
            return Decimal(0), f"properties.{metric.field_name}: a non-empty string or number"
        return Decimal(0), None
    if isinstance(raw, bool) or not isinstance(raw, int | Decimal | str):
        return Decimal(0), f"properties.{metric.field_name}: not a number"
    try:
        value = Decimal(raw)
    except InvalidOperation:
        return Decimal(0), f"properties.{metric.field_name}: not a number"
    problem = usage_quantity_problem(value)
    if problem:
        return Decimal(0), f"properties.{metric.field_name}: {problem}"
    return value, None


class _Place(NamedTuple):
    """Where an event is stored: the same for every event of a (subscription, metric, usage date), so it is
    worked out — and written as COPY text — once, not per event (a tuple: made for many (customer, day) pairs
    of a large file, it costs a third of a frozen dataclass)."""

    customer: int
    item: int
    metric: int
    usage_date: dt.date
    billing_date: dt.date
    copy_head: str  # customer, item, metric, usage date, billing date as COPY text fields, each followed by a tab


# One row as stored: transaction id, value, properties (JSON), timestamp, and where (the rest of the columns).
_EventRow = tuple[str, Decimal, dict[str, Any], dt.datetime, _Place]


@dataclass(frozen=True, slots=True)
class _Target:
    """Whose usage of which metric an event is: resolved once per (customer or subscription, code) in an import."""

    metric: BillableMetric
    subscription: _UsageTerms
    field_name: str  # the event's field that named the subscription
    items: list[tuple[int, dt.date | None]]  # (item, removed on) of the subscription's prices billing the metric
    values: dict[Any, Decimal]  # the metric's property value -> the value stored (shared by the metric's targets)
    places: dict[dt.date, _Place | tuple[str, str]] = field(default_factory=dict)  # usage date -> where, or why not


# An event's target, or why it has none: (field, problem, the metric when known — its property is named first).
_TargetOrProblem = _Target | tuple[str, str, BillableMetric | None]


@dataclass
class _Lookups:
    """What the events of one transaction refer to — metrics, customers, the subscriptions that bill them (locked
    when first read, in id order, like every usage write: a billing run then sees the events wholly before or
    after its plan) and their items — read once per transaction and kept for its later batches: an import's
    chunks after the first mostly name customers already read, and then run no query at all. Kept only while
    the transaction lasts: the locks are what keep the subscriptions (and so their items, billing dates and
    places) as they were read."""

    metrics: dict[str, BillableMetric] = field(default_factory=dict)
    codes: set[str] = field(default_factory=set)  # looked up, found or not
    customer_ids: dict[str, int] = field(default_factory=dict)  # external id -> customer
    external_ids: set[str] = field(default_factory=set)  # looked up, found or not
    subscriptions: dict[int, _UsageTerms] = field(default_factory=dict)  # read and locked
    subscription_ids: set[int] = field(default_factory=set)  # named by events: looked up, found or not
    # (subscription, metric) -> items of that subscription's prices billing the metric, in id order
    items: dict[tuple[int, int], list[tuple[int, dt.date | None]]] = field(default_factory=lambda: defaultdict(list))
    # (customer, metric) -> the customer's running subscriptions billing the metric
    by_customer: dict[tuple[int, int], list[int]] = field(default_factory=lambda: defaultdict(list))
    values: dict[int, dict[Any, Decimal]] = field(default_factory=lambda: defaultdict(dict))  # metric -> value
    targets: dict[tuple[str, str | None, int | None], _TargetOrProblem] = field(default_factory=dict)

    def read(self, events: Sequence[UsageEventIn]) -> None:
        """Read (and lock) what ``events`` name that no earlier batch of the transaction did."""
        codes = {e.code for e in events} - self.codes
        external_ids = {e.external_customer_id for e in events if e.external_customer_id} - self.external_ids
        subscription_ids = {e.subscription_id for e in events if e.subscription_id} - self.subscription_ids
        if not codes and not external_ids and not subscription_ids:
            return
        # Thousands of customers in a chunk are common (a day's usage of every customer): the long lists go as one
        # parameter each (values_in), and the subscriptions are read as rows of the fields the checks read.
        new_metrics = list(BillableMetric.objects.filter(code__in=codes)) if codes else []
        self.metrics.update((m.code, m) for m in new_metrics)
        self.codes |= codes
        new_customers: dict[str, int] = {}
        if external_ids:
            new_customers = dict(
                Customer.objects.filter(values_in("external_id", external_ids))
                .order_by()
                .values_list("external_id", "pk")
            )
            self.customer_ids.update(new_customers)
            self.external_ids |= external_ids
        self.subscription_ids |= subscription_ids
        wanted = (values_in("customer_id", list(new_customers.values())) & Q(next_billing_date__isnull=False)) | (
            values_in("pk", list(subscription_ids - set(self.subscriptions)))
        )
        new_subscriptions = {
            row[0]: _UsageTerms._make(row)
            for row in Subscription.objects.select_for_update(no_key=True)
            .filter(wanted)
            .order_by("pk")
            .values_list(*_UsageTerms._fields)
            if row[0] not in self.subscriptions
        }
        old_subscriptions = list(self.subscriptions)
        self.subscriptions.update(new_subscriptions)
        # the items of the new subscriptions for every metric read, and of the others for the new metrics
        pairs = values_in("subscription_id", list(new_subscriptions)) & Q(
            price__metric_id__in=[m.pk for m in self.metrics.values()]
        )
        if new_metrics and old_subscriptions:
            pairs |= values_in("subscription_id", old_subscriptions) & Q(
                price__metric_id__in=[m.pk for m in new_metrics]
            )
        for item_id, subscription_id, metric_id, removed_on in (
            SubscriptionItem.objects.filter(pairs)
            .order_by("pk")
            .values_list("pk", "subscription_id", "price__metric_id", "removed_on")
        ):
            self.items[(subscription_id, metric_id)].append((item_id, removed_on))
            subscription = self.subscriptions[subscription_id]
            billing = self.by_customer[(subscription.customer_id, metric_id)]
            # a subscription named by id may have ended: it bills no event sent by customer
            if subscription.next_billing_date is not None and subscription_id not in billing:
                billing.append(subscription_id)

    def target_of(self, event: UsageEventIn) -> _TargetOrProblem:
        """The event's target (kept in ``targets`` by the caller, per (code, customer or subscription))."""
        metric = self.metrics.get(event.code)
        if metric is None:
            return "code", f"no billable metric '{event.code}'", None
        if (event.external_customer_id is None) == (event.subscription_id is None):
            return "external_customer_id", "give exactly one of external_customer_id, subscription_id", None
        if event.subscription_id is not None:
            subscription = self.subscriptions.get(event.subscription_id)
            if subscription is None:
                return "subscription_id", f"no subscription #{event.subscription_id}", metric
            field_name = "subscription_id"
        else:
            customer_pk = self.customer_ids.get(event.external_customer_id or "")
            if customer_pk is None:
                return "external_customer_id", f"no customer '{event.external_customer_id}'", metric
            billing = self.by_customer.get((customer_pk, metric.pk), [])
            if len(billing) != 1:
                problem = "no subscription of" if not billing else f"{len(billing)} subscriptions of"
                return (
                    "external_customer_id",
                    f"{problem} customer '{event.external_customer_id}' bill "
                    f"'{metric.code}'{'; name the subscription_id' if billing else ''}",
                    metric,
                )
            subscription = self.subscriptions[billing[0]]
            field_name = "external_customer_id"
        items = self.items.get((subscription.pk, metric.pk), [])
        return _Target(metric, subscription, field_name, items, self.values[metric.pk])


def _usage_event_rows(
    events: Sequence[UsageEventIn],
    *,
    lookups: _Lookups | None = None,
    after_lookups: Callable[[], None] | None = None,
) -> list[_EventRow]:
    """Validate and resolve a batch inside the caller's transaction, locking the subscriptions it bills
    (``_Lookups``: pass the same one for every batch of a transaction). An event that fails but whose
    transaction id is already stored is a duplicate, not an error (a re-send after the period closed); the insert
    skips every stored id. Returns the rows to insert; raises ``UsageEventsRejected``.

    The work per event is dictionary look-ups: the target (metric, subscription, items), the billing date per
    (item, usage date) and the value per (metric, property value) are each worked out once.
    ``after_lookups`` runs once the batch's queries are done, before the checks (the import starts writing the
    previous chunk there, so PostgreSQL writes while Python checks)."""
    errors: list[tuple[int, str, str]] = []
    if lookups is None:
        lookups = _Lookups()
    lookups.read(events)
    if after_lookups is not None:
        after_lookups()

    # The loop below runs once per event: each step is a dictionary look-up of something worked out once — the
    # target per (code, customer or subscription), the value per (metric, property value), the place per
    # (target, usage date). Property values of other types than these (lists, objects, booleans — True == 1 in
    # a dictionary) are checked each time.
    cacheable = (int, str, Decimal)
    rows: list[_EventRow] = []
    append = rows.append
    targets = lookups.targets
    tz = billing_tz()
    for index, event in enumerate(events):
        key = (event.code, event.external_customer_id, event.subscription_id)
        target = targets.get(key)
        if target is None:
            target = targets[key] = lookups.target_of(event)
        if not isinstance(target, _Target):
            field_name, problem, known = target
            if known is not None:  # a bad property is named before the target
                _, property_problem = _event_value(known, event.properties)
                if property_problem:
                    field_name, problem = property_problem.split(": ", 1)
            errors.append((index, field_name, problem))
            continue
        metric = target.metric
        raw = event.properties.get(metric.field_name) if metric.field_name else None
        value = target.values.get(raw) if raw.__class__ in cacheable else None
        if value is None:
            value, value_problem = _event_value(metric, event.properties)
            if value_problem:
                field_name, message = value_problem.split(": ", 1)
                errors.append((index, field_name, message))
                continue
            if raw.__class__ in cacheable:
                target.values[raw] = value
        usage_date = event.timestamp.astimezone(tz).date()
        place = target.places.get(usage_date)
        if place is None:
            place = target.places[usage_date] = _placement(target, usage_date)
        if not isinstance(place, _Place):
            errors.append((index, *place))
            continue
        append((event.transaction_id, value, event.properties, event.timestamp, place))
    if errors:
        stored = _stored_transaction_ids([events[index].transaction_id for index, _, _ in errors])
        errors = [error for error in errors if events[error[0]].transaction_id not in stored]
        if errors:
            raise UsageEventsRejected(errors)
    return rows


def _placement(target: _Target, usage_date: dt.date) -> _Place | tuple[str, str]:
    """Where the target's events of ``usage_date`` are stored — the item billing its metric that day and the
    billing date — or (field, problem)."""
    subscription = target.subscription
    items = target.items
    if len(items) == 1 and items[0][1] is None:  # most often: one item, never removed
        item_id, removed_on = items[0]
    else:
        live = [(item, removed) for item, removed in items if removed is None or removed > usage_date]
        if not live:
            return (
                target.field_name,
                f"subscription #{subscription.pk} does not bill '{target.metric.code}' on {usage_date}",
            )
        item_id, removed_on = live[0]
    try:
        billing_date = _usage_billing_date(
            item_id=item_id, removed_on=removed_on, subscription=subscription, usage_date=usage_date
        )
    except UsageRejected as exc:
        return "timestamp", str(exc)
    metric = target.metric.id
    return _Place(
        customer=subscription.customer_id,
        item=item_id,
        metric=metric,
        usage_date=usage_date,
        billing_date=billing_date,
        copy_head=f"{subscription.customer_id}\t{item_id}\t{metric}\t{usage_date}\t{billing_date}\t",
    )


# Rows travel to PostgreSQL as one JSON document (msgspec encodes 1,000 rows in well under a millisecond and
# PostgreSQL's json_to_recordset reads them in C); psycopg's array parameters quote every element in Python,
# which cost a third of a batch's time.
_json_encoder = msgspec.json.Encoder(decimal_format="number")


def _stored_transaction_ids(transaction_ids: list[str]) -> set[str]:
    return set(
        UsageEvent.objects.filter(values_in("transaction_id", transaction_ids))
        .order_by()
        .values_list("transaction_id", flat=True)
    )


_INSERT_EVENTS = """
    INSERT INTO subscriptions_usageevent
        (transaction_id, customer_id, subscription_item_id, metric_id, value, properties, timestamp, usage_date,
         billing_date, created_at)
    SELECT t, c, i, m, v, p, ts, ud, bd, now()
    FROM json_to_recordset(%s::json)
        AS r(t text, c bigint, i bigint, m bigint, v numeric, p jsonb, ts timestamptz, ud date, bd date)
    ON CONFLICT (transaction_id) DO NOTHING
"""
_ROW_KEYS = ("t", "c", "i", "m", "v", "p", "ts", "ud", "bd")


def _insert_event_rows(rows: list[_EventRow]) -> int:
    """One statement per batch; a transaction id stored meanwhile (a concurrent re-send) is skipped by the
    unique index, not an error. Returns the number of rows written."""
    if not rows:
        return 0
    if connection.vendor == "postgresql":
        document = _json_encoder.encode(
            [
                dict(
                    zip(
                        _ROW_KEYS,
                        (t, c.customer, c.item, c.metric, v, props, ts, c.usage_date, c.billing_date),
                        strict=True,
                    )
                )
                for t, v, props, ts, c in rows
            ]
        ).decode()
        with connection.cursor() as cursor:
            cursor.execute(_INSERT_EVENTS, [document])
            return int(cursor.rowcount)
    # SQLite (the demo): the first one of each id not stored yet
    stored = _stored_transaction_ids([row[0] for row in rows])
    unique = [row for row in {row[0]: row for row in reversed(rows)}.values() if row[0] not in stored]
    created = UsageEvent.objects.bulk_create(
        [
            UsageEvent(
                transaction_id=t,
                customer_id=place.customer,
                subscription_item_id=place.item,
                metric_id=place.metric,
                value=v,
                properties=props,
                timestamp=ts,
                usage_date=place.usage_date,
                billing_date=place.billing_date,
            )
            for t, v, props, ts, place in unique
        ],
        ignore_conflicts=True,
    )
    return len(created)


def usage_events_ingest(*, events: Sequence[UsageEventIn]) -> UsageIngestResult:
    """Store a batch of usage events, all or nothing: every event is validated and resolved to the subscription
    item billing its metric, then the batch is written by one ``INSERT … ON CONFLICT (transaction_id) DO
    NOTHING``. Events whose transaction id is already stored are ignored and counted (a re-sent batch is
    harmless). Raises ``UsageEventsRejected`` naming every bad event's index and field; nothing is written then."""
    if not events:
        raise UsageEventsRejected([(0, "(body)", "no events")])
    with transaction.atomic():
        rows = _usage_event_rows(events)
        accepted = _insert_event_rows(rows)
    return UsageIngestResult(accepted=accepted, duplicates=len(events) - accepted)


EVENT_COLUMNS = ("transaction_id", "code", "timestamp", "external_customer_id", "subscription_id", "properties")
EVENT_IMPORT_CHUNK = 25_000


@dataclass(kw_only=True)
class UsageEventsImportReport(imports.ImportReport):
    counters = ("accepted", "duplicates")

    accepted: int = 0
    duplicates: int = 0  # transaction ids already stored, or repeated in the file: ignored

    def outcome(self) -> str:
        verb = "Dry run: would store" if self.dry_run else "Stored"
        return f"{verb} {self.accepted} usage event(s); ignored {self.duplicates} already stored."


class UsageEventsImportError(imports.DataImportError):
    report: UsageEventsImportReport


def _csv_event(values: dict[str, str], row: int, errors: list[RowError]) -> UsageEventIn | None:
    """One CSV row as an event, with the same rules as the API's schema; problems go to ``errors``."""
    before = len(errors)
    transaction_id = values.get("transaction_id") or ""
    if not 1 <= len(transaction_id) <= 200:
        errors.append(RowError(row, "transaction_id", "required, at most 200 characters"))
    code = values.get("code") or ""
    if not 1 <= len(code) <= 100:
        errors.append(RowError(row, "code", "required, at most 100 characters"))
    moment = None
    try:
        moment = dt.datetime.fromisoformat(values.get("timestamp") or "")
        if moment.tzinfo is None:
            errors.append(RowError(row, "timestamp", "needs a time zone (e.g. 2026-03-05T10:00:00Z)"))
        elif (moment.utcoffset() or dt.timedelta(0)) % dt.timedelta(minutes=1):
            # RFC 3339, as the API and NDJSON: an offset in whole minutes (the COPY text writes no seconds)
            errors.append(RowError(row, "timestamp", "the time zone offset must be whole minutes (e.g. +05:30)"))
    except ValueError:
        errors.append(RowError(row, "timestamp", "not an ISO 8601 date and time"))
    subscription_id = None
    if values.get("subscription_id"):
        try:
            subscription_id = int(values["subscription_id"])
        except ValueError:
            errors.append(RowError(row, "subscription_id", "not a whole number"))
    properties: dict[str, Any] = {}
    if values.get("properties"):
        try:
            properties = properties_decoder.decode(values["properties"])
        except msgspec.DecodeError as exc:
            errors.append(RowError(row, "properties", f"not a JSON object: {exc}"))
    if len(errors) != before or moment is None:
        return None
    return UsageEventIn(
        transaction_id=transaction_id,
        code=code,
        timestamp=moment,
        external_customer_id=values.get("external_customer_id") or None,
        subscription_id=subscription_id,
        properties=properties,
    )


def _ndjson_chunk(
    first_line: int, lines: list[str], report: UsageEventsImportReport
) -> tuple[list[int], list[UsageEventIn]]:
    """The events of a chunk of NDJSON lines (``first_line`` is the first one's number) and their line numbers,
    decoded as one JSON array by one msgspec call (a tenth of the time of a call per line). Every element must
    be an event object, so an array of as many elements as lines lines up with them — a blank line breaks the
    array, so it also means there is none. Otherwise each line is decoded alone, blank lines skipped, to name
    the line and field of each problem."""
    try:
        events = events_decoder.decode("[" + ",".join(lines) + "]")
        if len(events) == len(lines):
            report.rows += len(lines)
            return list(range(first_line, first_line + len(lines))), events
    except msgspec.DecodeError:
        pass
    numbers: list[int] = []
    events = []
    for line_number, line in enumerate(lines, start=first_line):
        if not line.strip():
            continue
        report.rows += 1
        try:
            events.append(event_decoder.decode(line))
            numbers.append(line_number)
        except msgspec.DecodeError as exc:
            _, field_name, message = describe_decode_error(exc)
            report.errors.append(RowError(line_number, field_name.removeprefix("event."), message))
    return numbers, events


def _read_events(
    stream: IO[bytes], *, ndjson: bool, report: UsageEventsImportReport
) -> Iterator[tuple[list[int], list[UsageEventIn]]]:
    """The records in chunks of up to ``EVENT_IMPORT_CHUNK``: (row numbers, events); problems go to the report.
    CSV rows are numbered as a spreadsheet shows them (the header is row 1), NDJSON lines from 1."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    if ndjson:
        first_line = 1
        while lines := list(itertools.islice(text, EVENT_IMPORT_CHUNK)):
            chunk = _ndjson_chunk(first_line, lines, report)
            first_line += len(lines)
            if chunk[1]:
                yield chunk
        return
    reader = csv.reader(text)
    header = next(reader, None)
    if header is None:
        report.errors.append(RowError(1, "(file)", "the file has no header row"))
        return
    header = [column.strip() for column in header]
    for column in header:
        if column not in EVENT_COLUMNS:
            report.errors.append(RowError(1, column, "unknown column"))
    for column in ("transaction_id", "code", "timestamp"):
        if column not in header:
            report.errors.append(RowError(1, column, "required column is missing"))
    if report.errors:
        return
    numbers: list[int] = []
    events: list[UsageEventIn] = []
    for row_number, values in enumerate(reader, start=2):
        if not values:
            continue
        report.rows += 1
        event = _csv_event(dict(zip(header, values, strict=False)), row_number, report.errors)
        if event is not None:
            numbers.append(row_number)
            events.append(event)
            if len(events) == EVENT_IMPORT_CHUNK:
                yield numbers, events
                numbers, events = [], []
    if events:
        yield numbers, events


# COPY's columns, in the order of the text built by _copy_text (the columns of a _Place first: written once per
# place). The staging table of the fallback path has the same columns.
_COPY_COLUMNS = (
    "transaction_id, customer_id, subscription_item_id, metric_id, usage_date, billing_date, value, properties, "
    "timestamp, created_at"
)
_EVENT_IMPORT_TABLE = "usage_event_import"
_COPY_INTO_EVENTS = f"COPY subscriptions_usageevent ({_COPY_COLUMNS}) FROM STDIN"
_INSERT_IMPORTED = (
    f"INSERT INTO subscriptions_usageevent ({_COPY_COLUMNS}) SELECT {_COPY_COLUMNS} "  # noqa: S608 - constants only
    f"FROM {_EVENT_IMPORT_TABLE} ON CONFLICT (transaction_id) DO NOTHING"
)
_SAVEPOINT = "usage_import_chunk"
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_FIELDS = 10  # per line: 9 tabs, 1 newline


def _copy_field(text: str) -> str:
    """``text`` as a field of COPY's text format (most need no escaping: the search is the fast path)."""
    return text.translate(_COPY_ESCAPES) if _COPY_SPECIAL.search(text) else text


def _copy_text(rows: list[_EventRow], created_at: str) -> str:
    """Rows in COPY's text format (``_COPY_COLUMNS``), built here: an f-string per row costs far less than
    psycopg's ``write_row`` (which adapts each value on its own), and PostgreSQL parses it four times faster
    than the same rows as JSON. The place's five columns are one string made once per place. Escaping is
    checked once for the whole chunk: if the text has exactly the tabs and newlines of its rows and no
    backslash, no field needed any; otherwise it is built again escaping each field."""
    if not rows:
        return ""
    encode = _json_encoder.encode
    tail = f"\t{created_at}\n"
    # The timestamps in ISO 8601 by one msgspec call for the chunk (a tenth of the time of isoformat() per row):
    # a JSON array of strings, none of which can hold '","'.
    moments = encode([row[3] for row in rows]).decode()[2:-2].split('","')
    text = "".join(
        [
            f"{transaction_id}\t{place.copy_head}{value}\t{encode(properties).decode()}\t{moment}{tail}"
            for (transaction_id, value, properties, _, place), moment in zip(rows, moments, strict=True)
        ]
    )
    if "\\" not in text and "\r" not in text and text.count("\t") + text.count("\n") == _COPY_FIELDS * len(rows):
        return text
    return "".join(
        [
            f"{_copy_field(transaction_id)}\t{place.copy_head}{value}\t{_copy_field(encode(properties).decode())}\t"
            f"{moment}{tail}"
            for (transaction_id, value, properties, _, place), moment in zip(rows, moments, strict=True)
        ]
    )


@dataclass
class _EventWriter:
    """Writes an import's chunks on PostgreSQL, one after another, inside the import's transaction (on the
    import's writer thread, with the connection psycopg owns: its lock keeps the import's own queries waiting
    meanwhile — one statement at a time on the connection).

    Optimistic first: a chunk is COPY'd straight into the events table inside a savepoint — the cheapest way in
    (no staging table, no ``ON CONFLICT``). If one of its transaction ids is already stored, or repeated in the
    file, the unique index refuses the COPY: the savepoint is rolled back (nothing of the chunk stays) and the
    chunk goes the staged way — COPY into a temporary table, ``INSERT … SELECT … ON CONFLICT (transaction_id) DO
    NOTHING``, which skips and counts the duplicates. After a chunk had duplicates the next one is staged too
    (a re-sent file would fail every optimistic COPY); a staged chunk without duplicates switches back."""

    raw_connection: Any
    optimistic: bool = True
    staging_table: bool = False  # created in this transaction
    fallbacks: int = 0  # chunks that met a stored (or repeated) transaction id

    def write(self, text: str, rows: int) -> int:
        """The rows of the chunk written (the rest were duplicates)."""
        with self.raw_connection.cursor() as cursor:
            if self.optimistic:
                cursor.execute(f"SAVEPOINT {_SAVEPOINT}")
                try:
                    with cursor.copy(_COPY_INTO_EVENTS) as copy:
                        copy.write(text)
                except psycopg.errors.UniqueViolation:
                    cursor.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
                    cursor.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
                    self.fallbacks += 1
                else:
                    cursor.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
                    return rows
            written = self._staged(cursor, text)
            self.optimistic = written == rows
            return written

    def _staged(self, cursor: Any, text: str) -> int:
        if self.staging_table:
            cursor.execute(f"TRUNCATE {_EVENT_IMPORT_TABLE}")
        else:
            # ON COMMIT DROP, and dropped after use: an import inside a caller's longer transaction (a test)
            # leaves nothing behind either.
            cursor.execute(f"DROP TABLE IF EXISTS {_EVENT_IMPORT_TABLE}")
            cursor.execute(
                f"CREATE TEMPORARY TABLE {_EVENT_IMPORT_TABLE} (transaction_id text, customer_id bigint, "
                "subscription_item_id bigint, metric_id bigint, usage_date date, billing_date date, value numeric, "
                "properties jsonb, timestamp timestamptz, created_at timestamptz) ON COMMIT DROP"
            )
            self.staging_table = True
        with cursor.copy(f"COPY {_EVENT_IMPORT_TABLE} ({_COPY_COLUMNS}) FROM STDIN") as copy:
            copy.write(text)
        cursor.execute(_INSERT_IMPORTED)
        return int(cursor.rowcount)

    def close(self) -> None:
        if self.staging_table:
            with self.raw_connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE {_EVENT_IMPORT_TABLE}")
            self.staging_table = False


def usage_events_import(*, stream: IO[bytes], ndjson: bool, dry_run: bool = False) -> UsageEventsImportReport:
    """Import usage events from a CSV file (columns ``EVENT_COLUMNS``; ``properties`` a JSON object) or an
    NDJSON file (one API event object per line), all or nothing, in one transaction: every event is checked as
    the API checks it, in chunks of ``EVENT_IMPORT_CHUNK`` (each locking the subscriptions it bills). On
    PostgreSQL a writer thread writes each chunk (``_EventWriter``: COPY straight into the table, or — when the
    chunk meets a stored transaction id — staged with ``ON CONFLICT (transaction_id) DO NOTHING``) while this
    thread decodes and checks the next chunk (the two cores each do their part). Events already stored, or
    repeated in the file, are ignored and counted. A bad row rejects the file (``UsageEventsImportError``
    naming each row and column); nothing is written then: once a problem is found no further chunk is written,
    and the transaction is rolled back."""
    report = UsageEventsImportReport(dry_run=dry_run)
    postgresql = connection.vendor == "postgresql"
    writer: _EventWriter | None = None
    with transaction.atomic(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage-import") as thread:
        created_at = ""
        if postgresql and not dry_run:
            with connection.cursor() as cursor:
                cursor.execute("SELECT now()")  # the transaction's time, what created_at = now() stores
                created_at = cursor.fetchone()[0].isoformat()
        lookups = _Lookups()  # read once for the whole file: later chunks mostly name what earlier ones read
        held: list[tuple[str, int]] = []  # the COPY text of the last checked chunk, written once the next one's
        pending: list[Future[int]] = []  # queries ran

        def wait() -> None:
            while pending:
                report.accepted += pending.pop().result()

        def write_held() -> None:
            nonlocal writer
            if held and not report.errors:
                if writer is None:
                    # psycopg's own connection: the writer thread may not use Django's wrapper
                    writer = _EventWriter(connection.connection)
                pending.append(thread.submit(writer.write, *held.pop()))
            held.clear()

        def check(numbers: list[int], events: list[UsageEventIn]) -> None:
            wait()  # the connection is free for this chunk's queries
            try:
                rows = _usage_event_rows(events, lookups=lookups, after_lookups=write_held)
            except UsageEventsRejected as exc:
                for index, field_name, message in exc.errors:
                    report.errors.append(RowError(numbers[index], field_name, message))
                return
            if report.errors or dry_run:
                return
            if postgresql:
                held.append((_copy_text(rows, created_at), len(rows)))
            else:
                report.accepted += _insert_event_rows(rows)

        try:
            for numbers, events in _read_events(stream, ndjson=ndjson, report=report):
                check(numbers, events)
            wait()
            write_held()
        finally:
            wait()  # never leave a statement running on the connection behind this transaction's end
        if not report.rows and not report.errors:
            report.errors.append(RowError(2 if not ndjson else 1, "(file)", "the file has no events"))
        if report.errors:
            report.errors.sort(key=lambda error: error.row)
            transaction.set_rollback(True)
            raise UsageEventsImportError(report)
        if dry_run:
            report.accepted = report.rows  # duplicates within the file are only known once written
            return report
        if writer is not None:
            writer.close()
        report.duplicates = report.rows - report.accepted
    return report
