"""The e-mail provider failing, with a real worker on the Redis broker (the retry is a real Celery retry with its
countdown, not the eager loop): 5xx for a while → retried with back-off and delivered exactly once; 400 → failed
at once, once, and shown to staff; a message whose task was lost → sent by the e-mail sweep, once."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection
from django.urls import reverse

from notifications.models import EmailStatus, OutboundEmail
from notifications.sweep import outbox_sweep
from tests.factories.customers import CustomerFactory
from tests.factories.invoicing import InvoiceFactory, NumberSeriesFactory, TaxRateFactory
from tests.reliability.procs import Broker, email_log, run_command, start_worker, wait_for

ISSUE = dt.date(2026, 3, 2)


@pytest.fixture
def provider(tmp_path):
    """The scripted provider's files and the environment that makes a worker use it."""
    script, log = tmp_path / "provider-script.json", tmp_path / "provider-log.jsonl"
    script.write_text("{}")
    env = {
        "FAULTS_EMAIL_SCRIPT": str(script),
        "FAULTS_EMAIL_LOG": str(log),
        "EMAIL_RETRY_BACKOFF_SECONDS": "1",  # 1, 2, 4 s … instead of minutes
        "EMAIL_MAX_ATTEMPTS": "6",
    }
    return {"script": script, "log": log, "env": env}


@pytest.fixture
def worker(provider, tmp_path):
    broker = Broker()
    settings_dict = connection.settings_dict
    process = start_worker(
        name="faults-mail-w1", broker=broker, settings_dict=settings_dict, log=tmp_path / "w.log", env=provider["env"]
    )
    wait_for(lambda: "ready." in process.log_text(), timeout=30, message="worker ready")

    def queue_invoice_email(invoice_id: int) -> int:
        args = ["queue-invoice-email", str(invoice_id)]
        return int(run_command(broker=broker, settings_dict=settings_dict, args=args, env=provider["env"]))

    process.queue_invoice_email = queue_invoice_email  # type: ignore[attr-defined]
    yield process
    process.stop()
    broker.purge()


@pytest.fixture(autouse=True)
def _no_delivery_in_the_test_process(settings):
    """Invoices are finalized here, in the test process; their e-mail is queued and sent by the subprocesses."""
    settings.BILLING_AFTER_FINALIZE_HOOKS = False


def _invoice(email_address: str):
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE", percentage=Decimal("19"))
    return InvoiceFactory(customer=CustomerFactory(email=email_address), finalized=ISSUE)


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_provider_500_for_a_while_then_the_message_is_delivered_exactly_once(provider, worker):
    invoice = _invoice("outage@customer.example")
    provider["script"].write_text(json.dumps({"outage@customer.example": [500, 503, 500]}))

    email_id = worker.queue_invoice_email(invoice.pk)
    email = wait_for(
        lambda: OutboundEmail.objects.filter(pk=email_id, status=EmailStatus.SENT).first(),
        timeout=40,
        message="sent; worker: " + worker.log_text()[-2000:],
    )

    assert (email.attempts, email.last_error, email.failed_at) == (4, "", None)
    calls = email_log(provider["log"])
    assert [call["answer"] for call in calls] == [500, 503, 500, 202]  # three refusals, one delivery
    accepted = [call for call in calls if call["answer"] == 202]
    assert len(accepted) == 1 and accepted[0]["attachments"] == [f"{invoice.number}.pdf"]
    assert invoice.number in accepted[0]["subject"]
    # back-off, not a retry storm: 1 s, 2 s, 4 s between the attempts (EMAIL_RETRY_BACKOFF_SECONDS=1)
    gaps = [later["at"] - earlier["at"] for earlier, later in itertools.pairwise(calls)]
    assert all(gap >= minimum for gap, minimum in zip(gaps, (0.9, 1.9, 3.9), strict=True)), gaps
    # and nothing more arrives later: the message is done
    time.sleep(2)
    assert len(email_log(provider["log"])) == 4
    assert OutboundEmail.objects.count() == 1


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_provider_400_marks_the_message_failed_once_and_staff_see_it(provider, worker, admin_client):
    invoice = _invoice("typo@customer.example")
    provider["script"].write_text(json.dumps({"typo@customer.example": [400, 400, 400]}))

    email_id = worker.queue_invoice_email(invoice.pk)
    email = wait_for(
        lambda: OutboundEmail.objects.filter(pk=email_id, status=EmailStatus.FAILED).first(),
        timeout=30,
        message="failed; worker: " + worker.log_text()[-2000:],
    )

    assert email.attempts == 1 and email.failed_at is not None and "400" in email.last_error
    # no retry storm: give a retry time to happen (the first back-off would be 1 s) and see none
    time.sleep(3)
    assert [call["answer"] for call in email_log(provider["log"])] == [400]
    assert OutboundEmail.objects.get(pk=email_id).attempts == 1
    # never silently lost: staff find it under "failed", with the provider's answer, and on the invoice
    page = admin_client.get(reverse("admin:notifications_outboundemail_changelist"), {"status__exact": "failed"})
    assert page.status_code == 200 and "typo@customer.example" in page.content.decode()
    assert "400" in page.content.decode()
    history = admin_client.get(reverse("admin:invoicing_invoice_change", args=[invoice.pk])).content.decode()
    assert "Failed" in history
    # and a sweep does not resurrect it (failed is final until staff resend)
    assert outbox_sweep(now=email.failed_at + dt.timedelta(days=1)).sent == 0
    assert len(email_log(provider["log"])) == 1 and mail.outbox == []
