"""factory_boy factories, one per model, with traits per state."""

from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth.models import Group, User

from customers.models import Customer, SellerProfile, TaxStatus


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


# The seller every test sells as (the autouse ``seller`` fixture in tests/conftest.py writes it).
SELLER = {
    "legal_name": "Cadence Demo GmbH",
    "address": "Friedrichstraße 123\n10117 Berlin",
    "country": "DE",
    "vat_id": "DE136695976",
    "tax_number": "27/123/45678",
    "register_court": "Amtsgericht Berlin-Charlottenburg",
    "register_number": "HRB 654321",
    "managing_directors": "Dr. Erika Mustermann, Jonas Weber",
    "email": "billing@example.com",
    "phone": "+49 30 1234567",
    "bank_name": "Demo Bank",
    "iban": "DE89370400440532013000",
    "bic": "COBADEFFXXX",
    "invoice_footer": {
        "en": "Thank you for your business.",
        "de": "Vielen Dank für Ihren Auftrag.",
        "fr": "Merci de votre confiance.",
        "es": "Gracias por su confianza.",
    },
}


def seller_profile_create(**overrides: Any) -> SellerProfile:
    profile, _ = SellerProfile.objects.update_or_create(pk=SellerProfile.SINGLETON_PK, defaults={**SELLER, **overrides})
    return profile
