"""Reads on subscriptions that mean something (docs/STYLE.md)."""

from __future__ import annotations

import datetime as dt

from django.db.models import QuerySet

from subscriptions.models import Subscription, SubscriptionStatus


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
