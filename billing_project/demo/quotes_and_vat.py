"""Demo data of issue 25's quotes and VAT checks: a quote sent to the portal's demo customer (to accept in the
portal), a draft for staff, and the VAT number check of one EU business customer as the demo can make it (no
internet: VIES is not asked, and the check says so)."""

from __future__ import annotations

import datetime as dt

from core.dates import billing_today
from customers.models import EU_VAT_COUNTRIES, Customer, PortalUser, VatCheck, VatCheckStatus, VatStatus
from invoicing.models import Quote
from invoicing.quotes import quote_create, quote_send
from subscriptions.models import Price
from subscriptions.services import ItemSpec

DEMO_NO_INTERNET = "The demo has no internet, so VIES was not asked; in production the check runs in the background."


def _prices(currency: str) -> list[Price]:
    return list(
        Price.objects.filter(active=True, unit_amount_currency=currency, interval="month", usage_type="licensed")
        .select_related("product")
        .order_by("unit_amount", "pk")[:2]
    )


def seed_quotes() -> int:
    if Quote.objects.exists():
        return 0
    today = billing_today()
    created = 0
    portal_user = PortalUser.objects.select_related("customer").order_by("pk").first()
    targets = [portal_user.customer] if portal_user is not None else []
    other = Customer.objects.filter(is_archived=False, currency="EUR").exclude(pk__in=[c.pk for c in targets]).first()
    for index, customer in enumerate([*targets, *([other] if other else [])]):
        prices = _prices(customer.currency)
        if not prices:
            continue
        items = [ItemSpec(price=prices[0], quantity=5 if index == 0 else 2)]
        if len(prices) > 1:
            items.append(ItemSpec(price=prices[1]))
        quote = quote_create(
            customer=customer,
            items=items,
            valid_until=today + dt.timedelta(days=30),
            title="Team upgrade" if index == 0 else "Proposal",
            memo="Prices as agreed on our call. Onboarding included.",
        )
        if index == 0:
            quote_send(quote=quote)
        created += 1
    return created


def seed_vat_checks() -> int:
    customer = (
        Customer.objects.filter(is_archived=False, country__in=sorted(EU_VAT_COUNTRIES))
        .exclude(tax_id="")
        .order_by("pk")
        .first()
    )
    if customer is None or VatCheck.objects.filter(customer=customer).exists():
        return 0
    VatCheck.objects.create(
        customer=customer,
        vat_number=customer.tax_id,
        status=VatCheckStatus.UNAVAILABLE,
        attempts=1,
        error=DEMO_NO_INTERNET,
    )
    Customer.objects.filter(pk=customer.pk).update(vat_status=VatStatus.UNAVAILABLE)
    return 1
