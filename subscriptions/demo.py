"""Demo catalog and subscriptions for ``manage.py seed_demo``. Idempotent: products by name, prices by (product,
nickname), coupons by code, subscriptions by ``metadata["demo_key"]`` (the customer's external id); only what is
missing is created. Uses the demo customers DEMO-0001..DEMO-0060 (billing_project/demo/customers.py)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db import transaction
from djmoney.money import Money

from core.dates import billing_today, billing_tz
from core.money import round_amount
from customers.models import Customer
from subscriptions.charges import plans_for_chunk
from subscriptions.models import (
    Aggregation,
    BillableMetric,
    Coupon,
    CouponDuration,
    PauseMode,
    Price,
    PriceTier,
    PricingModel,
    Product,
    Subscription,
)
from subscriptions.services import (
    ItemSpec,
    discount_create,
    plans_commit,
    subscription_cancel,
    subscription_commitments_update,
    subscription_create,
    subscription_mark_past_due,
    subscription_pause,
    usage_events_ingest,
    usage_record_create,
)
from subscriptions.usage_schema import UsageEventIn

# Roughly what one EUR buys, for plausible local list prices (not a conversion: each price is its own row).
_RATE = {
    "EUR": Decimal(1),
    "USD": Decimal("1.1"),
    "GBP": Decimal("0.9"),
    "PLN": Decimal("4.3"),
    "JPY": Decimal(160),
    "CHF": Decimal(1),
    "SEK": Decimal(11),
    "BHD": Decimal("0.4"),
}
_STATUSES = ("active", "trialing", "active", "past_due", "paused", "canceled", "ended", "cancel_at_period_end")


def _product(name: str, description: str) -> Product:
    product, _ = Product.objects.get_or_create(name=name, defaults={"description": description})
    return product


def _price(product: Product, nickname: str, amount: Decimal, currency: str, **fields: object) -> Price:
    price, created = Price.objects.get_or_create(
        product=product,
        nickname=nickname,
        defaults={"unit_amount": Money(round_amount(amount * _RATE[currency], currency), currency), **fields},
    )
    if created and price.pricing_model == PricingModel.GRADUATED:
        for up_to, unit in ((1000, Decimal("0.0100")), (10000, Decimal("0.0080")), (None, Decimal("0.0050"))):
            PriceTier.objects.create(price=price, up_to=up_to, unit_amount=unit * _RATE[currency])
    return price


def _catalog(currency: str) -> dict[str, Price]:
    starter = _product("Starter", "One workspace, e-mail support.")
    seats = _product("Pro seats", "Per user, monthly or yearly.")
    api = _product("API calls", "Metered, graduated tiers, billed in arrears.")
    users = _product("Active users", "Metered: distinct users seen in the month (usage events).")
    return {
        # Starter and Pro seats are self-service: the demo customer changes plan or seats in the portal.
        "starter": _price(starter, f"monthly {currency}", Decimal("19.00"), currency, self_service=True),
        "seats": _price(
            seats,
            f"monthly {currency}",
            Decimal("12.50"),
            currency,
            pricing_model=PricingModel.PER_UNIT,
            self_service=True,
            self_service_max_quantity=100,
        ),
        "seats_yearly": _price(
            seats,
            f"yearly {currency}",
            Decimal("125.00"),
            currency,
            pricing_model=PricingModel.PER_UNIT,
            interval="year",
            self_service=True,
            self_service_max_quantity=100,
        ),
        "api": _price(
            api,
            f"monthly {currency}",
            Decimal(0),
            currency,
            pricing_model=PricingModel.GRADUATED,
            usage_type="metered",
        ),
        "trial": _price(starter, f"monthly with trial {currency}", Decimal("29.00"), currency, trial_days=14),
        "active_users": _price(
            users,
            f"monthly {currency}",
            Decimal("2.00"),
            currency,
            pricing_model=PricingModel.PER_UNIT,
            usage_type="metered",
            metric=_active_users_metric(),
        ),
    }


def _active_users_metric() -> BillableMetric:
    metric, _ = BillableMetric.objects.get_or_create(
        code="active-users",
        defaults={"name": "Active users", "aggregation": Aggregation.UNIQUE_COUNT, "field_name": "user"},
    )
    return metric


def _coupons() -> dict[str, Coupon]:
    specs = {
        "WELCOME20": {"percent_off": Decimal(20), "duration": CouponDuration.ONCE},
        "LAUNCH15": {"percent_off": Decimal(15), "duration": CouponDuration.REPEATING, "duration_in_periods": 3},
        "LOYAL10": {"percent_off": Decimal(10), "duration": CouponDuration.FOREVER},
        "EUR5OFF": {"amount_off": Money(Decimal(5), "EUR"), "duration": CouponDuration.ONCE},
    }
    return {code: Coupon.objects.get_or_create(code=code, defaults=fields)[0] for code, fields in specs.items()}


def seed_catalog_and_subscriptions() -> int:
    """Create the missing demo catalog and subscriptions; returns how many subscriptions were created."""
    today = billing_today()
    customers = list(Customer.objects.filter(external_id__startswith="DEMO-").order_by("external_id")[:60])
    existing = set(
        Subscription.objects.filter(metadata__has_key="demo_key").values_list("metadata__demo_key", flat=True)
    )
    created = 0
    commitment_examples = ["minimum", "threshold"]  # docs/decisions/commitments.md: one of each
    with transaction.atomic():
        coupons = _coupons()
        for index, customer in enumerate(customers):
            if customer.external_id in existing:
                continue
            catalog = _catalog(customer.currency)
            kind = _STATUSES[index % len(_STATUSES)]
            start = today - dt.timedelta(days=index % 20 + 1 + (45 if kind == "ended" else 0))
            if index % 9 == 0:
                items = [ItemSpec(catalog["seats_yearly"], 3 + index % 5)]
            elif kind == "trialing":
                items = [ItemSpec(catalog["trial"], 1)]
            elif index % 3 == 0:
                items = [
                    ItemSpec(catalog["seats"], 2 + index % 7),
                    ItemSpec(catalog["api"], 0),
                    ItemSpec(catalog["active_users"], 0),
                ]
            else:
                items = [ItemSpec(catalog["starter"], 1)]
            subscription = subscription_create(
                customer=customer,
                items=items,
                start_date=start,
                trial_days=None if kind == "trialing" else 0,
                collection_method="charge_automatically" if index % 4 == 0 else "send_invoice",
                metadata={"demo_key": customer.external_id},
            )
            created += 1
            metered = any(spec.price.usage_type == "metered" for spec in items)
            if commitment_examples and metered and kind == "active":
                example, rate, currency = commitment_examples.pop(0), _RATE[customer.currency], customer.currency
                subscription_commitments_update(
                    subscription=subscription,
                    minimum_commitment=round_amount(250 * rate, currency) if example == "minimum" else None,
                    usage_thresholds=[round_amount(amount * rate, currency) for amount in (50, 200)]
                    if example == "threshold"
                    else [],
                )
            coupon = (None, coupons["WELCOME20"], None, coupons["LAUNCH15"], None, coupons["LOYAL10"])[index % 6]
            if customer.currency == "EUR" and index % 10 == 7:
                coupon = coupons["EUR5OFF"]
            if coupon is not None and kind not in ("canceled", "ended"):
                discount_create(coupon=coupon, subscription=subscription, as_of=start)
            if subscription.items.filter(price__metric__code="active-users").exists():
                # Usage events as the API receives them: a few of the customer's users active each day.
                events = [
                    UsageEventIn(
                        transaction_id=f"demo-{customer.external_id}-users-{day}-{user}",
                        code="active-users",
                        timestamp=dt.datetime.combine(start + dt.timedelta(days=day), dt.time(9), tzinfo=billing_tz()),
                        subscription_id=subscription.pk,
                        properties={"user": f"user-{(index + user * 3) % 11}"},
                    )
                    for day in range((today - start).days)
                    for user in range(1 + (index + day) % 3)
                ]
                if events:
                    usage_events_ingest(events=events)
            for item in subscription.items.filter(price__usage_type="metered", price__metric__isnull=True):
                for day in range(0, (today - start).days, 3):
                    moment = dt.datetime.combine(start + dt.timedelta(days=day), dt.time(10), tzinfo=billing_tz())
                    usage_record_create(
                        subscription_item=item,
                        quantity=Decimal(150 + (index * 37 + day * 11) % 900),
                        timestamp=moment,
                        idempotency_key=f"demo-{customer.external_id}-{day}",
                    )
            if kind == "past_due":
                subscription_mark_past_due(subscription=subscription, reason="demo: invoice overdue")
            elif kind == "paused" and index // len(_STATUSES) % 2:
                subscription_pause(
                    subscription=subscription,
                    as_of=today,
                    mode=PauseMode.COLLECTION,
                    resumes_on=today + dt.timedelta(days=30),
                    reason="demo: invoice disputed, collection on hold",
                )
            elif kind == "paused":
                subscription_pause(subscription=subscription, as_of=today, reason="demo: seasonal break")
            elif kind == "canceled":
                subscription_cancel(subscription=subscription, as_of=today, reason="demo: customer left")
            elif kind == "cancel_at_period_end":
                subscription_cancel(subscription=subscription, as_of=today, at_period_end=True, reason="demo")
            elif kind == "ended":
                # Ended means its last period has run out: advance it (without invoices) through that boundary.
                subscription_cancel(subscription=subscription, as_of=start, at_period_end=True, reason="demo")
                end = subscription.current_period_end
                plans_commit(plans=plans_for_chunk(subscription_ids=[subscription.pk], as_of=end))
    return created


# A group billed on one consolidated invoice (docs/decisions/parent-accounts.md): a German holding and three
# subsidiaries of mixed tax — a German business (19 %), a French business with a VAT id (reverse charge) and a
# German training arm that also buys a reduced-rate e-book (7 %). Keyed by external id.
_PARENT = ("GROUP-0001", "Helios Holding AG", "DE", "Berlin", "10117", "Unter den Linden 5", "DE811569869")
_CHILDREN = (
    ("GROUP-0002", "Helios Software GmbH", "DE", "München", "80331", "Marienplatz 2", "DE129273398", False),
    ("GROUP-0003", "Helios France SARL", "FR", "Lyon", "69002", "12 rue de la République", "FR40303265045", False),
    ("GROUP-0004", "Helios Akademie", "DE", "Hamburg", "20095", "Mönckebergstraße 7", "", True),
)


def seed_parent_accounts() -> int:
    """The parent with its three consolidated children and their subscriptions (started together, so the billing
    run bills them on one invoice per billing date); returns how many customers were created."""
    if Customer.objects.filter(external_id=_PARENT[0]).exists():
        return 0
    today = billing_today()
    start = today - dt.timedelta(days=12)
    with transaction.atomic():
        external_id, name, country, city, postal, street, tax_id = _PARENT
        parent = Customer.objects.create(
            external_id=external_id,
            name=name,
            legal_name=name,
            email="finance@helios-holding.example",
            country=country,
            city=city,
            postal_code=postal,
            address_line1=street,
            tax_id=tax_id,
            currency="EUR",
            payment_terms_days=30,
        )
        catalog = _catalog("EUR")
        ebook = _price(
            _product("Admin handbook (e-book)", "The administrator's handbook as an e-book."),
            "Admin handbook (e-book)",
            Decimal("24.99"),
            "EUR",
            tax_category="AA",
        )
        for external_id, name, country, city, postal, street, tax_id, buys_ebook in _CHILDREN:
            child = Customer.objects.create(
                external_id=external_id,
                name=name,
                legal_name=name,
                email=f"billing@{external_id.lower()}.example",
                country=country,
                city=city,
                postal_code=postal,
                address_line1=street,
                tax_id=tax_id,
                currency="EUR",
                parent=parent,
                billing_mode="consolidated",
            )
            items = [ItemSpec(catalog["seats"], 5)]
            if buys_ebook:
                items.append(ItemSpec(ebook, 2))
            subscription_create(
                customer=child, items=items, start_date=start, metadata={"demo_key": external_id}, trial_days=0
            )
    return 1 + len(_CHILDREN)
