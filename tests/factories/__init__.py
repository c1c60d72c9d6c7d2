"""factory_boy factories, one module per app, re-exported here: ``from tests.factories import CustomerFactory``."""

from tests.factories.customers import CustomerFactory, StaffUserFactory
from tests.factories.invoicing import InvoiceFactory, InvoiceLineFactory, NumberSeriesFactory, TaxRateFactory
from tests.factories.subscriptions import (
    CouponFactory,
    PriceFactory,
    PriceTierFactory,
    ProductFactory,
    SubscriptionFactory,
    tiered_price,
)

__all__ = [
    "CouponFactory",
    "CustomerFactory",
    "InvoiceFactory",
    "InvoiceLineFactory",
    "NumberSeriesFactory",
    "PriceFactory",
    "PriceTierFactory",
    "ProductFactory",
    "StaffUserFactory",
    "SubscriptionFactory",
    "TaxRateFactory",
    "tiered_price",
]
