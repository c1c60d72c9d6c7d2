"""The VIES check of customers' VAT numbers (issue 25, "Tax"): queued when the number changes, answered by a local
fake of VIES's REST service, retried while VIES is down, kept as evidence, and the rule for an invalid number."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from decimal import Decimal as D
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.management import call_command
from django.urls import reverse

from core.tax_categories import TaxCategory
from customers.models import Customer, VatCheck, VatCheckStatus, VatStatus
from customers.vat import vat_check_now, vat_checks_due, vat_checks_queue_due
from invoicing.taxes import resolve_tax, tax_rates_load
from tests.factories import CustomerFactory, TaxRateFactory

pytestmark = pytest.mark.django_db

FR_VAT = "FR40303265045"  # valid check digits (python-stdnum's example)
FR_VAT_2 = "FR23334175221"


class FakeVies:
    """VIES's REST ``check-vat-number`` on 127.0.0.1: answers from ``verdicts`` (number → "valid", "invalid" or an
    error code like MS_UNAVAILABLE), records every request body."""

    def __init__(self) -> None:
        self.verdicts: dict[str, str] = {}
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                number = body["countryCode"] + body["vatNumber"]
                verdict = fake.verdicts.get(number, "valid")
                if verdict in ("valid", "invalid"):
                    payload: dict[str, Any] = {
                        "countryCode": body["countryCode"],
                        "vatNumber": body["vatNumber"],
                        "requestDate": "2026-03-02T10:15:00.000Z",
                        "valid": verdict == "valid",
                        "requestIdentifier": f"WAPIAAAAX{len(fake.requests):07d}" if "requesterNumber" in body else "",
                        "name": "SA DEMO CLIENT" if verdict == "valid" else "---",
                        "address": "1 RUE DE LA PAIX\n75002 PARIS" if verdict == "valid" else "---",
                        "userError": verdict.upper(),
                    }
                    status = 200
                else:
                    payload = {"actionSucceed": False, "errorWrappers": [{"error": verdict, "message": "down"}]}
                    status = 500
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/taxation_customs/vies/rest-api/check-vat-number"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeVies:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def vies(settings: Any) -> Iterator[FakeVies]:
    with FakeVies() as fake:
        settings.VIES_URL = fake.url
        settings.VAT_CHECK_ENABLED = True
        settings.VAT_CHECK_MAX_ATTEMPTS = 3
        yield fake


def _french_business(**kwargs: Any) -> Customer:
    customer = CustomerFactory(name="Client SA", country="FR", tax_id="", **kwargs)
    customer.tax_id = FR_VAT
    customer.full_clean()
    customer.save()
    return customer


def test_a_new_number_is_checked_and_the_answer_kept_as_evidence(vies, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        customer = _french_business()
    customer.refresh_from_db()
    check = VatCheck.objects.get(customer=customer)
    assert (customer.vat_status, check.status, check.vat_number) == (VatStatus.VALID, VatCheckStatus.VALID, FR_VAT)
    assert check.request_date == dt.date(2026, 3, 2)
    # The seller's own number is the requester, so VIES gives a consultation number (the audit evidence).
    assert vies.requests == [
        {
            "countryCode": "FR",
            "vatNumber": "40303265045",
            "requesterMemberStateCode": "DE",
            "requesterNumber": "136695976",
        }
    ]
    assert check.consultation_number == "WAPIAAAAX0000001"
    assert (check.trader_name, check.trader_address) == ("SA DEMO CLIENT", "1 RUE DE LA PAIX\n75002 PARIS")


def test_saving_without_changing_the_number_asks_nothing(vies, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        customer = _french_business()
    with django_capture_on_commit_callbacks(execute=True):
        customer = Customer.objects.get(pk=customer.pk)
        customer.name = "Client SA (Paris)"
        customer.save()
    assert len(vies.requests) == 1
    assert VatCheck.objects.filter(customer=customer).count() == 1


def test_vies_down_is_retried_and_never_blocks_then_the_daily_job_asks_again(vies, django_capture_on_commit_callbacks):
    vies.verdicts[FR_VAT] = "MS_UNAVAILABLE"
    with django_capture_on_commit_callbacks(execute=True):
        customer = _french_business()
    customer.refresh_from_db()
    check = VatCheck.objects.get(customer=customer)
    # three attempts (VAT_CHECK_MAX_ATTEMPTS), each recorded; the customer is marked, not blocked
    assert (check.status, check.attempts, customer.vat_status) == (
        VatCheckStatus.UNAVAILABLE,
        3,
        VatStatus.UNAVAILABLE,
    )
    assert "MS_UNAVAILABLE" in check.error
    assert len(vies.requests) == 3
    # An unanswered number still counts as a VAT id: the reverse charge applies meanwhile.
    TaxRateFactory(country="FR", percentage=D("20"), name="TVA 20 %")
    resolution = resolve_tax(customer=customer, tax_rates_by_country=tax_rates_load())
    assert resolution.category == TaxCategory.REVERSE_CHARGE
    # VIES is back: the daily job picks the number up and the answer lands.
    vies.verdicts[FR_VAT] = "valid"
    assert vat_checks_due() == [customer.pk]
    with django_capture_on_commit_callbacks(execute=True):
        assert vat_checks_queue_due() == 1
    customer.refresh_from_db()
    assert customer.vat_status == VatStatus.VALID
    assert vat_checks_due() == []


def test_an_invalid_number_is_taxed_as_a_consumer_in_their_country(vies, django_capture_on_commit_callbacks):
    TaxRateFactory(country="FR", percentage=D("20"), name="TVA 20 %")
    vies.verdicts[FR_VAT] = "invalid"
    with django_capture_on_commit_callbacks(execute=True):
        customer = _french_business()
    customer.refresh_from_db()
    assert customer.vat_status == VatStatus.INVALID
    assert VatCheck.objects.get(customer=customer).consultation_number.startswith("WAPI")
    resolution = resolve_tax(customer=customer, tax_rates_by_country=tax_rates_load())
    assert (resolution.category, resolution.percentage, resolution.note) == (TaxCategory.STANDARD, D("20"), "")


def test_a_late_answer_for_a_replaced_number_does_not_change_the_customer(vies, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        customer = _french_business()
    first = VatCheck.objects.get(customer=customer)
    vies.verdicts[FR_VAT] = "invalid"
    with django_capture_on_commit_callbacks(execute=True):
        customer.tax_id = FR_VAT_2
        customer.save()
    customer.refresh_from_db()
    assert customer.vat_status == VatStatus.VALID  # FR_VAT_2 answered valid
    for callback in callbacks:  # the first number's task runs late: its answer is kept, the customer untouched
        callback()
    first.refresh_from_db()
    customer.refresh_from_db()
    assert (first.status, customer.vat_status) == (VatCheckStatus.INVALID, VatStatus.VALID)


def test_a_duplicate_task_asks_vies_once(vies, django_capture_on_commit_callbacks):
    from customers.tasks import check_vat_number

    with django_capture_on_commit_callbacks(execute=True):
        customer = _french_business()
    check = VatCheck.objects.get(customer=customer)
    check_vat_number.delay(check.pk)
    assert len(vies.requests) == 1


def test_non_eu_numbers_are_not_sent_to_vies(vies, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        customer = CustomerFactory(country="CH", tax_id="")
        customer.tax_id = "CHE-107.787.577 IVA"
        customer.full_clean()
        customer.save()
    customer.refresh_from_db()
    assert customer.vat_status == VatStatus.NOT_APPLICABLE
    assert vies.requests == [] and not VatCheck.objects.exists()
    assert vat_check_now(customer=customer) is None


def test_command_checks_the_due_numbers(vies, settings, capsys):
    settings.VAT_CHECK_ENABLED = False  # saved without the automatic check: the numbers are due
    good = _french_business()
    bad = CustomerFactory(name="Autre SARL", country="FR", tax_id=FR_VAT_2)
    vies.verdicts[FR_VAT_2] = "invalid"
    call_command("check_vat_numbers", "--json")
    assert json.loads(capsys.readouterr().out) == {"checked": 2, "invalid": 1, "valid": 1}
    good.refresh_from_db()
    bad.refresh_from_db()
    assert (good.vat_status, bad.vat_status) == (VatStatus.VALID, VatStatus.INVALID)


def test_admin_check_now_and_the_evidence_on_the_customer_page(vies, admin_client, settings):
    settings.VAT_CHECK_ENABLED = False
    customer = _french_business()
    url = reverse("admin:customers_customer_check_vat", args=[customer.pk])
    assert "Check now" in admin_client.get(url).content.decode()
    response = admin_client.post(url, follow=True)
    assert "VIES: FR40303265045 is valid." in response.content.decode()
    page = admin_client.get(reverse("admin:customers_customer_change", args=[customer.pk])).content.decode()
    assert "Valid (VIES)" in page
    assert "consultation number WAPIAAAAX0000001" in page
    assert 'data-action="check_vat"' in page
    listing = admin_client.get(reverse("admin:customers_vatcheck_changelist")).content.decode()
    assert "WAPIAAAAX0000001" in listing


def test_rejected_numbers_show_on_the_dashboard(vies, admin_client, django_capture_on_commit_callbacks):
    vies.verdicts[FR_VAT] = "invalid"
    with django_capture_on_commit_callbacks(execute=True):
        _french_business()
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert "VAT numbers VIES rejected" in page
    listing = admin_client.get(reverse("admin:customers_customer_changelist"), {"vat_status__exact": "invalid"})
    assert "Client SA" in listing.content.decode()
