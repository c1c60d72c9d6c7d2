"""The customer test clock (reporting/test_clock.py): the real services day by day in a rolled-back transaction —
what the customer would be invoiced, e-mailed, charged and reminded, and not one row left in the books."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from djmoney.money import Money

from invoicing.billing_run import billing_run
from invoicing.models import Invoice
from payments.gateways.sandbox import SandboxGateway
from reporting.test_clock import SeatChange, customer_simulate
from tests.factories import CustomerFactory, PriceFactory, SubscriptionFactory, TaxRateFactory
from tests.factories.invoicing import NumberSeriesFactory
from tests.factories.payments import PaymentMethodFactory
from tests.reliability.conftest_security import changed_tables, db_digest

pytestmark = pytest.mark.django_db
D = Decimal
MARCH_1 = dt.date(2026, 3, 1)


@pytest.fixture
def customer(db, django_capture_on_commit_callbacks):
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE", percentage=D("19"))
    customer = CustomerFactory()
    PaymentMethodFactory(customer=customer)
    seats = PriceFactory(unit_amount=Money(D("10.00"), "EUR"), per_unit=True)
    subscription = SubscriptionFactory(
        customer=customer, price=seats, quantity=2, start_date=MARCH_1, collection_method="charge_automatically"
    )
    with django_capture_on_commit_callbacks(execute=True):
        billing_run(as_of=MARCH_1)  # the March invoice, charged and paid
    customer.subscription, customer.seats = subscription, seats
    return customer


def test_five_more_seats_on_the_20th_shows_the_invoice_charge_and_e_mail_and_leaves_no_row(customer):
    before = db_digest()
    sandbox_charges = len(SandboxGateway.charges)
    last_number = Invoice.objects.exclude(number="").order_by("-pk").values_list("number", flat=True).first()
    simulation = customer_simulate(
        customer=customer,
        as_of=dt.date(2026, 3, 2),
        days=45,
        change=SeatChange(customer.subscription.pk, customer.seats.pk, 7, dt.date(2026, 3, 20)),
    )
    assert changed_tables(before, db_digest()) == []  # the real books: not one row more, less or changed
    assert len(SandboxGateway.charges) == sandbox_charges  # no money moved, not even in the sandbox

    april = simulation.invoices[0]
    assert (april.day, april.status, april.currency, april.total, april.amount_due) == (
        dt.date(2026, 4, 1),
        "paid",
        "EUR",
        D("106.34"),  # (70.00 + 27.10 − 7.74) net, 19 % VAT per line
        D("0.00"),
    )
    assert [amount for _description, amount in april.lines] == [D("83.30"), D("-9.21"), D("32.25")]
    assert len(simulation.invoices) == 1  # May 1 is beyond the 45 days
    assert [(c.day, c.amount, c.outcome) for c in simulation.charges] == [
        (dt.date(2026, 4, 1), D("106.34"), "succeeded")
    ]
    assert [(email.day, email.kind) for email in simulation.emails] == [(dt.date(2026, 4, 1), "Payment receipt")]
    receipt = simulation.emails[0]
    assert customer.email in receipt.to and "106.34" in receipt.body_text and april.number in receipt.body_text
    assert receipt.body_html.startswith("<")
    assert simulation.reminders == []

    # The number the simulation drew is the next real invoice's: the counter's update was rolled back with it.
    billing_run(as_of=dt.date(2026, 4, 1))
    real = Invoice.objects.exclude(number="").order_by("-pk").first()
    assert real is not None and real.number == april.number != last_number
    assert real.total == D("23.80")  # two seats: the change was never made


def test_a_change_outside_the_days_is_refused(customer):
    with pytest.raises(Exception, match="change_on"):
        customer_simulate(
            customer=customer,
            as_of=dt.date(2026, 3, 2),
            days=10,
            change=SeatChange(customer.subscription.pk, customer.seats.pk, 7, dt.date(2026, 3, 20)),
        )


def test_the_customer_page_simulates_through_the_admin(customer, admin_client):
    url = f"/admin/customers/customer/{customer.pk}/simulate/"
    assert (
        'data-action="simulate"'
        in admin_client.get(f"/admin/customers/customer/{customer.pk}/change/").content.decode()
    )
    assert admin_client.get(url).status_code == 200
    before = db_digest()
    page = admin_client.post(url, {"as_of": "2026-03-25", "days": "10"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "INV-2026-000002" in html and "Payment receipt" in html and "succeeded" in html
    assert changed_tables(before, db_digest()) == []
