"""Cancel now: the unused time of the billed period as customer credit, refunded to the card, or nothing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from djmoney.money import Money

from core.errors import InvalidInput
from invoicing.billing_run import billing_run
from invoicing.models import CreditNote, Invoice, InvoiceStatus
from payments.cancellation import Settlement, subscription_cancel_now, subscription_cancel_now_preview
from payments.models import Refund
from payments.selectors import customer_credit_balance
from payments.services import payment_record
from subscriptions.models import SubscriptionEvent, SubscriptionStatus
from subscriptions.services import ItemSpec, subscription_create
from tests.factories import CustomerFactory, StaffUserFactory
from tests.factories.subscriptions import PriceFactory

pytestmark = pytest.mark.django_db
D = dt.date


@pytest.fixture
def paid_subscription(billing: Any, django_capture_on_commit_callbacks: Any) -> Any:
    price = PriceFactory(per_unit=True, unit_amount=Money("29.99", "EUR"), product__name="Pro")
    customer = CustomerFactory()
    subscription = subscription_create(
        customer=customer, items=[ItemSpec(price=price, quantity=5)], start_date=D(2026, 3, 1)
    )
    billing_run(as_of=D(2026, 3, 1))
    invoice = Invoice.objects.get(subscription=subscription)
    assert invoice.total == Decimal("178.44")  # 149.95 + 19 % VAT 28.49
    with django_capture_on_commit_callbacks(execute=True):
        payment_record(
            customer=customer,
            amount=invoice.total,
            received_on=D(2026, 3, 2),
            method="card",
            gateway="sandbox",
            gateway_reference="ch_sandbox_1",
            invoice=invoice,
        )
    subscription.refresh_from_db()
    return subscription


def test_cancel_now_with_prorated_credit_issues_a_credit_note_and_books_customer_credit(
    paid_subscription: Any, django_capture_on_commit_callbacks: Any
) -> None:
    clerk = StaffUserFactory(group="Billing clerk")
    preview = subscription_cancel_now_preview(subscription=paid_subscription, as_of=D(2026, 3, 14))
    # 18 of 31 days unused: 178.44 × 18/31 = 103.61 (tax included)
    assert (preview.credit, preview.remaining_days, preview.period_days) == (Decimal("103.61"), 18, 31)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = subscription_cancel_now(
            subscription=paid_subscription, as_of=D(2026, 3, 14), settlement=Settlement.CREDIT, actor=clerk
        )
    assert outcome.subscription.status == SubscriptionStatus.CANCELED
    note = CreditNote.objects.get()
    assert note.total == preview.credit == Decimal("103.61") and note.issued_by == clerk
    assert customer_credit_balance(customer=paid_subscription.customer, currency="EUR") == Decimal("103.61")
    event = SubscriptionEvent.objects.filter(subscription=paid_subscription).order_by("pk").last()
    assert (event.to_status, event.actor) == ("canceled", clerk) and "unused time: credit" in event.reason
    # The final invoice bills nothing: no usage, and the credit is the credit note's.
    billing_run(as_of=D(2026, 3, 14))
    assert Invoice.objects.filter(subscription=paid_subscription).count() == 1


def test_cancel_now_refunding_to_the_card(paid_subscription: Any, django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        outcome = subscription_cancel_now(
            subscription=paid_subscription, as_of=D(2026, 3, 14), settlement=Settlement.REFUND
        )
    (refund,) = outcome.refunds or []
    assert refund.amount == Decimal("103.61") and Refund.objects.get().pk == refund.pk
    assert customer_credit_balance(customer=paid_subscription.customer, currency="EUR") == Decimal("0")


def test_cancel_now_with_nothing_back(paid_subscription: Any) -> None:
    subscription_cancel_now(subscription=paid_subscription, as_of=D(2026, 3, 14), settlement=Settlement.NONE)
    assert not CreditNote.objects.exists()
    paid_subscription.refresh_from_db()
    assert paid_subscription.status == SubscriptionStatus.CANCELED


def test_refund_of_an_unpaid_invoice_is_refused_by_name(billing: Any) -> None:
    price = PriceFactory(unit_amount=Money("31.00", "EUR"))
    subscription = subscription_create(
        customer=CustomerFactory(), items=[ItemSpec(price=price)], start_date=D(2026, 3, 1)
    )
    billing_run(as_of=D(2026, 3, 1))
    with pytest.raises(InvalidInput, match="no payment to refund") as caught:
        subscription_cancel_now(subscription=subscription, as_of=D(2026, 3, 11), settlement=Settlement.REFUND)
    assert caught.value.field == "settlement"
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.ACTIVE  # nothing done
    # Prorated credit on an open invoice lowers what is due: 36.89 × 21/31 = 24.99.
    subscription_cancel_now(subscription=subscription, as_of=D(2026, 3, 11), settlement=Settlement.CREDIT)
    invoice = Invoice.objects.get(subscription=subscription)
    assert (invoice.status, invoice.amount_due) == (InvoiceStatus.OPEN, Decimal("11.90"))


def test_the_lists_bulk_cancel_now_settles_with_a_credit_note(paid_subscription: Any, admin_client: Any) -> None:
    import time_machine
    from django.urls import reverse

    with time_machine.travel(dt.datetime(2026, 3, 14, 9, tzinfo=dt.UTC), tick=False):
        response = admin_client.post(
            reverse("admin:subscriptions_subscription_changelist"),
            {"action": "cancel_now", "_selected_action": [paid_subscription.pk]},
        )
    assert response.status_code == 302
    paid_subscription.refresh_from_db()
    assert paid_subscription.status == SubscriptionStatus.CANCELED
    assert CreditNote.objects.get().total == Decimal("103.61")
