"""factory_boy factories, one module per app, re-exported here: ``from tests.factories import CustomerFactory``."""

from tests.factories.customers import CustomerFactory, StaffUserFactory
from tests.factories.invoicing import InvoiceFactory, InvoiceLineFactory, NumberSeriesFactory, TaxRateFactory

__all__ = [
    "CustomerFactory",
    "InvoiceFactory",
    "InvoiceLineFactory",
    "NumberSeriesFactory",
    "StaffUserFactory",
    "TaxRateFactory",
]
