"""factory_boy factories for the subscriptions app. Subscriptions are created through the service, so every
factory-made subscription is in a state the services could have produced."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import factory
from djmoney.money import Money

from subscriptions.models import (
    Aggregation,
    BillableMetric,
    Coupon,
    CouponDuration,
    Price,
    PriceTier,
    PricingModel,
    Product,
    UsageType,
)
from subscriptions.services import ItemSpec, subscription_create
from tests.factories.customers import CustomerFactory


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    name = factory.Sequence(lambda n: f"Plan {n}")


class BillableMetricFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BillableMetric

    code = factory.Sequence(lambda n: f"metric-{n}")
    name = factory.LazyAttribute(lambda metric: metric.code.replace("-", " ").capitalize())
    aggregation = Aggregation.SUM
    field_name = factory.LazyAttribute(lambda metric: "" if metric.aggregation == Aggregation.COUNT else "quantity")


class PriceFactory(factory.django.DjangoModelFactory):
    """``PriceFactory(metered=True, aggregation="max")`` bills a new metric of that aggregation over the property
    ``quantity``; a metered price without ``aggregation`` has no metric (the sum of the recorded quantities)."""

    class Meta:
        model = Price
        exclude = ("aggregation",)

    product = factory.SubFactory(ProductFactory)
    unit_amount = Money(Decimal("31.00"), "EUR")
    interval = "month"
    interval_count = 1
    pricing_model = PricingModel.FLAT
    aggregation: str | None = None
    metric = factory.LazyAttribute(
        lambda price: BillableMetricFactory(aggregation=price.aggregation) if price.aggregation else None
    )

    class Params:
        per_unit = factory.Trait(pricing_model=PricingModel.PER_UNIT)
        yearly = factory.Trait(interval="year")
        metered = factory.Trait(usage_type=UsageType.METERED, pricing_model=PricingModel.PER_UNIT)
        archived = factory.Trait(active=False)


class PriceTierFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PriceTier

    price = factory.SubFactory(PriceFactory, pricing_model=PricingModel.GRADUATED)
    up_to = None
    unit_amount = Decimal("1")
    flat_amount = Decimal("0")


def tiered_price(*, model: str, tiers: list[tuple[int | None, str, str]], **kwargs: Any) -> Price:
    """A graduated/volume price with ``tiers`` as (up_to, unit amount, flat amount)."""
    price = PriceFactory(pricing_model=model, unit_amount=Money(0, kwargs.pop("currency", "EUR")), **kwargs)
    for up_to, unit, flat in tiers:
        PriceTier.objects.create(price=price, up_to=up_to, unit_amount=Decimal(unit), flat_amount=Decimal(flat))
    return price


class CouponFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Coupon

    code = factory.Sequence(lambda n: f"COUPON{n}")
    percent_off = Decimal("10")
    duration = CouponDuration.ONCE

    class Params:
        forever = factory.Trait(duration=CouponDuration.FOREVER)
        repeating = factory.Trait(duration=CouponDuration.REPEATING, duration_in_periods=3)
        amount = factory.Trait(percent_off=None, amount_off=Money(Decimal("5.00"), "EUR"))


class SubscriptionFactory(factory.Factory):
    """``SubscriptionFactory(price=..., quantity=..., start_date=...)`` → ``subscription_create``."""

    class Meta:
        model = dict  # built through the service, see _create

    customer = factory.SubFactory(CustomerFactory)
    price = factory.SubFactory(PriceFactory)
    quantity = 1
    start_date = dt.date(2026, 1, 1)
    trial_days = 0

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Any:
        price = kwargs.pop("price")
        quantity = kwargs.pop("quantity")
        items = kwargs.pop("items", None) or [ItemSpec(price=price, quantity=quantity)]
        customer = kwargs.pop("customer")
        if customer.currency != items[0].price.currency:
            customer.currency = items[0].price.currency
            customer.save(update_fields=["currency"])
        return subscription_create(customer=customer, items=items, **kwargs)

    _build = _create


def bulk_subscriptions(*, count: int, items: list[tuple[Price, int]], start_date: dt.date) -> list[int]:
    """``count`` identical subscriptions, fast: the service creates one, its rows are copied in bulk (same state,
    one customer each). For volume tests and benchmarks; returns the subscription ids."""
    from subscriptions.models import Subscription, SubscriptionItem

    customers = CustomerFactory.create_batch(count, currency=items[0][0].currency)
    template = subscription_create(
        customer=customers[0], items=[ItemSpec(price=p, quantity=q) for p, q in items], start_date=start_date
    )
    template_items = list(template.items.all())
    copies = []
    for customer in customers[1:]:
        copy = Subscription.objects.get(pk=template.pk)
        copy.pk = None
        copy.customer = customer
        copies.append(copy)
    created = Subscription.objects.bulk_create(copies, batch_size=2000)
    SubscriptionItem.objects.bulk_create(
        [
            SubscriptionItem(subscription=subscription, price=item.price, quantity=item.quantity)
            for subscription in created
            for item in template_items
        ],
        batch_size=5000,
    )
    return [template.pk, *(s.pk for s in created)]
