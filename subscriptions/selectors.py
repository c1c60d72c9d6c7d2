"""Reads on subscriptions that mean something (docs/STYLE.md)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import F, Q, QuerySet

from customers.models import BillingMode, Customer
from subscriptions.models import Aggregation, Price, Subscription, SubscriptionItem, SubscriptionStatus, UsageType
from subscriptions.usage import UsageSpan, usage_totals


def subscription_ids_due(
    *, as_of: dt.date, customer_id: int | None = None, subscription_id: int | None = None
) -> QuerySet[Subscription, int]:
    """Ids of the subscriptions with a period or pending charges due on or before ``as_of``, not paused, by id.

    Uses the partial index on (next_billing_date, id). Pending prorations are due with the next boundary and a
    canceled subscription's final charges at its cancel date, so ``next_billing_date`` covers both."""
    queryset = Subscription.objects.filter(next_billing_date__lte=as_of).exclude(status=SubscriptionStatus.PAUSED)
    if customer_id is not None:
        queryset = queryset.filter(customer_id=customer_id)
    if subscription_id is not None:
        queryset = queryset.filter(pk=subscription_id)
    return queryset.order_by("pk").values_list("pk", flat=True)


def subscription_ids_with_thresholds(
    *, as_of: dt.date, subscription_id: int | None = None
) -> QuerySet[Subscription, int]:
    """Ids of the live subscriptions with progressive-billing thresholds whose current period runs past
    ``as_of`` (a period ending by then is the billing run's), by id (docs/decisions/commitments.md)."""
    queryset = Subscription.objects.filter(
        status__in=[SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE], next_billing_date__gt=as_of
    ).exclude(usage_thresholds=[])
    if subscription_id is not None:
        queryset = queryset.filter(pk=subscription_id)
    return queryset.order_by("pk").values_list("pk", flat=True)


def consolidated_payers_due(
    *, as_of: dt.date, customer_id: int | None = None, subscription_id: int | None = None
) -> dict[int, int]:
    """The due subscriptions (as ``subscription_ids_due``) of child accounts billed on their parent's consolidated
    invoice → that parent's id. The billing run keeps each parent's subscriptions in one chunk with it, so one
    parent gets one invoice per billing date. ``customer_id`` of a parent or of one of its consolidated children
    means the whole family: a run for one of them still bills one invoice for all (docs/decisions/parent-accounts.md).
    """
    queryset = Subscription.objects.filter(
        next_billing_date__lte=as_of, customer__billing_mode=BillingMode.CONSOLIDATED, customer__parent__isnull=False
    ).exclude(status=SubscriptionStatus.PAUSED)
    if customer_id is not None:
        payer_id = (
            Customer.objects.filter(pk=customer_id, billing_mode=BillingMode.CONSOLIDATED)
            .values_list("parent_id", flat=True)
            .first()
        )
        queryset = queryset.filter(customer__parent_id=payer_id or customer_id)
    if subscription_id is not None:
        queryset = queryset.filter(pk=subscription_id)
    rows = queryset.order_by("pk").values_list("pk", "customer__parent_id")
    return {subscription_id: parent_id for subscription_id, parent_id in rows if parent_id is not None}


@dataclass(frozen=True)
class CurrentUsage:
    """A metered item's usage so far in its open window ``[period_start, as_of]``, as the next invoice will
    bill it (late usage of invoiced periods is not included: it is billed as an adjustment)."""

    subscription_id: int
    item_id: int
    price: Price
    metric_code: str  # empty for a price without a metric (the sum of recorded quantities)
    metric_name: str
    aggregation: str
    period_start: dt.date
    period_end: dt.date  # exclusive: the day after as_of
    quantity: Decimal
    events: int


def usage_current(
    *, as_of: dt.date, customer_id: int | None = None, subscription_id: int | None = None
) -> list[CurrentUsage]:
    """The current usage of a customer's (or one subscription's) metered items, in three queries: the live
    metered items with their prices and metrics, then one aggregate (``subscriptions.usage.usage_totals``)."""
    items = SubscriptionItem.objects.filter(
        price__usage_type=UsageType.METERED, subscription__next_billing_date__isnull=False
    ).filter(Q(removed_on__isnull=True) | Q(removed_on__gt=F("subscription__usage_open_from")))
    if customer_id is not None:
        items = items.filter(subscription__customer_id=customer_id)
    if subscription_id is not None:
        items = items.filter(subscription_id=subscription_id)
    loaded = list(
        items.select_related("price__product", "price__metric", "subscription").order_by("subscription_id", "pk")
    )
    end = as_of + dt.timedelta(days=1)
    spans = {
        item.pk: UsageSpan(item.pk, item.subscription.usage_open_from, end, item.subscription.usage_open_from, end)
        for item in loaded
        if item.subscription.usage_open_from < end
    }
    totals = usage_totals(spans=list(spans.values()), metrics={item.pk: item.price.metric for item in loaded})
    rows = []
    for item in loaded:
        span = spans.get(item.pk)
        total = totals.get(span) if span is not None else None
        metric = item.price.metric
        rows.append(
            CurrentUsage(
                subscription_id=item.subscription_id,
                item_id=item.pk,
                price=item.price,
                metric_code=metric.code if metric is not None else "",
                metric_name=metric.name if metric is not None else "Quantity",
                aggregation=metric.aggregation if metric is not None else Aggregation.SUM,
                period_start=item.subscription.usage_open_from,
                period_end=end,
                quantity=total.quantity if total is not None and total.events else Decimal(0),
                events=total.events if total is not None else 0,
            )
        )
    return rows
