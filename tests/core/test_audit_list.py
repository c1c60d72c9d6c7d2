"""The audit list (Core › Audit trail) and the customer timeline: one read-only, searchable list of every audited
change, and the customer page's merged history, each in a bounded number of queries."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone
from djmoney.money import Money

from billing_project.staff_groups import AUDITOR, BILLING_ADMIN, BILLING_CLERK
from core.audit import audit_as_customer, audit_as_job, audit_as_staff
from customers.models import Customer
from invoicing.models import InvoiceEvent
from notifications.models import OutboundEmail
from payments.models import Payment
from reporting.timeline import customer_timeline
from subscriptions.models import Price, Subscription, SubscriptionEvent
from tests.factories import CustomerFactory, InvoiceFactory, PriceFactory, StaffUserFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db
LIST_URL = "admin:core_auditevent_changelist"


def _rows(customers: int = 3) -> list[Customer]:
    made = []
    bea = User.objects.filter(username="bea").first() or StaffUserFactory(username="bea")
    for n in range(customers):
        customer = CustomerFactory(name=f"Customer {n}")
        with audit_as_staff(bea):
            Customer.objects.filter(pk=customer.pk).update(city=f"City {n}")
        with audit_as_customer(customer):
            Customer.objects.filter(pk=customer.pk).update(phone=f"+49 30 {n}")
        made.append(customer)
    price = PriceFactory(unit_amount=Money(Decimal("10.00"), "EUR"))
    with audit_as_job("billing run #7"):
        Price.objects.filter(pk=price.pk).update(unit_amount=Decimal("12.50"))
    return made


@pytest.mark.parametrize("group", [AUDITOR, BILLING_CLERK, BILLING_ADMIN])
def test_every_staff_role_reads_the_list_and_nobody_can_add_change_or_delete(client, group):
    _rows(1)
    client.force_login(StaffUserFactory(group=group))

    response = client.get(reverse(LIST_URL))
    page = response.content.decode()

    assert "City 0" in page and "bea" in page and "staff user" in page and "customer (portal)" in page
    assert "unit amount: €10.00 → €12.50" in page and "billing run #7" in page
    assert response.context["has_add_permission"] is False and not response.context["action_form"]
    assert response.context["cl"].list_display_links is None  # rows link to the audited object, not to an edit form
    assert client.get(reverse("admin:core_auditevent_add")).status_code == 403
    slug = "customers.CustomerAudit:1"
    assert client.post(reverse("admin:core_auditevent_delete", args=[slug]), {"post": "yes"}).status_code in (403, 404)
    assert client.post(reverse("admin:core_auditevent_change", args=[slug]), {}).status_code in (403, 404)


def test_staff_without_a_role_cannot_open_the_list(client):
    client.force_login(StaffUserFactory())
    response = client.get(reverse(LIST_URL))
    assert response.status_code in (302, 403) and "City" not in response.content.decode()


def test_filter_by_model_actor_kind_and_date_and_search_by_object_id_or_actor(client):
    customers = _rows(3)
    client.force_login(StaffUserFactory(group=AUDITOR))
    url = reverse(LIST_URL)

    by_model = client.get(url, {"model": "subscriptions.Price"}).content.decode()
    by_kind = client.get(url, {"actor_kind": "customer"}).content.decode()
    by_id = client.get(url, {"q": str(customers[1].pk), "model": "customers.Customer"}).content.decode()
    by_actor = client.get(url, {"q": "billing run"}).content.decode()
    tomorrow = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)
    by_date = client.get(url, {"pgh_created_at__gte": str(tomorrow)}).content.decode()
    today = client.get(url, {"pgh_created_at__lt": str(tomorrow)}).content.decode()

    assert "€12.50" in by_model and "City 0" not in by_model
    assert "+49 30 2" in by_kind and "City 2" not in by_kind
    assert "City 1" in by_id and "City 0" not in by_id and "City 2" not in by_id
    assert "€12.50" in by_actor and "City 0" not in by_actor
    assert "City 0" not in by_date and "€12.50" not in by_date
    assert "City 0" in today


def test_the_list_runs_a_bounded_number_of_queries(client, django_assert_max_num_queries):
    _rows(3)
    client.force_login(StaffUserFactory(group=AUDITOR))
    client.get(reverse(LIST_URL))  # warm the session and content types
    with django_assert_max_num_queries(12):
        small = client.get(reverse(LIST_URL))
    _rows(20)
    with django_assert_max_num_queries(12):
        large = client.get(reverse(LIST_URL))
    assert small.status_code == large.status_code == 200


def test_object_pages_show_the_audit_trail_in_bounded_queries(client, django_assert_max_num_queries):
    subscription = SubscriptionFactory()
    bea = StaffUserFactory(group=BILLING_ADMIN, username="bea")
    with audit_as_staff(bea):
        Subscription.objects.filter(pk=subscription.pk).update(days_until_due=30)
    client.force_login(bea)
    url = reverse("admin:subscriptions_subscription_change", args=[subscription.pk])
    client.get(url)
    with django_assert_max_num_queries(40):
        page = client.get(url).content.decode()
    trail = page[page.index("Audit trail") :]
    assert "days until due: — → 30" in trail and "bea" in trail


def test_timeline_merges_domain_events_e_mails_and_audited_changes_newest_first(django_assert_max_num_queries):
    customer = CustomerFactory(name="Timeline GmbH")
    bea = StaffUserFactory(username="bea")
    with time_machine.travel(dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC), tick=False):
        subscription = SubscriptionFactory(customer=customer)
    with time_machine.travel(dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC), tick=False):
        invoice = InvoiceFactory(customer=customer)
        InvoiceEvent.objects.create(
            invoice=invoice, at=dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC), from_status="draft", to_status="open"
        )
    SubscriptionEvent.objects.create(
        subscription=subscription, from_status="active", to_status="paused", reason="holiday", actor=bea
    )
    SubscriptionEvent.objects.filter(subscription=subscription, reason="holiday").update(
        at=dt.datetime(2026, 3, 3, 9, tzinfo=dt.UTC)
    )
    with time_machine.travel(dt.datetime(2026, 3, 4, 9, tzinfo=dt.UTC), tick=False):
        Payment.objects.create(
            customer=customer, currency="EUR", amount=Decimal("25.00"), received_on=dt.date(2026, 3, 4), created_by=bea
        )
    OutboundEmail.objects.create(
        kind="invoice",
        idempotency_key="timeline-1",
        customer=customer,
        from_email="billing@example.com",
        to_emails=["ap@timeline.example"],
        subject="Your invoice",
        body_text="…",
        template="invoice",
        queued_at=dt.datetime(2026, 3, 5, 9, tzinfo=dt.UTC),
    )
    with audit_as_staff(bea):
        Customer.objects.filter(pk=customer.pk).update(city="Leipzig")  # now: the newest

    with django_assert_max_num_queries(8):
        items = customer_timeline(customer=customer)

    kinds = [item.kind for item in items]
    assert kinds[0] == "change" and "city" in items[0].detail and items[0].actor == "bea"
    assert [item.at for item in items] == sorted((item.at for item in items), reverse=True)
    position = {item.title: index for index, item in enumerate(items) if item.kind != "change"}
    email, paid, paused, issued = (
        next(i for title, i in position.items() if title.startswith(prefix))
        for prefix in (
            "E-mail “Your invoice”",
            "Payment #",
            f"Subscription #{subscription.pk}: Active → Paused",
            "Invoice ",
        )
    )
    assert email < paid < paused < issued
    payment = next(item for item in items if item.kind == "payment")
    assert "€25.00" in payment.title and payment.actor == "bea"
    audited = {item.title.split(" #")[0] for item in items if item.kind == "change"}
    assert {"Customer", "Subscription", "Invoice", "Payment"} <= audited


def test_customer_page_shows_the_timeline(client):
    customer = CustomerFactory(name="Page GmbH")
    bea = StaffUserFactory(group=AUDITOR, username="audrey")
    with audit_as_job("celery task invoicing.send_reminders"):
        Customer.objects.filter(pk=customer.pk).update(city="Halle")
    client.force_login(bea)
    page = client.get(reverse("admin:customers_customer_change", args=[customer.pk])).content.decode()
    timeline = page[page.index("Timeline") :]
    assert "celery task invoicing.send_reminders" in timeline and "city: Berlin → Halle" in timeline


def _edited(profile):
    profile.legal_name = "Nordlicht Software GmbH"
    profile.save()
    return profile


def services_endpoint_create():
    """A webhook endpoint (webhooks app): audited without its secrets."""
    from webhooks.services import endpoint_create

    return endpoint_create(url="https://93.184.215.14/hooks").endpoint


def test_every_audited_model_with_an_admin_shows_its_audit_trail_on_its_change_page(admin_client):
    from django.contrib import admin
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from accounting.models import ExchangeRate
    from api.keys import api_key_create
    from core.audit import audit_specs
    from customers.seller import seller_profile
    from payments.wallets import wallet_configure
    from subscriptions.models import Discount
    from tests.factories import (
        CouponFactory,
        CustomerDunningSettingsFactory,
        DunningPolicyFactory,
        PaymentMethodFactory,
        ProductFactory,
        TaxRateFactory,
        record_payment,
    )
    from tests.factories.subscriptions import BillableMetricFactory

    customer = CustomerFactory()
    subscription = SubscriptionFactory(customer=customer)  # its price is in use: every field read-only
    coupon = CouponFactory()
    every = IntervalSchedule.objects.create(every=1, period="days")
    objects = [
        customer,
        subscription,
        subscription.items.first().price,
        PriceFactory(),  # not in use: editable
        ProductFactory(),
        coupon,
        Discount.objects.create(coupon=coupon, customer=customer, start=dt.date(2026, 1, 1)),
        TaxRateFactory(country="AT"),
        InvoiceFactory(customer=customer),
        record_payment(customer=customer, amount="10.00"),
        PaymentMethodFactory(customer=customer),
        DunningPolicyFactory(),
        CustomerDunningSettingsFactory(customer=CustomerFactory()),
        PeriodicTask.objects.create(name="nightly", task="core.process_events", interval=every),
        _edited(seller_profile()),  # the one row, created by its migration before the audit triggers existed
        services_endpoint_create(),
        ExchangeRate.objects.create(date=dt.date(2026, 12, 4), currency="USD", rate="1.0512"),
        BillableMetricFactory(),
        api_key_create(name="audit test", scope="read").api_key,
        wallet_configure(customer=customer),
    ]
    registered = {spec.model._meta.concrete_model for spec in audit_specs()} & set(admin.site._registry)
    assert registered <= {type(obj) for obj in objects}
    for obj in objects:
        opts = type(obj)._meta
        response = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]))
        page = response.content.decode()
        assert response.status_code == 200, opts.label
        assert ("Audit trail" in page or "Timeline" in page) and ("created" in page or "changed" in page), opts.label
