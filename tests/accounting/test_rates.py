"""Exchange rates: the ECB file loaded over HTTP (its published shape), a CSV import that is all or nothing, the
rate of a weekend day, a missing rate named, and conversions to the company currency to the cent."""

from __future__ import annotations

import datetime as dt
import http.server
import io
import threading
from decimal import Decimal as D

import pytest
from django.core.management import call_command
from django.urls import reverse

from accounting.models import ExchangeRate, RateSource
from accounting.rates import RateBook, RateMissing, ecb_load, rates_import_csv, to_company_currency
from core.errors import InvalidInput, Unavailable
from tests.factories.customers import StaffUserFactory

pytestmark = pytest.mark.django_db

# The shape of https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist-90d.xml (two days shown; ZAR is a
# currency the product does not bill in).
ECB_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
  <gesmes:subject>Reference rates</gesmes:subject>
  <gesmes:Sender><gesmes:name>European Central Bank</gesmes:name></gesmes:Sender>
  <Cube>
    <Cube time="2026-12-04">
      <Cube currency="USD" rate="1.0512"/><Cube currency="JPY" rate="162.35"/><Cube currency="GBP" rate="0.8321"/>
      <Cube currency="ZAR" rate="19.4411"/>
    </Cube>
    <Cube time="2026-12-03">
      <Cube currency="USD" rate="1.0498"/><Cube currency="JPY" rate="161.90"/><Cube currency="GBP" rate="0.8330"/>
      <Cube currency="ZAR" rate="19.5012"/>
    </Cube>
  </Cube>
</gesmes:Envelope>"""
FRIDAY, SATURDAY = dt.date(2026, 12, 4), dt.date(2026, 12, 5)


@pytest.fixture
def ecb_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.end_headers()
            self.wfile.write(ECB_XML)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/eurofxref-hist-90d.xml"
    server.shutdown()


def test_the_ecb_file_is_loaded_and_a_second_load_replaces_the_same_days(ecb_server):
    assert ecb_load(url=ecb_server) == 6  # three billed currencies × two days; ZAR skipped
    assert ExchangeRate.objects.get(date=FRIDAY, currency="USD").rate == D("1.0512")
    ExchangeRate.objects.filter(date=FRIDAY, currency="USD").update(rate=D("2"), source=RateSource.MANUAL)
    assert ecb_load(url=ecb_server) == 6
    row = ExchangeRate.objects.get(date=FRIDAY, currency="USD")
    assert (row.rate, row.source, ExchangeRate.objects.count()) == (D("1.0512"), RateSource.ECB, 6)


def test_an_unreachable_source_is_unavailable_and_stores_nothing():
    with pytest.raises(Unavailable, match="could not be fetched"):
        ecb_load(url="http://127.0.0.1:9/eurofxref-daily.xml")
    assert not ExchangeRate.objects.exists()


def test_conversions_to_the_company_currency_to_the_cent(ecb_server, settings):
    ecb_load(url=ecb_server)
    book = RateBook.load(date_from=FRIDAY, date_to=SATURDAY)
    assert book.convert(D("100.00"), "USD", FRIDAY) == D("95.13")  # 100 / 1.0512 = 95.1294…
    assert book.convert(D("10000"), "JPY", SATURDAY) == D("61.60")  # Saturday takes Friday's 162.35
    assert book.convert(D("100.00"), "USD", dt.date(2026, 12, 3)) == D("95.26")  # Thursday's 1.0498
    assert book.convert(D("100.00"), "EUR", FRIDAY) == D("100.00")
    settings.COMPANY_CURRENCY = "USD"
    assert book.convert(D("100.00"), "GBP", FRIDAY) == D("126.33")  # through the euro: 100 × 1.0512 / 0.8321
    assert book.convert(D("100.00"), "EUR", FRIDAY) == D("105.12")
    assert book.convert(D("5000"), "JPY", FRIDAY, into="GBP") == D("25.63")  # 5000 × 0.8321 / 162.35


def test_a_rate_older_than_the_allowed_age_is_refused_naming_currency_and_day(ecb_server, settings):
    ecb_load(url=ecb_server)
    settings.EXCHANGE_RATE_MAX_AGE_DAYS = 3
    with pytest.raises(RateMissing, match=r"no exchange rate for USD on 2026-12-08"):
        to_company_currency(D("1.00"), "USD", dt.date(2026, 12, 8))
    with pytest.raises(RateMissing, match="CHF"):
        to_company_currency(D("1.00"), "CHF", FRIDAY)


def test_a_csv_import_is_all_or_nothing_and_names_every_bad_row():
    good = 'date,currency,rate\n2026-12-04,USD,1.0512\n2026-12-04,JPY,"162,35"\n'
    assert rates_import_csv(good) == 2
    assert ExchangeRate.objects.get(currency="JPY").rate == D("162.35")
    bad = "date,currency,rate\n2026-12-05,USD,1.06\n2026-13-01,USD,1.06\n2026-12-05,XXX,1\n2026-12-05,GBP,-1\n"
    with pytest.raises(InvalidInput) as refused:
        rates_import_csv(bad)
    message = str(refused.value)
    for expected in ("line 3, date", "line 4, currency", "line 5, rate"):
        assert expected in message
    assert ExchangeRate.objects.count() == 2  # the good first row of the bad file was not stored


def test_the_command_imports_a_file(tmp_path):
    path = tmp_path / "rates.csv"
    path.write_text("date,currency,rate\n2026-12-04,SEK,11.2311\n", encoding="utf-8")
    out = io.StringIO()
    call_command("load_exchange_rates", "--file", str(path), stdout=out)
    assert "Imported 1 exchange rate(s)" in out.getvalue()
    assert ExchangeRate.objects.get(currency="SEK").source == RateSource.IMPORT


def test_a_billing_admin_corrects_a_rate_and_a_clerk_only_reads(client):
    client.force_login(StaffUserFactory(group="Billing admin"))
    response = client.post(
        reverse("admin:accounting_exchangerate_add"), {"date": "2026-12-04", "currency": "CHF", "rate": "0.9312"}
    )
    assert response.status_code == 302
    row = ExchangeRate.objects.get(currency="CHF")
    assert (row.rate, row.source, row.base) == (D("0.9312"), RateSource.MANUAL, "EUR")
    client.force_login(StaffUserFactory(group="Billing clerk"))
    assert client.get(reverse("admin:accounting_exchangerate_changelist")).status_code == 200
    refused = client.post(
        reverse("admin:accounting_exchangerate_add"), {"date": "2026-12-05", "currency": "CHF", "rate": "1"}
    )
    assert refused.status_code == 403
