"""A parent account with three consolidated children of mixed tax (issue 25): a German business (19 %), a French
business with a VAT id (reverse charge) and a German consumer with a reduced-rate e-book. Needs the default
number series."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from djmoney.money import Money

from core.tax_categories import TaxCategory
from customers.models import BillingMode
from invoicing.models import TaxRate
from subscriptions.services import ItemSpec
from tests.factories.customers import CustomerFactory
from tests.factories.invoicing import TaxRateFactory
from tests.factories.subscriptions import PriceFactory, ProductFactory, SubscriptionFactory


def parent_family_create(*, billing_mode: str = BillingMode.CONSOLIDATED) -> dict[str, Any]:
    for country, percentage, name, category in (
        ("DE", "19", "VAT 19 %", TaxCategory.STANDARD),
        ("DE", "7", "VAT 7 %", TaxCategory.REDUCED),
        ("FR", "20", "TVA 20 %", TaxCategory.STANDARD),
    ):
        if not TaxRate.objects.filter(country=country, category=category, active=True).exists():
            TaxRateFactory(country=country, percentage=Decimal(percentage), name=name, category=category)
    plan = PriceFactory(product=ProductFactory(name="Cloud plan"), unit_amount=Money(Decimal("100.00"), "EUR"))
    ebook = PriceFactory(
        product=ProductFactory(name="Handbook (e-book)", tax_category=TaxCategory.REDUCED),
        unit_amount=Money(Decimal("24.99"), "EUR"),
    )
    parent = CustomerFactory(name="Holding AG", tax_id="DE811569869", payment_terms_days=30)
    child = {"parent": parent, "billing_mode": billing_mode}
    berlin = CustomerFactory(name="Berlin GmbH", tax_id="DE136695976", **child)
    paris = CustomerFactory(name="Paris SARL", country="FR", city="Paris", tax_id="FR40303265045", **child)
    anna = CustomerFactory(name="Anna Schmidt", **child)
    subscriptions = {
        "berlin": SubscriptionFactory(customer=berlin, price=plan),
        "paris": SubscriptionFactory(customer=paris, price=plan),
        "anna": SubscriptionFactory(
            customer=anna, items=[ItemSpec(price=plan, quantity=1), ItemSpec(price=ebook, quantity=1)], price=plan
        ),
    }
    return {"parent": parent, "berlin": berlin, "paris": paris, "anna": anna, "subscriptions": subscriptions}
