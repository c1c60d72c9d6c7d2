"""factory_boy factories, one module per app, re-exported here: ``from tests.factories import CustomerFactory``."""

from tests.factories.customers import CustomerFactory, StaffUserFactory
from tests.factories.dunning import CustomerDunningSettingsFactory, DunningPolicyFactory, DunningStepFactory
from tests.factories.invoicing import InvoiceFactory, InvoiceLineFactory, NumberSeriesFactory, TaxRateFactory
from tests.factories.payments import BankStatementFactory, BankTransactionFactory, PaymentMethodFactory, record_payment
from tests.factories.portal import PortalUserFactory
from tests.factories.subscriptions import (
    CouponFactory,
    PriceFactory,
    PriceTierFactory,
    ProductFactory,
    SubscriptionFactory,
    tiered_price,
)

__all__ = [
    "BankStatementFactory",
    "BankTransactionFactory",
    "CouponFactory",
    "CustomerDunningSettingsFactory",
    "CustomerFactory",
    "DunningPolicyFactory",
    "DunningStepFactory",
    "InvoiceFactory",
    "InvoiceLineFactory",
    "NumberSeriesFactory",
    "PaymentMethodFactory",
    "PortalUserFactory",
    "PriceFactory",
    "PriceTierFactory",
    "ProductFactory",
    "StaffUserFactory",
    "SubscriptionFactory",
    "TaxRateFactory",
    "record_payment",
    "tiered_price",
]
