"""factory_boy factories, one module per app, re-exported here: ``from tests.factories import CustomerFactory``."""

from tests.factories.customers import CustomerFactory, StaffUserFactory

__all__ = ["CustomerFactory", "StaffUserFactory"]
