"""factory_boy factories for the customer portal (not re-exported from tests.factories yet: import from here)."""

from __future__ import annotations

import factory

from customers.models import PortalUser
from tests.factories.customers import CustomerFactory


class PortalUserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PortalUser

    customer = factory.SubFactory(CustomerFactory)
    email = factory.Sequence(lambda n: f"person{n}@portal.example")
    is_active = True

    class Params:
        inactive = factory.Trait(is_active=False)
