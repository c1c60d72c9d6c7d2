"""Staff subscription operations that end in invoices: previews equal, to the cent, what is then issued — for a
new subscription (first invoice and renewal), for a change with each proration behaviour, and for "Bill now";
always_invoice issues an invoice at once and queues its e-mail; the other items survive a change."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.management import call_command
from djmoney.money import Money

from invoicing.billing_run import billing_run
from invoicing.models import Invoice, InvoiceStatus
from invoicing.subscription_billing import (
    billing_run_for_customer,
    subscription_change_invoice,
    subscription_change_preview_full,
    subscription_create_preview,
)
from notifications.models import EmailKind, OutboundEmail
from subscriptions.models import Coupon, PendingInvoiceItem, Subscription, SubscriptionEvent
from subscriptions.services import ItemSpec, ProrationBehavior, subscription_create
from tests.factories import CustomerFactory, StaffUserFactory
from tests.factories.subscriptions import CouponFactory, PriceFactory

pytestmark = pytest.mark.django_db
D = dt.date


def _summary(invoice: Invoice, lines) -> tuple:
    return (
        invoice.subtotal,
        invoice.discount_total,
        invoice.tax_total,
        invoice.total,
        invoice.period_start,
        invoice.period_end,
        [(line.description, line.amount, line.discount_amount, line.tax_amount, line.total_amount) for line in lines],
    )


def _issued(invoice: Invoice) -> tuple:
    return _summary(invoice, list(invoice.lines.order_by("position")))


@pytest.fixture
def plans(series, vat_de):
    pro = PriceFactory(per_unit=True, unit_amount=Money("29.99", "EUR"), product__name="Pro seats")
    support = PriceFactory(unit_amount=Money("49.00", "EUR"), product__name="Support")
    return pro, support


def test_create_preview_equals_the_first_invoice_and_the_renewal_the_billing_run_issues(plans):
    pro, support = plans
    customer = CustomerFactory(payment_terms_days=30)
    coupon = CouponFactory(code="WELCOME20", percent_off=Decimal("20"), duration="repeating", duration_in_periods=2)
    coupon.products.add(pro.product)
    arguments = {
        "customer": customer,
        "items": [ItemSpec(price=pro, quantity=3), ItemSpec(price=support, quantity=1)],
        "start_date": D(2026, 3, 10),
        "billing_cycle_anchor": D(2026, 4, 1),
        "collection_method": "send_invoice",
        "days_until_due": 10,
        "coupon": coupon,
    }
    preview = subscription_create_preview(as_of=D(2026, 3, 10), **arguments)
    assert not Subscription.objects.exists() and Coupon.objects.get().times_redeemed == 0  # nothing written
    (first,) = preview.first
    # Partial first period 10–31 March (22 of 31 days): 3 × 29.99 × 22/31 = 63.85, 49.00 × 22/31 = 34.77;
    # 20 % off the Pro line only (12.77), then 19 % VAT.
    assert [line.amount for line in first.lines] == [Decimal("63.85"), Decimal("34.77")]
    assert [line.discount_amount for line in first.lines] == [Decimal("12.77"), Decimal("0.00")]
    assert (first.invoice.subtotal, first.invoice.tax_total, first.invoice.total) == (
        Decimal("98.62"),
        Decimal("16.32"),  # 19 % of each net line, rounded per line: 9.71 + 6.61
        Decimal("102.17"),
    )
    assert (first.issue_date, first.due_date) == (D(2026, 3, 10), D(2026, 3, 20))
    assert preview.renewal is not None
    assert (preview.renewal.invoice.period_start, preview.renewal.invoice.total) == (D(2026, 4, 1), Decimal("143.97"))

    subscription = subscription_create(**arguments)
    billing_run(as_of=D(2026, 3, 10))
    issued = Invoice.objects.get(subscription=subscription)
    assert _issued(issued) == _summary(first.invoice, first.lines)
    assert issued.due_date == first.due_date and issued.status == InvoiceStatus.OPEN
    billing_run(as_of=D(2026, 4, 1))
    renewal = Invoice.objects.filter(subscription=subscription).order_by("-pk").first()
    assert _issued(renewal) == _summary(preview.renewal.invoice, preview.renewal.lines)
    assert renewal.due_date == preview.renewal.due_date == D(2026, 4, 11)


def test_create_preview_with_a_trial_bills_at_the_trials_end(plans):
    pro, _ = plans
    customer = CustomerFactory()
    preview = subscription_create_preview(
        customer=customer, items=[ItemSpec(price=pro, quantity=2)], start_date=D(2026, 3, 1), trial_days=14,
        as_of=D(2026, 3, 1),
    )  # fmt: skip
    (first,) = preview.first
    assert (preview.trial_end, first.issue_date, first.invoice.period_start) == (D(2026, 3, 15),) * 3
    assert first.invoice.total == Decimal("71.38")  # 2 × 29.99 = 59.98 + 19 % = 11.40
    assert preview.renewal.invoice.period_start == D(2026, 4, 15)


@pytest.mark.parametrize(
    ("field", "arguments", "message"),
    [
        ("price", {"price_currency": "USD"}, "is billed in EUR"),
        ("quantity", {"metered_quantity": 5}, "is metered"),
        ("billing_cycle_anchor", {"billing_cycle_anchor": D(2026, 4, 10)}, "within the first period"),
        ("billing_cycle_anchor", {"billing_cycle_anchor": D(2026, 3, 1)}, "within the first period"),
        ("coupon", {"coupon": "expired"}, "has expired"),
        ("coupon", {"coupon": "limit"}, "redemption limit"),
        ("coupon", {"coupon": "product"}, "not valid for these products"),
    ],
)
def test_bad_input_to_create_names_the_field(plans, field, arguments, message):
    from core.errors import ApplicationError

    pro, _ = plans
    customer = CustomerFactory()
    items = [ItemSpec(price=pro, quantity=2)]
    coupon = None
    if "price_currency" in arguments:
        items = [ItemSpec(price=PriceFactory(unit_amount=Money("10", "USD")), quantity=1)]
    if "metered_quantity" in arguments:
        items = [ItemSpec(price=PriceFactory(metered=True), quantity=arguments["metered_quantity"])]
    if arguments.get("coupon") == "expired":
        coupon = CouponFactory(redeem_by=D(2026, 3, 1))
    elif arguments.get("coupon") == "limit":
        coupon = CouponFactory(max_redemptions=1, times_redeemed=1)
    elif arguments.get("coupon") == "product":
        coupon = CouponFactory()
        coupon.products.add(PriceFactory().product)
    with pytest.raises(ApplicationError, match=message) as caught:
        subscription_create_preview(
            customer=customer,
            items=items,
            start_date=D(2026, 3, 5),
            billing_cycle_anchor=arguments.get("billing_cycle_anchor"),
            coupon=coupon,
        )
    assert caught.value.field == field
    assert not Subscription.objects.exists()


# --- change -----------------------------------------------------------------------------------------------


def _two_item_subscription(plans, *, collection_method="send_invoice"):
    pro, support = plans
    customer = CustomerFactory()
    subscription = subscription_create(
        customer=customer,
        items=[ItemSpec(price=pro, quantity=5), ItemSpec(price=support, quantity=1)],
        start_date=D(2026, 3, 1),
        collection_method=collection_method,
    )
    billing_run(as_of=D(2026, 3, 1))
    subscription.refresh_from_db()
    return subscription


@pytest.mark.parametrize("behavior", list(ProrationBehavior))
def test_change_preview_equals_what_is_then_issued_for_each_proration_behavior(
    plans, behavior, django_capture_on_commit_callbacks
):
    pro, support = plans
    subscription = _two_item_subscription(plans)
    items = [ItemSpec(price=pro, quantity=8), ItemSpec(price=support, quantity=1)]
    preview = subscription_change_preview_full(
        subscription=subscription, items=items, as_of=D(2026, 3, 14), proration_behavior=behavior
    )
    assert not PendingInvoiceItem.objects.exists()  # a preview writes nothing
    with django_capture_on_commit_callbacks(execute=True):
        outcome = subscription_change_invoice(
            subscription=subscription, items=items, as_of=D(2026, 3, 14), proration_behavior=behavior
        )
    # The other item survives; Pro goes 5 → 8 seats.
    assert sorted((i.price.product.name, i.quantity) for i in subscription.items.filter(removed_on__isnull=True)) == [
        ("Pro seats", 8),
        ("Support", 1),
    ]
    if behavior == ProrationBehavior.NONE:
        assert preview.proration_lines == [] and preview.now is None and outcome.invoice is None
    else:
        # 18 of 31 days left: −5 × 29.99 × 18/31 = −87.07, +8 × 29.99 × 18/31 = 139.31.
        assert [line.amount.amount for line in preview.proration_lines] == [Decimal("-87.07"), Decimal("139.31")]
    if behavior == ProrationBehavior.ALWAYS_INVOICE:
        assert preview.now is not None and outcome.invoice is not None
        issued = Invoice.objects.get(pk=outcome.invoice.pk)
        assert issued.status == InvoiceStatus.OPEN and issued.number and issued.issue_date == D(2026, 3, 14)
        assert _issued(issued) == _summary(preview.now.invoice, preview.now.lines)
        assert issued.total == Decimal("62.17")  # 52.24 + 19 % VAT 9.93
        assert issued.due_date == preview.now.due_date
        assert OutboundEmail.objects.filter(invoice=issued, kind=EmailKind.INVOICE).count() == 1
    else:
        assert Invoice.objects.filter(subscription=subscription).count() == 1  # nothing issued now
    billing_run(as_of=D(2026, 4, 1))
    nxt = Invoice.objects.filter(subscription=subscription, period_start=D(2026, 4, 1)).get()
    assert _issued(nxt) == _summary(preview.next_invoice.invoice, preview.next_invoice.lines)
    expected_next = {
        # 239.92 + 49 + 52.24 net, tax per line 45.58 + 9.31 − 16.54 + 26.47
        ProrationBehavior.CREATE_PRORATIONS: Decimal("405.98"),
        ProrationBehavior.ALWAYS_INVOICE: Decimal("343.81"),  # 239.92 + 49 net, tax 45.58 + 9.31
        ProrationBehavior.NONE: Decimal("343.81"),
    }[behavior]
    assert nxt.total == expected_next


def test_always_invoice_of_a_downgrade_nets_to_a_credit_and_reduces_the_next_invoice(plans):
    pro, support = plans
    subscription = _two_item_subscription(plans)
    outcome = subscription_change_invoice(
        subscription=subscription,
        items=[ItemSpec(price=pro, quantity=2), ItemSpec(price=support, quantity=1)],
        as_of=D(2026, 3, 14),
        proration_behavior=ProrationBehavior.ALWAYS_INVOICE,
    )
    assert outcome.invoice is None and "credit" in outcome.note
    billing_run(as_of=D(2026, 4, 1))
    nxt = Invoice.objects.get(subscription=subscription, period_start=D(2026, 4, 1))
    # 59.98 + 49 − 87.07 + 34.83 = 56.74 net, tax per line 11.40 + 9.31 − 16.54 + 6.62 = 10.79
    assert nxt.total == Decimal("67.53")


def test_a_change_is_audited_with_its_actor(plans):
    pro, support = plans
    clerk = StaffUserFactory(group="Billing clerk")
    subscription = _two_item_subscription(plans)
    subscription_change_invoice(
        subscription=subscription,
        items=[ItemSpec(price=pro, quantity=6), ItemSpec(price=support, quantity=1)],
        as_of=D(2026, 3, 20),
        actor=clerk,
        reason="two more seats",
    )
    event = SubscriptionEvent.objects.filter(subscription=subscription).order_by("pk").last()
    assert event.actor == clerk and "two more seats" in event.reason and "create_prorations" in event.reason


# --- bill now ---------------------------------------------------------------------------------------------


def test_bill_now_dry_run_equals_the_invoices_the_run_then_issues(plans):
    pro, support = plans
    customer = CustomerFactory()
    first = subscription_create(customer=customer, items=[ItemSpec(price=pro, quantity=4)], start_date=D(2026, 3, 1))
    second = subscription_create(
        customer=customer, items=[ItemSpec(price=support)], start_date=D(2026, 3, 1), days_until_due=3
    )
    other = subscription_create(customer=CustomerFactory(), items=[ItemSpec(price=support)], start_date=D(2026, 3, 1))
    dry = billing_run_for_customer(as_of=D(2026, 3, 2), customer=customer, dry_run=True)
    assert not Invoice.objects.exists()
    assert [p.total for p in dry.to_issue] == [Decimal("142.75"), Decimal("58.31")]
    assert dry.totals() == {"EUR": Decimal("201.06")}
    done = billing_run_for_customer(as_of=D(2026, 3, 2), customer=customer, dry_run=False)
    assert [invoice.subscription_id for invoice in done.invoices] == [first.pk, second.pk]
    for preview, invoice in zip(dry.to_issue, done.invoices, strict=True):
        assert _issued(invoice) == _summary(preview.invoice, preview.lines)
        assert invoice.due_date == preview.due_date
    assert [i.due_date for i in done.invoices] == [D(2026, 3, 16), D(2026, 3, 5)]
    assert not Invoice.objects.filter(subscription=other).exists()  # another customer's: not billed
    again = billing_run_for_customer(as_of=D(2026, 3, 2), customer=customer, dry_run=False)
    assert again.invoices == []  # each period once


def test_bill_now_for_one_subscription_and_the_command_option(plans):
    pro, support = plans
    customer = CustomerFactory()
    one = subscription_create(customer=customer, items=[ItemSpec(price=pro)], start_date=D(2026, 3, 1))
    two = subscription_create(customer=customer, items=[ItemSpec(price=support)], start_date=D(2026, 3, 1))
    result = billing_run_for_customer(as_of=D(2026, 3, 1), subscription=one)
    assert [i.subscription_id for i in result.invoices] == [one.pk]
    call_command("billing_run", "--as-of", "2026-03-01", "--subscription", str(two.pk))
    assert Invoice.objects.filter(subscription=two).count() == 1


def test_always_invoice_through_the_subscriptions_service_alone_is_issued_after_commit(
    plans, django_capture_on_commit_callbacks
):
    from subscriptions.services import subscription_change

    pro, support = plans
    subscription = _two_item_subscription(plans)
    with django_capture_on_commit_callbacks(execute=True):
        subscription_change(
            subscription=subscription,
            items=[ItemSpec(price=pro, quantity=8), ItemSpec(price=support, quantity=1)],
            as_of=D(2026, 3, 14),
            proration_behavior=ProrationBehavior.ALWAYS_INVOICE,
        )
    issued = Invoice.objects.filter(subscription=subscription, billing_reason="subscription_change").get()
    assert (issued.status, issued.total, issued.issue_date) == (InvoiceStatus.OPEN, Decimal("62.17"), D(2026, 3, 14))
    assert not PendingInvoiceItem.objects.filter(billed_at__isnull=True).exists()
    assert OutboundEmail.objects.filter(invoice=issued, kind=EmailKind.INVOICE).count() == 1
