"""Provider tracking webhooks (anymail, Postmark's format here): authenticated, idempotent, applied to the row."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from django.core import mail
from django.urls import reverse

from invoicing import delivery
from notifications.models import EmailAddressStatus, EmailEvent, EmailStatus, OutboundEmail
from tests.factories.customers import CustomerFactory
from tests.factories.invoicing import InvoiceFactory

pytestmark = pytest.mark.django_db
ISSUE = dt.date(2026, 3, 2)
SECRET = "hook:s3cret-value"
URL = "/anymail/postmark/tracking/"
MESSAGE_ID = "883953f4-6105-42a2-a16a-77a8eac79483"


@pytest.fixture(autouse=True)
def anymail_settings(settings):
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET}
    mail.outbox = []


@pytest.fixture
def sent_email(series, vat_de, django_capture_on_commit_callbacks):
    customer = CustomerFactory(email="Billing@Kunde.example", cc_emails="cc@kunde.example")
    invoice = InvoiceFactory(customer=customer, finalized=ISSUE)
    with django_capture_on_commit_callbacks(execute=True):
        email = delivery.invoice_email_on_finalize(invoice_id=invoice.pk)
    OutboundEmail.objects.filter(pk=email.pk).update(provider_message_id=MESSAGE_ID)
    email.refresh_from_db()
    assert email.status == EmailStatus.SENT
    return email


def _post(client, payload, secret=SECRET):
    auth = base64.b64encode(secret.encode()).decode()
    return client.post(
        URL, data=json.dumps(payload), content_type="application/json", HTTP_AUTHORIZATION=f"Basic {auth}"
    )


def _delivery(recipient="billing@kunde.example"):
    return {
        "RecordType": "Delivery",
        "MessageID": MESSAGE_ID,
        "Recipient": recipient,
        "DeliveredAt": "2026-03-02T10:00:00Z",
        "Details": "smtp;250 2.0.0 OK",
        "Tag": "invoice",
        "Metadata": {},
    }


def _bounce(event_id=4323372036, recipient="billing@kunde.example"):
    return {
        "RecordType": "Bounce",
        "ID": event_id,
        "Type": "HardBounce",
        "MessageID": MESSAGE_ID,
        "Email": recipient,
        "BouncedAt": "2026-03-02T11:00:00Z",
        "Description": "The server was unable to deliver your message (mailbox unknown).",
        "Details": "smtp;550 5.1.1 user unknown",
    }


def test_delivered_event_marks_the_email_delivered(client, sent_email):
    response = _post(client, _delivery())
    assert response.status_code == 200
    sent_email.refresh_from_db()
    assert sent_email.status == EmailStatus.DELIVERED
    assert sent_email.delivered_at == dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC)
    assert EmailEvent.objects.get().outbound_email == sent_email


def test_wrong_or_missing_secret_is_rejected_and_changes_nothing(client, sent_email):
    assert _post(client, _delivery(), secret="hook:wrong").status_code == 400
    assert client.post(URL, data=json.dumps(_delivery()), content_type="application/json").status_code == 400
    sent_email.refresh_from_db()
    assert sent_email.status == EmailStatus.SENT and not EmailEvent.objects.exists()


def test_replayed_event_changes_nothing(client, sent_email):
    assert _post(client, _bounce()).status_code == 200
    sent_email.refresh_from_db()
    assert sent_email.status == EmailStatus.BOUNCED
    OutboundEmail.objects.filter(pk=sent_email.pk).update(status=EmailStatus.SENT)  # pretend staff reset it
    assert _post(client, _bounce()).status_code == 200
    sent_email.refresh_from_db()
    assert sent_email.status == EmailStatus.SENT
    assert EmailEvent.objects.count() == 1
    # an event without a provider event id (Postmark deliveries) is replay-safe through its content hash
    _post(client, _delivery())
    _post(client, _delivery())
    assert EmailEvent.objects.count() == 2


def test_bounce_flags_the_billing_address_and_the_admin_filters_by_it(client, admin_client, sent_email):
    _post(client, _bounce())
    sent_email.refresh_from_db()
    assert sent_email.status == EmailStatus.BOUNCED and sent_email.bounced_at is not None
    flagged = EmailAddressStatus.objects.get(email="billing@kunde.example")
    assert flagged.bounced_at is not None and "mailbox unknown" in flagged.reason

    other = InvoiceFactory(finalized=ISSUE)
    changelist = reverse("admin:invoicing_invoice_changelist")
    bounced = admin_client.get(changelist, {"email_bounced": "yes"}).content.decode()
    assert sent_email.invoice.number in bounced and other.number not in bounced
    emails = admin_client.get(reverse("admin:notifications_outboundemail_changelist"), {"email_bounced": "yes"})
    assert emails.status_code == 200 and "billing@kunde.example" in emails.content.decode().lower()


def test_bounce_of_a_cc_address_flags_it_but_keeps_the_message_status(client, sent_email):
    _post(client, _bounce(recipient="cc@kunde.example"))
    sent_email.refresh_from_db()
    assert sent_email.status == EmailStatus.SENT
    assert EmailAddressStatus.objects.get(email="cc@kunde.example").bounced_at is not None


def test_opened_and_complained_events(client, sent_email):
    _post(client, {**_delivery(), "RecordType": "Open", "ReceivedAt": "2026-03-02T12:00:00Z"})
    sent_email.refresh_from_db()
    assert sent_email.opened_at is not None and sent_email.status == EmailStatus.SENT
    _post(
        client,
        {
            "RecordType": "SpamComplaint",
            "ID": 99,
            "Type": "SpamComplaint",
            "MessageID": MESSAGE_ID,
            "Email": "billing@kunde.example",
            "BouncedAt": "2026-03-03T08:00:00Z",
        },
    )
    sent_email.refresh_from_db()
    assert sent_email.status == EmailStatus.COMPLAINED
    assert EmailAddressStatus.objects.get(email="billing@kunde.example").complained_at is not None


def test_event_finds_its_message_by_metadata_when_the_id_is_unknown(client, sent_email):
    payload = {**_delivery(), "MessageID": "unknown-id", "Metadata": {"outbound_email_id": str(sent_email.pk)}}
    _post(client, payload)
    sent_email.refresh_from_db()
    assert sent_email.status == EmailStatus.DELIVERED


def test_a_bounced_billing_address_is_flagged_on_the_customer_page_and_in_its_filter(admin_client):
    from django.urls import reverse
    from django.utils import timezone

    from notifications.models import EmailAddressStatus
    from tests.factories import CustomerFactory

    bounced = CustomerFactory(name="Bouncy GmbH", email="Billing@Bouncy.example")
    fine = CustomerFactory(name="Fine AG")
    EmailAddressStatus.objects.create(email="billing@bouncy.example", bounced_at=timezone.now(), reason="mailbox full")
    page = admin_client.get(reverse("admin:customers_customer_change", args=[bounced.pk])).content.decode()
    assert "BOUNCED" in page and "mailbox full" in page
    assert "dunning settings" in page.lower()  # invoicing's part of the customer page is there too
    assert "delivering" in admin_client.get(reverse("admin:customers_customer_change", args=[fine.pk])).content.decode()
    listing = admin_client.get(reverse("admin:customers_customer_changelist"), {"email_bounced": "yes"}).content
    assert b"Bouncy GmbH" in listing and b"Fine AG" not in listing
