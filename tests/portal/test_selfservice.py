"""Portal self-service (issue 23): change plan or seats among self-service prices with the proration preview and a
confirmation (the invoice equals the preview to the cent), cancel at period end with a reason and undo it, and a
year's archived documents as one zip."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import zipfile
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from djmoney.money import Money

from core import formatting as fmt
from invoicing import documents
from invoicing.billing_run import billing_run
from invoicing.delivery import invoice_email_resend
from invoicing.models import Invoice, InvoiceStatus
from notifications.models import EmailKind, OutboundEmail
from subscriptions.models import PendingInvoiceItem, Subscription
from subscriptions.services import ItemSpec, subscription_create
from tests.factories import CustomerFactory
from tests.factories.portal import PortalUserFactory
from tests.factories.subscriptions import PriceFactory
from tests.portal.conftest import Account, signed_in_client

pytestmark = pytest.mark.django_db
D = dt.date
# Noon in Berlin on 14 Mar 2026: billing_today() is the 14th.
MARCH_14 = dt.datetime(2026, 3, 14, 11, 0, tzinfo=dt.UTC)


def eur(amount: str) -> str:
    return fmt.money(Decimal(amount), "EUR", "en")


class Seats:
    """A taxable customer (DE, 19 %) on Pro at 29.99 per seat × 5, billed for March; Pro and Team are
    self-service, Enterprise is not."""

    def __init__(self) -> None:
        self.pro = PriceFactory(
            per_unit=True,
            unit_amount=Money("29.99", "EUR"),
            product__name="Pro",
            self_service=True,
            self_service_max_quantity=50,
        )
        self.team = PriceFactory(
            per_unit=True, unit_amount=Money("49.00", "EUR"), product__name="Team", self_service=True
        )
        self.enterprise = PriceFactory(per_unit=True, unit_amount=Money("99.00", "EUR"), product__name="Enterprise")
        self.customer = CustomerFactory(name="Seats GmbH")
        self.portal_user = PortalUserFactory(customer=self.customer, email="seats@portal.example")
        self.subscription = subscription_create(
            customer=self.customer, items=[ItemSpec(price=self.pro, quantity=5)], start_date=D(2026, 3, 1)
        )
        billing_run(as_of=D(2026, 3, 1))
        self.subscription.refresh_from_db()
        self.url = reverse("portal:subscription_change", args=[self.subscription.pk])


@pytest.fixture
def seats(billing: Any) -> Seats:
    return Seats()


def _quantity(subscription: Subscription) -> list[tuple[str, int]]:
    return [(i.price.product.name, i.quantity) for i in subscription.items.filter(removed_on__isnull=True)]


def test_a_customer_upgrades_seats_in_the_portal_and_the_prorated_invoice_matches_the_preview_to_the_cent(
    seats: Seats, django_capture_on_commit_callbacks: Any
) -> None:
    client = signed_in_client(seats.portal_user)
    with time_machine.travel(MARCH_14, tick=False):
        page = client.get(reverse("portal:subscriptions")).content.decode()
        assert seats.url in page  # "Change plan or seats"
        form = client.get(seats.url)
        assert form.status_code == 200
        offered = form.content.decode()
        assert "Pro — €29.99 per seat / month" in offered and "Team — €49.00 per seat / month" in offered
        assert "Enterprise" not in offered  # not self-service

        preview = client.post(seats.url, {"price": seats.pro.pk, "quantity": 8, "preview": "1"})
        assert preview.status_code == 200
        shown = preview.content.decode()
        # 18 of 31 days left: −5 × 29.99 × 18/31 = −87.07, +8 × 29.99 × 18/31 = 139.31; 52.24 + 19 % VAT 9.93.
        for amount in ("-87.07", "139.31", "52.24", "9.93", "62.17"):
            assert eur(amount) in shown, amount
        assert "Unused time on Pro × 5" in shown and "Remaining time on Pro × 8" in shown
        assert not PendingInvoiceItem.objects.exists() and Invoice.objects.count() == 1  # a preview writes nothing

        with django_capture_on_commit_callbacks(execute=True):
            done = client.post(
                seats.url,
                {"price": seats.pro.pk, "quantity": 8, "confirm": "1", "fingerprint": preview.context["fingerprint"]},
            )
    assert done.status_code == 302 and done["Location"] == reverse("portal:subscriptions")
    assert _quantity(seats.subscription) == [("Pro", 8)]
    issued = Invoice.objects.exclude(period_start=D(2026, 3, 1)).get(subscription=seats.subscription)
    assert issued.status == InvoiceStatus.OPEN and issued.number and issued.issue_date == D(2026, 3, 14)
    assert (issued.subtotal, issued.tax_total, issued.total) == (Decimal("52.24"), Decimal("9.93"), Decimal("62.17"))
    assert sorted(issued.lines.values_list("amount", flat=True)) == [Decimal("-87.07"), Decimal("139.31")]
    assert OutboundEmail.objects.filter(invoice=issued, kind=EmailKind.INVOICE).count() == 1
    event = seats.subscription.events.order_by("pk").last()
    assert event is not None and "changed in the customer portal by seats@portal.example" in event.reason
    message = client.get(reverse("portal:subscriptions")).content.decode()
    assert issued.number in message and eur("62.17") in message


def test_a_plan_switch_to_another_self_service_plan_with_fewer_seats(seats: Seats) -> None:
    client = signed_in_client(seats.portal_user)
    with time_machine.travel(MARCH_14, tick=False):
        preview = client.post(seats.url, {"price": seats.team.pk, "quantity": 3, "preview": "1"})
        # −87.07 for Pro × 5, + round(147.00 × 18/31) = 85.35 for Team × 3: a credit, deducted from the next invoice
        assert eur("85.35") in preview.content.decode()
        assert "deducted from your next invoice" in preview.content.decode()
        client.post(
            seats.url,
            {"price": seats.team.pk, "quantity": 3, "confirm": "1", "fingerprint": preview.context["fingerprint"]},
        )
    assert _quantity(seats.subscription) == [("Team", 3)]
    assert Invoice.objects.filter(subscription=seats.subscription).count() == 1  # nothing invoiced now
    assert sorted(PendingInvoiceItem.objects.filter(billed_at__isnull=True).values_list("amount", flat=True)) == [
        Decimal("-87.07"),
        Decimal("85.35"),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"quantity": 51}, "Pro: choose between 1 and 50 seats."),
        ({"quantity": 0}, "Ensure this value is greater than or equal to 1."),
        ({"quantity": "many"}, "Enter a whole number."),
        ({"quantity": 5}, "This is your current plan"),
        ({"price": "enterprise"}, "Select a valid choice."),
    ],
)
def test_a_refused_choice_names_the_field_and_changes_nothing(seats: Seats, data: Any, message: str) -> None:
    client = signed_in_client(seats.portal_user)
    post = {"price": seats.pro.pk, "quantity": 8, "preview": "1", **data}
    if post["price"] == "enterprise":
        post["price"] = seats.enterprise.pk
    with time_machine.travel(MARCH_14, tick=False):
        response = client.post(seats.url, post)
        confirm = client.post(seats.url, {**post, "preview": "", "confirm": "1", "fingerprint": "x"})
    assert response.status_code == confirm.status_code == 400
    assert message in response.content.decode()
    assert _quantity(seats.subscription) == [("Pro", 5)]
    assert not PendingInvoiceItem.objects.exists() and Invoice.objects.count() == 1


def test_a_confirmation_of_other_amounts_shows_the_new_preview_and_changes_nothing(seats: Seats) -> None:
    client = signed_in_client(seats.portal_user)
    with time_machine.travel(MARCH_14, tick=False):
        preview = client.post(seats.url, {"price": seats.pro.pk, "quantity": 8, "preview": "1"})
    with time_machine.travel(MARCH_14 + dt.timedelta(days=1), tick=False):  # a day later: 17 days left
        response = client.post(
            seats.url,
            {"price": seats.pro.pk, "quantity": 8, "confirm": "1", "fingerprint": preview.context["fingerprint"]},
        )
    assert response.status_code == 200
    assert "The amounts changed since your preview" in response.content.decode()
    assert eur("-82.23") in response.content.decode()  # −149.95 × 17/31
    assert _quantity(seats.subscription) == [("Pro", 5)] and Invoice.objects.count() == 1


def test_another_customers_subscription_cannot_be_changed(seats: Seats, account_b: Account) -> None:
    client = signed_in_client(account_b.portal_user)
    with time_machine.travel(MARCH_14, tick=False):
        assert client.get(seats.url).status_code == 404
        response = client.post(seats.url, {"price": seats.pro.pk, "quantity": 8, "confirm": "1", "fingerprint": "x"})
    assert response.status_code == 404
    assert _quantity(seats.subscription) == [("Pro", 5)]


def test_the_plan_page_has_bounded_queries(seats: Seats, django_assert_max_num_queries: Any) -> None:
    client = signed_in_client(seats.portal_user)
    for n in range(4):
        subscription_create(
            customer=seats.customer, items=[ItemSpec(price=seats.team, quantity=n + 1)], start_date=D(2026, 3, 1)
        )
    with django_assert_max_num_queries(12):
        response = client.get(reverse("portal:subscriptions"))
    assert response.content.decode().count("Change plan or seats") == 5


# --- cancel at period end with a reason, and undo -------------------------------------------------------


def test_cancel_with_a_reason_is_stored_for_staff_and_can_be_taken_back(seats: Seats, admin_client: Client) -> None:
    client = signed_in_client(seats.portal_user)
    url = reverse("portal:subscription_cancel", args=[seats.subscription.pk])
    refused = client.post(url, {"cancellation_reason": "", "cancellation_comment": "bye"})
    assert refused.status_code == 400 and "This field is required." in refused.content.decode()
    assert client.post(url, {"cancellation_reason": "cheaper"}).status_code == 400
    seats.subscription.refresh_from_db()
    assert not seats.subscription.cancel_at_period_end

    client.post(url, {"cancellation_reason": "too_expensive", "cancellation_comment": "  We found a cheaper tool. "})
    seats.subscription.refresh_from_db()
    assert seats.subscription.cancel_at_period_end and seats.subscription.status == "active"
    assert (seats.subscription.cancellation_reason, seats.subscription.cancellation_comment) == (
        "too_expensive",
        "We found a cheaper tool.",
    )
    page = client.get(reverse("portal:subscriptions")).content.decode()
    assert "Keep my subscription" in page and "Ends on" in page
    staff_page = admin_client.get(reverse("admin:subscriptions_subscription_change", args=[seats.subscription.pk]))
    assert "It&#x27;s too expensive" in staff_page.content.decode()
    assert "We found a cheaper tool." in staff_page.content.decode()

    assert client.post(reverse("portal:subscription_cancel_undo", args=[seats.subscription.pk])).status_code == 302
    seats.subscription.refresh_from_db()
    assert not seats.subscription.cancel_at_period_end
    assert (seats.subscription.cancellation_reason, seats.subscription.cancellation_comment) == ("", "")
    reasons = list(seats.subscription.events.order_by("pk").values_list("reason", flat=True))
    assert "taken back in the customer portal by seats@portal.example" in reasons[-1]


# --- a year's documents as one zip ----------------------------------------------------------------------


def test_a_years_documents_download_as_one_zip_of_the_archived_bytes(
    client_a: Client, account_a: Account, account_b: Account, django_assert_max_num_queries: Any
) -> None:
    paid = documents.invoice_pdf_store(invoice_id=account_a.paid_invoice.pk)
    note = documents.credit_note_pdf_store(credit_note_id=account_a.credit_note.pk)
    documents.invoice_pdf_store(invoice_id=account_b.open_invoice.pk)  # B's: never in A's zip
    page = client_a.get(reverse("portal:documents_zip")).content.decode()
    assert "?year=2026" in page
    with django_assert_max_num_queries(12):
        response = client_a.get(reverse("portal:documents_zip"), {"year": "2026"})
        body = b"".join(response.streaming_content)  # type: ignore[attr-defined]
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="documents-2026.zip"'
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.testzip() is None
    names = archive.namelist()
    paid_name = f"invoices/{account_a.paid_invoice.number}.pdf"
    note_name = f"credit-notes/{account_a.credit_note.number}.pdf"
    assert names == [paid_name, note_name, "documents-2026.txt"]
    for name, pdf in ((paid_name, paid), (note_name, note)):
        with default_storage.open(pdf.file.name, "rb") as handle:
            assert archive.read(name) == handle.read()
        assert hashlib.sha256(archive.read(name)).hexdigest() == pdf.sha256
    manifest = archive.read("documents-2026.txt").decode()
    assert f"invoices/{account_a.open_invoice.number}.pdf: not archived yet" in manifest
    assert account_b.open_invoice.number not in body.decode("latin-1")
    assert client_a.get(reverse("portal:documents_zip"), {"year": "2019"}).status_code == 404
    assert client_a.get(reverse("portal:documents_zip"), {"year": "20x6"}).status_code == 400


def test_staff_mark_a_price_self_service_even_when_it_is_in_use(seats: Seats, admin_client: Client) -> None:
    url = reverse("admin:subscriptions_price_change", args=[seats.enterprise.pk])
    subscription_create(
        customer=CustomerFactory(), items=[ItemSpec(price=seats.enterprise, quantity=1)], start_date=D(2026, 3, 1)
    )
    page = admin_client.get(url).content.decode()
    assert 'name="self_service"' in page and 'name="unit_amount_0"' not in page  # in use: amounts read-only
    response = admin_client.post(url, {"active": "on", "self_service": "on", "self_service_max_quantity": "20"})
    assert response.status_code == 302, response.content.decode()[:2000]
    seats.enterprise.refresh_from_db()
    assert seats.enterprise.self_service and seats.enterprise.self_service_max_quantity == 20


# --- billing contacts -----------------------------------------------------------------------------------


def test_billing_contacts_receive_invoices_and_are_checked(client_a: Client, account_a: Account) -> None:
    url = reverse("portal:billing_details")
    data = {"email": "billing@alpha.example", "country": "DE", "language": "en"}
    too_many = ", ".join(f"person{n}@alpha.example" for n in range(11))
    response = client_a.post(url, {**data, "cc_emails": too_many})
    assert response.status_code == 400 and "At most 10 further recipients; 11 were given." in response.content.decode()
    response = client_a.post(url, {**data, "cc_emails": "ap@alpha.example; nope"})
    assert response.status_code == 400
    assert "&#x27;nope&#x27; is not a valid e-mail address." in response.content.decode()
    account_a.customer.refresh_from_db()
    assert account_a.customer.cc_emails == ""

    cc = "ap@alpha.example\nCFO@alpha.example, ap@ALPHA.example, Billing@alpha.example"
    assert client_a.post(url, {**data, "cc_emails": cc}).status_code == 302
    account_a.customer.refresh_from_db()
    assert account_a.customer.cc_emails == "ap@alpha.example, CFO@alpha.example"  # each once, not the billing e-mail
    email = invoice_email_resend(invoice=account_a.open_invoice)
    assert (email.to_emails, email.cc_emails) == (["billing@alpha.example"], ["ap@alpha.example", "CFO@alpha.example"])


def test_a_subscription_the_portal_cannot_change_says_why(seats: Seats) -> None:
    seats.pro.self_service = seats.team.self_service = False
    seats.pro.save(update_fields=["self_service"])
    seats.team.save(update_fields=["self_service"])
    client = signed_in_client(seats.portal_user)
    page = client.get(seats.url)
    assert (
        page.status_code == 200
        and "This subscription cannot be changed here; please contact us." in page.content.decode()
    )
    assert "Change plan or seats" not in client.get(reverse("portal:subscriptions")).content.decode().split("<main")[1]
    response = client.post(seats.url, {"price": seats.pro.pk, "quantity": 8, "preview": "1"})
    assert response.status_code == 409
