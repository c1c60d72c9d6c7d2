"""Quotes (issue 25, "Quotes"): drafted from catalog prices, numbered and frozen when sent, accepted in the portal,
converted into the subscription, and billed to the cent as quoted."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal as D

import pytest
from django.core import mail
from django.urls import reverse
from djmoney.money import Money
from pypdf import PdfReader

from core.dates import billing_today
from invoicing.billing_run import billing_run
from invoicing.documents import render_quote_pdf
from invoicing.models import Invoice, Quote, QuoteStatus
from invoicing.quotes import QuoteStateError, quote_accept, quote_create, quote_send
from subscriptions.models import Subscription
from subscriptions.services import ItemSpec
from tests.factories import CustomerFactory, PriceFactory, TaxRateFactory
from tests.factories.portal import PortalUserFactory
from tests.factories.subscriptions import CouponFactory, ProductFactory
from tests.portal.conftest import signed_in_client

pytestmark = pytest.mark.django_db

MAR_2 = dt.date(2026, 3, 2)
MAR_5 = dt.date(2026, 3, 5)


@pytest.fixture
def offer(series):
    TaxRateFactory(country="DE", percentage=D("19"))
    customer = CustomerFactory(name="Neukunde GmbH", country="DE", currency="EUR", language="de")
    seats = PriceFactory(product=ProductFactory(name="Team plan"), unit_amount=Money(D("49.00"), "EUR"), per_unit=True)
    support = PriceFactory(product=ProductFactory(name="Priority support"), unit_amount=Money(D("99.00"), "EUR"))
    coupon = CouponFactory(percent_off=D("10"), code="LAUNCH10")
    return customer, [ItemSpec(price=seats, quantity=3), ItemSpec(price=support)], coupon


def _text(pdf: bytes) -> str:
    return " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages).split())


def test_a_quote_accepted_in_the_portal_is_billed_as_quoted(offer, time_machine, django_capture_on_commit_callbacks):
    customer, items, coupon = offer
    time_machine.move_to(dt.datetime(2026, 3, 2, 10, 0), tick=False)
    quote = quote_create(customer=customer, items=items, coupon=coupon, valid_until=dt.date(2026, 3, 31), title="Team")
    assert (quote.status, quote.number) == (QuoteStatus.DRAFT, "")
    with django_capture_on_commit_callbacks(execute=True):
        quote = quote_send(quote=quote, as_of=MAR_2)
    # 3 × 49.00 + 99.00 = 246.00, 10 % off = 221.40, 19 % VAT = 42.07 (per line: 132.30 → 25.14, 89.10 → 16.93)
    assert quote.number == "QUO-2026-000001"
    # the coupon applies once: the renewal is the full 292.74
    assert (quote.first_total, quote.renewal_total) == (D("263.47"), D("292.74"))
    assert [line["total"] for line in quote.offer["first"]["lines"]] == ["157.44", "106.03"]
    [email] = mail.outbox
    assert email.subject.startswith("Angebot QUO-2026-000001")
    assert "263,47\xa0€" in email.body and "/portal/quotes/QUO-2026-000001/" in email.body
    text = _text(render_quote_pdf(quote=quote))
    assert "Angebot" in text and "QUO-2026-000001" in text and "263,47" in text and "31.03.2026" in text

    # Accepted three days later by a portal user of the customer: the subscription starts that day.
    time_machine.move_to(dt.datetime(2026, 3, 5, 9, 0), tick=False)
    person = PortalUserFactory(customer=customer, email="chefin@neukunde.example")
    client = signed_in_client(person)
    page = client.get(reverse("portal:quote_detail", args=[quote.number]))
    assert page.status_code == 200 and "263,47" in page.content.decode()
    refused = client.post(reverse("portal:quote_detail", args=[quote.number]), {"action": "accept"})
    assert refused.status_code == 400  # the box was not ticked
    client.post(reverse("portal:quote_detail", args=[quote.number]), {"action": "accept", "agree": "1"})
    quote.refresh_from_db()
    assert (quote.status, quote.accepted_by, quote.accepted_ip) == (
        QuoteStatus.CONVERTED,
        "chefin@neukunde.example",
        "127.0.0.1",
    )
    subscription = Subscription.objects.get(pk=quote.subscription_id)
    assert subscription.start_date == MAR_5 and subscription.metadata == {"quote": "QUO-2026-000001"}

    billing_run(as_of=MAR_5)
    invoice = Invoice.objects.get(subscription=subscription)
    assert invoice.total == quote.first_total == D("263.47")
    # accepting again (a double click) changes nothing
    assert quote_accept(quote=quote, accepted_by="x@y.example", as_of=MAR_5).subscription_id == subscription.pk
    assert Subscription.objects.filter(customer=customer).count() == 1


def test_an_expired_or_declined_quote_cannot_be_accepted(offer):
    customer, items, _ = offer
    quote = quote_send(quote=quote_create(customer=customer, items=items, valid_until=MAR_5, as_of=MAR_2), as_of=MAR_2)
    with pytest.raises(QuoteStateError, match="expired on 2026-03-05"):
        quote_accept(quote=quote, accepted_by="a@b.example", as_of=dt.date(2026, 3, 6))
    client = signed_in_client(PortalUserFactory(customer=customer))
    url = reverse("portal:quote_detail", args=[quote.number])
    client.post(url, {"action": "decline", "reason": "Too expensive for us this year."})
    quote.refresh_from_db()
    assert (quote.status, quote.decline_reason) == (QuoteStatus.DECLINED, "Too expensive for us this year.")
    with pytest.raises(QuoteStateError, match="declined"):
        quote_accept(quote=quote, accepted_by="a@b.example", as_of=MAR_2)
    assert not Subscription.objects.exists()


def test_bad_quotes_are_refused_naming_the_field(offer):
    customer, items, _ = offer
    usd = PriceFactory(unit_amount=Money(D("10.00"), "USD"))
    with pytest.raises(Exception, match=r"price: .* is in USD"):
        quote_create(customer=customer, items=[ItemSpec(price=usd)], valid_until=MAR_5, as_of=MAR_2)
    with pytest.raises(Exception, match="valid_until: 2026-03-01 is in the past"):
        quote_create(customer=customer, items=items, valid_until=dt.date(2026, 3, 1), as_of=MAR_2)
    with pytest.raises(Exception, match="items: a quote needs at least one price"):
        quote_create(customer=customer, items=[], valid_until=MAR_5, as_of=MAR_2)
    assert not Quote.objects.exists()


def test_a_failed_conversion_leaves_the_quote_accepted_for_staff(offer, admin_client):
    customer, items, _ = offer
    quote = quote_send(quote=quote_create(customer=customer, items=items, valid_until=MAR_5, as_of=MAR_2), as_of=MAR_2)
    customer.is_archived = True  # archived after the quote was sent: no subscription can start
    customer.save()
    quote = quote_accept(quote=quote, accepted_by="a@b.example", as_of=MAR_2)
    assert quote.status == QuoteStatus.ACCEPTED and quote.subscription_id is None
    assert "archived" in quote.conversion_error
    page = admin_client.get(reverse("admin:invoicing_quote_change", args=[quote.pk])).content.decode()
    assert 'data-action="convert"' in page


def test_staff_draft_send_and_download_from_the_admin(offer, admin_client):
    customer, items, _coupon = offer
    response = admin_client.post(
        reverse("admin:invoicing_quote_add"),
        {
            "customer": customer.pk,
            "title": "Team",
            "valid_until": (billing_today() + dt.timedelta(days=30)).isoformat(),
            "start_date": "",
            "trial_days": "",
            "coupon": "",
            "memo": "Includes onboarding.",
            "items-TOTAL_FORMS": "2",
            "items-INITIAL_FORMS": "0",
            "items-MIN_NUM_FORMS": "0",
            "items-MAX_NUM_FORMS": "1000",
            "items-0-price": items[0].price.pk,
            "items-0-quantity": "3",
            "items-1-price": items[1].price.pk,
            "items-1-quantity": "1",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    quote = Quote.objects.get()
    page = admin_client.get(reverse("admin:invoicing_quote_change", args=[quote.pk])).content.decode()
    assert "First invoice" in page and "292.74" in page  # 3 × 49.00 + 99.00 = 246.00 + 19 % = 292.74
    admin_client.post(reverse("admin:invoicing_quote_send", args=[quote.pk]))
    quote.refresh_from_db()
    assert quote.status == QuoteStatus.SENT and quote.number.startswith("QUO-")
    pdf = admin_client.get(reverse("admin:invoicing_quote_pdf", args=[quote.pk]))
    assert pdf["Content-Type"] == "application/pdf" and quote.number in _text(pdf.content)
    listing = admin_client.get(reverse("admin:invoicing_quote_changelist")).content.decode()
    assert quote.number in listing and "Sent" in listing
    # a numbered quote is withdrawn, never deleted (its number would leave a gap in the series)
    delete = admin_client.post(reverse("admin:invoicing_quote_delete", args=[quote.pk]), {"post": "yes"})
    assert delete.status_code == 403
    assert Quote.objects.filter(pk=quote.pk).exists()
