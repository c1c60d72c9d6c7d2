"""factory_boy factories, one per model, with traits per state."""

from __future__ import annotations

import factory
from django.contrib.auth.models import Group, User

from customers.models import Customer, TaxStatus


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    name = factory.Sequence(lambda n: f"Customer {n:05d}")
    email = factory.Sequence(lambda n: f"billing{n}@customer.example")
    country = "DE"
    currency = "EUR"
    address_line1 = "Hauptstraße 1"
    postal_code = "10115"
    city = "Berlin"
    tax_status = TaxStatus.TAXABLE
    payment_terms_days = 14

    class Params:
        reverse_charge = factory.Trait(country="AT", tax_id="ATU13585627", tax_status=TaxStatus.REVERSE_CHARGE)
        exempt = factory.Trait(tax_status=TaxStatus.EXEMPT)
        archived = factory.Trait(is_archived=True)


class StaffUserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"staff{n}")
    is_staff = True
    password = factory.PostGenerationMethodCall("set_password", "pw")

    @factory.post_generation
    def group(self, create: bool, extracted: str | None, **kwargs: object) -> None:
        if create and extracted:
            self.groups.add(Group.objects.get(name=extracted))
            self.save()
