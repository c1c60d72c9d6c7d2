"""The subscription screens as staff use them: create with a preview, change items, coupons, cancel, pause,
trial, bill now — plain forms with stable labels; clerks may, auditors see no buttons and get 403; bounded
queries."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from djmoney.money import Money

from invoicing.billing_run import billing_run
from invoicing.models import CreditNote, Invoice
from subscriptions.models import Discount, Subscription, SubscriptionEvent, SubscriptionStatus
from subscriptions.services import ItemSpec, subscription_create
from tests.factories import CustomerFactory, StaffUserFactory
from tests.factories.subscriptions import CouponFactory, PriceFactory

pytestmark = pytest.mark.django_db
D = dt.date
TODAY = dt.datetime(2026, 3, 10, 9, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _today():
    with time_machine.travel(TODAY, tick=False):
        yield


@pytest.fixture
def clerk_client(client):
    client.force_login(StaffUserFactory(group="Billing clerk"))
    return client


@pytest.fixture
def auditor_client(client):
    client.force_login(StaffUserFactory(group="Auditor (read-only)"))
    return client


@pytest.fixture
def catalog(series, vat_de):
    pro = PriceFactory(per_unit=True, unit_amount=Money("29.99", "EUR"), product__name="Pro seats")
    support = PriceFactory(unit_amount=Money("49.00", "EUR"), product__name="Support")
    return pro, support


def _create_data(customer, items, **extra):
    data = {
        "customer": customer.pk,
        "start_date": "2026-03-10",
        "collection_method": "send_invoice",
        "items-TOTAL_FORMS": "3",
        "items-INITIAL_FORMS": "0",
        "coupon": "",
        "trial_days": "",
        "trial_end": "",
        "billing_cycle_anchor": "",
        "days_until_due": "",
    }
    for index, (price, quantity) in enumerate(items):
        data[f"items-{index}-price"] = price.pk
        data[f"items-{index}-quantity"] = quantity
    data.update(extra)
    return data


def test_clerk_creates_a_subscription_with_two_items_and_a_coupon_after_its_preview(
    clerk_client, catalog, django_assert_max_num_queries
):
    pro, support = catalog
    customer = CustomerFactory(name="Acme GmbH")
    CouponFactory(code="LAUNCH", percent_off=Decimal("10"), duration="forever")
    url = reverse("admin:subscriptions_subscription_add")
    response = clerk_client.get(f"{url}?customer={customer.pk}")
    assert response.status_code == 200
    assert f'value="{customer.pk}"' in response.content.decode()  # pre-filled from the customer page's link
    data = _create_data(customer, [(pro, 3), (support, "")], coupon="LAUNCH", _preview="Preview")
    with django_assert_max_num_queries(60):
        response = clerk_client.post(url, data)
    content = response.content.decode()
    assert response.status_code == 200 and "Create subscription" in content
    # 3 × 29.99 = 89.97 − 9.00, 49.00 − 4.90; tax 15.38 + 8.38 (per line); total 148.83
    assert "First invoice" in content and "Next renewal" in content
    assert "€89.97" in content and "-€9.00" in content and "€148.83" in content
    assert not Subscription.objects.exists()
    # Changing a value after the preview previews again instead of creating.
    stale = {
        **data,
        "days_until_due": "5",
        "_create": "Create subscription",
        "preview_of": response.context["preview_of"],
    }
    stale.pop("_preview")
    response = clerk_client.post(url, stale)
    assert response.status_code == 200 and not Subscription.objects.exists()
    assert "changed since its preview" in response.content.decode()
    create = {**stale, "preview_of": response.context["preview_of"]}
    response = clerk_client.post(url, create)
    assert response.status_code == 302
    subscription = Subscription.objects.get()
    assert sorted((i.price_id, i.quantity) for i in subscription.items.all()) == [(pro.pk, 3), (support.pk, 1)]
    assert subscription.days_until_due == 5 and subscription.discounts.get().coupon.code == "LAUNCH"
    assert SubscriptionEvent.objects.filter(subscription=subscription, reason="created").get().actor is not None
    assert LogEntry.objects.filter(object_id=str(subscription.pk), content_type__model="subscription").exists()
    billing_run(as_of=D(2026, 3, 10))
    assert Invoice.objects.get(subscription=subscription).total == Decimal("148.83")


@pytest.mark.parametrize(
    ("case", "field_text"),
    [
        ("usd", "is billed in EUR"),
        ("metered", "is metered"),
        ("anchor", "within the first period"),
        ("coupon", "has expired"),
        ("no_coupon", "there is no coupon with this code"),
    ],
)
def test_create_names_the_bad_field(clerk_client, catalog, case, field_text):
    pro, _ = catalog
    customer = CustomerFactory()
    items = [(pro, 2)]
    extra = {"_preview": "Preview"}
    if case == "usd":
        items = [(PriceFactory(unit_amount=Money("10", "USD")), 1)]
    elif case == "metered":
        items = [(PriceFactory(metered=True), 4)]
    elif case == "anchor":
        extra["billing_cycle_anchor"] = "2026-04-15"
    elif case == "coupon":
        CouponFactory(code="OLD", redeem_by=D(2026, 1, 1))
        extra["coupon"] = "OLD"
    else:
        extra["coupon"] = "NOPE"
    response = clerk_client.post(
        reverse("admin:subscriptions_subscription_add"), _create_data(customer, items, **extra)
    )
    content = response.content.decode()
    assert response.status_code == 200 and 'class="errorlist' in content and field_text in content
    assert not Subscription.objects.exists()


def _subscription(catalog, **kwargs):
    pro, support = catalog
    subscription = subscription_create(
        customer=CustomerFactory(),
        items=[ItemSpec(price=pro, quantity=5), ItemSpec(price=support)],
        start_date=D(2026, 3, 1),
        **kwargs,
    )
    billing_run(as_of=D(2026, 3, 1))
    subscription.refresh_from_db()
    return subscription


TOOLS = ("Change items", "Apply coupon", "Cancel at period end", "Pause", "Bill now", "Cancel now")


def test_change_page_shows_the_tools_to_a_clerk_and_none_to_an_auditor(
    clerk_client, catalog, django_assert_max_num_queries
):
    subscription = _subscription(catalog)
    url = reverse("admin:subscriptions_subscription_change", args=[subscription.pk])
    with django_assert_max_num_queries(40):
        content = clerk_client.get(url).content.decode()
    for label in TOOLS:
        assert f">{label}</a>" in content
    assert "renews on 01 Apr 2026" in content
    auditor = StaffUserFactory(group="Auditor (read-only)")
    clerk_client.force_login(auditor)
    content = clerk_client.get(url).content.decode()
    for label in TOOLS:
        assert f">{label}</a>" not in content


@pytest.mark.parametrize(
    "name",
    [
        "change_plan",
        "coupon",
        "cancel_at_period_end",
        "undo_cancel",
        "pause",
        "resume",
        "extend_trial",
        "bill_now",
        "cancel_now",
    ],
)
def test_an_auditor_gets_403_on_every_operation(auditor_client, catalog, name):
    subscription = _subscription(catalog)
    url = reverse(f"admin:subscriptions_subscription_{name}", args=[subscription.pk])
    assert auditor_client.get(url).status_code == 403
    assert auditor_client.post(url, {"as_of": "2026-03-10", "_apply": "x"}).status_code == 403


def test_an_auditor_cannot_open_the_create_page_nor_bill_a_customer(auditor_client, catalog):
    assert auditor_client.get(reverse("admin:subscriptions_subscription_add")).status_code == 403
    customer = CustomerFactory()
    assert auditor_client.get(reverse("admin:customers_customer_bill_now", args=[customer.pk])).status_code == 403


def test_upgrade_with_always_invoice_from_the_admin_issues_an_invoice_and_keeps_the_other_item(
    clerk_client, catalog, django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    pro, support = catalog
    subscription = _subscription(catalog)
    url = reverse("admin:subscriptions_subscription_change_plan", args=[subscription.pk])
    with django_assert_max_num_queries(30):
        response = clerk_client.get(url)
    assert response.status_code == 200
    data = {
        "items-TOTAL_FORMS": "3",
        "items-INITIAL_FORMS": "2",
        "items-0-price": pro.pk,
        "items-0-quantity": "8",
        "items-1-price": support.pk,
        "items-1-quantity": "1",
        "as_of": "2026-03-14",
        "proration_behavior": "always_invoice",
        "reason": "",
        "_preview": "Preview",
    }
    response = clerk_client.post(url, data)
    content = response.content.decode()
    assert "Charged now" in content and "€62.17" in content and "Apply this change" in content
    data.pop("_preview")
    with django_capture_on_commit_callbacks(execute=True):
        response = clerk_client.post(
            url, {**data, "_apply": "Apply this change", "preview_of": response.context["preview_of"]}, follow=True
        )
    issued = Invoice.objects.filter(subscription=subscription).order_by("pk").last()
    assert issued.total == Decimal("62.17") and issued.number in response.content.decode()
    assert sorted((i.price_id, i.quantity) for i in subscription.items.filter(removed_on__isnull=True)) == [
        (pro.pk, 8),
        (support.pk, 1),
    ]


def test_bill_now_previews_then_bills_and_links_the_invoices(clerk_client, catalog):
    pro, _ = catalog
    customer = CustomerFactory()
    subscription_create(customer=customer, items=[ItemSpec(price=pro, quantity=2)], start_date=D(2026, 3, 10))
    url = reverse("admin:customers_customer_bill_now", args=[customer.pk])
    content = clerk_client.get(url).content.decode()
    assert "Will issue an invoice of €71.38" in content and not Invoice.objects.exists()
    response = clerk_client.post(url, {"as_of": "2026-03-10", "_bill": "Bill now"}, follow=True)
    invoice = Invoice.objects.get()
    assert invoice.total == Decimal("71.38")
    content = response.content.decode()
    assert reverse("admin:invoicing_invoice_change", args=[invoice.pk]) in content and invoice.number in content


def test_pause_resume_cancel_at_period_end_and_undo_from_the_page(clerk_client, catalog):
    subscription = _subscription(catalog)

    def post(name, data):
        url = reverse(f"admin:subscriptions_subscription_{name}", args=[subscription.pk])
        assert clerk_client.get(url).status_code == 200
        response = clerk_client.post(url, {**data, "_apply": "x"})
        assert response.status_code == 302, response.content.decode()[:2000]
        subscription.refresh_from_db()

    post("cancel_at_period_end", {"reason": "too expensive"})
    assert subscription.cancel_at_period_end
    change = clerk_client.get(reverse("admin:subscriptions_subscription_change", args=[subscription.pk]))
    assert "cancels at the end of the period" in change.content.decode()
    post("undo_cancel", {"reason": ""})
    assert not subscription.cancel_at_period_end
    post("pause", {"mode": "billing", "as_of": "2026-03-10", "reason": ""})
    assert subscription.status == SubscriptionStatus.PAUSED
    change = clerk_client.get(reverse("admin:subscriptions_subscription_change", args=[subscription.pk]))
    assert "billing paused" in change.content.decode() and ">Resume</a>" in change.content.decode()
    post("resume", {"as_of": "2026-03-12", "reason": ""})
    assert subscription.status == SubscriptionStatus.ACTIVE


def test_coupon_apply_and_remove_from_the_page(clerk_client, catalog):
    subscription = _subscription(catalog)
    CouponFactory(code="SPRING", percent_off=Decimal("15"), duration="forever")
    url = reverse("admin:subscriptions_subscription_coupon", args=[subscription.pk])
    response = clerk_client.post(url, {"coupon": "SPRING", "as_of": "2026-03-10", "_apply": "Apply coupon"})
    assert response.status_code == 302
    discount = Discount.objects.get()
    page = clerk_client.get(reverse("admin:subscriptions_subscription_change", args=[subscription.pk]))
    remove = reverse("admin:subscriptions_subscription_coupon_remove", args=[subscription.pk, discount.pk])
    assert remove in page.content.decode()
    response = clerk_client.post(remove, {"as_of": "2026-03-20", "_apply": "Remove coupon"})
    assert response.status_code == 302
    assert Discount.objects.get().end == D(2026, 3, 20)


def test_extend_trial_from_the_page(clerk_client, catalog):
    pro, _ = catalog
    subscription = subscription_create(
        customer=CustomerFactory(), items=[ItemSpec(price=pro)], start_date=D(2026, 3, 1), trial_days=14
    )
    url = reverse("admin:subscriptions_subscription_extend_trial", args=[subscription.pk])
    response = clerk_client.post(url, {"trial_end": "2026-03-31", "reason": "", "_apply": "Extend trial"})
    assert response.status_code == 302
    subscription.refresh_from_db()
    assert subscription.trial_end == D(2026, 3, 31)


def test_cancel_now_from_the_page_offers_refund_only_to_those_who_may_refund(client, catalog):
    subscription = _subscription(catalog)
    url = reverse("admin:subscriptions_subscription_cancel_now", args=[subscription.pk])
    client.force_login(StaffUserFactory(group="Billing clerk"))
    content = client.get(url).content.decode()
    assert "Prorated credit" in content and "Refund to card" not in content
    assert "prorated credit" in content and "EUR" in content
    client.force_login(StaffUserFactory(group="Billing admin"))
    assert "Refund to card" in client.get(url).content.decode()
    response = client.post(url, {"as_of": "2026-03-14", "settlement": "credit", "reason": "", "_apply": "Cancel now"})
    assert response.status_code == 302
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.CANCELED
    # 178.44 + 58.31 = 236.75 billed; 18 of 31 days unused → 137.47
    assert CreditNote.objects.get().total == Decimal("137.47")


def test_interval_change_from_the_change_screen_previews_the_new_period_and_issues_it(
    clerk_client, catalog, django_capture_on_commit_callbacks
):
    pro, _ = catalog
    monthly = PriceFactory(unit_amount=Money("30.00", "EUR"), product__name="Studio")
    yearly = PriceFactory(yearly=True, unit_amount=Money("300.00", "EUR"), product=monthly.product)
    subscription = subscription_create(
        customer=CustomerFactory(), items=[ItemSpec(price=monthly)], start_date=D(2026, 4, 1)
    )
    billing_run(as_of=D(2026, 4, 1))
    url = reverse("admin:subscriptions_subscription_change_plan", args=[subscription.pk])
    data = {
        "items-TOTAL_FORMS": "1",
        "items-INITIAL_FORMS": "1",
        "items-0-price": yearly.pk,
        "items-0-quantity": "1",
        "as_of": "2026-04-10",
        "proration_behavior": "create_prorations",
        "reason": "",
        "_preview": "Preview",
    }
    response = clerk_client.post(url, data)
    content = response.content.decode()
    assert "Interval change: the billing cycle restarts on 10 Apr 2026" in content
    assert "10 Apr 2026 – 09 Apr 2027 is invoiced now" in content
    assert "Unused time on Studio × 1 from 10 Apr 2026 (21/30 days)" in content
    assert "€332.01" in content and "€357.00" in content  # now (300 − 21 + tax), the renewal (300 + tax)
    # Mixed intervals: the error is on the price.
    mixed = {**data, "items-TOTAL_FORMS": "2", "items-1-price": pro.pk, "items-1-quantity": "1"}
    refused = clerk_client.post(url, mixed).content.decode()
    assert "share one billing interval" in refused and "Apply this change" not in refused
    data.pop("_preview")
    with django_capture_on_commit_callbacks(execute=True):
        response = clerk_client.post(
            url, {**data, "_apply": "Apply this change", "preview_of": response.context["preview_of"]}, follow=True
        )
    issued = Invoice.objects.filter(subscription=subscription).order_by("pk").last()
    assert (issued.total, issued.billing_reason) == (Decimal("332.01"), "subscription_change")
    assert issued.number in response.content.decode()
    subscription.refresh_from_db()
    assert (subscription.interval, subscription.next_billing_date) == ("year", D(2027, 4, 10))


def test_pause_screen_offers_the_choice_and_collection_paused_is_stated(clerk_client, catalog):
    subscription = _subscription(catalog)
    url = reverse("admin:subscriptions_subscription_pause", args=[subscription.pk])
    page = clerk_client.get(url).content.decode()
    assert "Pause billing — no invoices while paused" in page and "Pause collection — keep invoicing" in page
    response = clerk_client.post(
        url,
        {"mode": "collection", "as_of": "2026-03-10", "resumes_on": "2026-04-15", "reason": "dispute", "_apply": "x"},
    )
    assert response.status_code == 302
    subscription.refresh_from_db()
    assert (subscription.status, subscription.pause_mode, subscription.resumes_on) == (
        "active",
        "collection",
        D(2026, 4, 15),
    )
    change = clerk_client.get(
        reverse("admin:subscriptions_subscription_change", args=[subscription.pk])
    ).content.decode()
    assert "collection paused since 10 Mar 2026 until 15 Apr 2026" in change and ">Resume collection</a>" in change
    assert ">Pause</a>" not in change
    bad = clerk_client.post(url, {"mode": "billing", "as_of": "2026-03-10", "resumes_on": "2026-03-01", "_apply": "x"})
    assert bad.status_code == 200  # collection is paused already: refused on the page
    resume = reverse("admin:subscriptions_subscription_resume", args=[subscription.pk])
    assert clerk_client.post(resume, {"as_of": "2026-03-20", "reason": "", "_apply": "x"}).status_code == 302
    subscription.refresh_from_db()
    assert subscription.pause_mode == ""
    reasons = list(SubscriptionEvent.objects.filter(subscription=subscription).values_list("reason", flat=True))
    assert "collection paused on 2026-03-10 until 2026-04-15: dispute" in reasons
    assert "collection resumed on 2026-03-20" in reasons


def test_a_resume_date_before_the_pause_is_refused_on_its_field(clerk_client, catalog):
    subscription = _subscription(catalog)
    url = reverse("admin:subscriptions_subscription_pause", args=[subscription.pk])
    response = clerk_client.post(
        url, {"mode": "billing", "as_of": "2026-03-10", "resumes_on": "2026-03-10", "_apply": "x"}
    )
    assert response.status_code == 200
    assert response.context["form"].errors["resumes_on"] == [
        "the resume date must be after the pause date (2026-03-10)"
    ]


def _change_form_data(response) -> dict:
    """What the browser posts back from the subscription page: the form's values and the inlines' management forms."""
    data = {}
    for name, field in response.context["adminform"].form.fields.items():
        value = response.context["adminform"].form.initial.get(name, field.initial)
        data[name] = "" if value is None else (value if not isinstance(value, dict) else "{}")
    for inline in response.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        for key in ("TOTAL_FORMS", "INITIAL_FORMS", "MIN_NUM_FORMS", "MAX_NUM_FORMS"):
            data[f"{inline.formset.prefix}-{key}"] = management.initial.get(key, 0)
        for index, form in enumerate(inline.formset.forms):
            if form.instance.pk:
                data[f"{inline.formset.prefix}-{index}-id"] = form.instance.pk
                data[f"{inline.formset.prefix}-{index}-subscription"] = form.instance.subscription_id
    return data


def test_collection_settings_on_the_page_go_through_the_service_with_the_actor(clerk_client, catalog):
    subscription = _subscription(catalog)
    url = reverse("admin:subscriptions_subscription_change", args=[subscription.pk])
    data = _change_form_data(clerk_client.get(url))
    data.update(collection_method="charge_automatically", days_until_due="7")
    response = clerk_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    subscription.refresh_from_db()
    assert (subscription.collection_method, subscription.days_until_due) == ("charge_automatically", 7)
    event = SubscriptionEvent.objects.filter(subscription=subscription).order_by("pk").last()
    assert event.actor.groups.filter(name="Billing clerk").exists()
    assert event.reason == (
        "collection changed: Send invoice, due in customer's terms → Charge automatically, due in 7 days"
    )
    too_late = clerk_client.post(url, {**data, "days_until_due": "400"})
    assert too_late.status_code == 200 and "between 0 and 365" in too_late.content.decode()


def test_commitment_and_thresholds_are_set_on_the_page_and_the_period_is_shown_against_them(clerk_client, catalog):
    subscription = _subscription(catalog)  # March billed in advance: 5 × 29.99 + 49.00 = 198.95
    url = reverse("admin:subscriptions_subscription_change", args=[subscription.pk])
    data = _change_form_data(clerk_client.get(url))
    data.update(minimum_commitment="500.00", usage_thresholds="2500.5, 1000")

    response = clerk_client.post(url, data)

    assert response.status_code == 302, response.content.decode()[:3000]
    subscription.refresh_from_db()
    assert (subscription.minimum_commitment, subscription.usage_thresholds) == (
        Decimal("500.000"),
        ["1000.00", "2500.50"],
    )
    assert subscription.period_recurring_net == Decimal("198.950")
    event = SubscriptionEvent.objects.filter(subscription=subscription).order_by("pk").last()
    assert event.reason == "commitment changed: minimum 500.00 EUR, usage thresholds 1000.00, 2500.50"
    page = clerk_client.get(url).content.decode()
    assert "Recurring fees billed for the period</th><td>€198.95" in page
    assert "€500.00 — €301.05 short so far" in page
    assert "Usage thresholds</th><td>€1,000.00, €2,500.50" in page
    assert 'name="minimum_commitment" value="500.00"' in page  # the currency's cents, not the column's 500.000
    refused = clerk_client.post(url, {**data, "usage_thresholds": "1000, lots"})
    assert refused.status_code == 200 and "&#x27;lots&#x27; is not an amount" in refused.content.decode()
