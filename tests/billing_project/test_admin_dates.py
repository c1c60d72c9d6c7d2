"""The invoice list's date drill-down: years from the first and last issue date (one MIN/MAX query), months
and days without a query, and each link filters the list."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse

from tests.factories import CustomerFactory, InvoiceFactory, NumberSeriesFactory, TaxRateFactory

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:invoicing_invoice_changelist")


@pytest.fixture
def invoices():
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE")
    customer = CustomerFactory()
    return {
        day: InvoiceFactory(customer=customer, finalized=day)
        for day in (dt.date(2024, 11, 3), dt.date(2026, 3, 2), dt.date(2026, 3, 20), dt.date(2026, 5, 1))
    }


def _hierarchy(html: str) -> list[str]:
    block = re.search(r'<nav class="toplinks">(.*?)</nav>', html, re.S)
    assert block, "no date hierarchy on the page"
    return [re.sub(r"\s+", " ", text).strip() for text in re.findall(r"<a [^>]*>(.*?)</a>", block.group(1), re.S)]


def test_years_span_the_first_to_the_last_issue_date(admin_client, invoices, django_assert_max_num_queries):
    with django_assert_max_num_queries(10):
        html = admin_client.get(CHANGELIST).content.decode()
    assert _hierarchy(html) == ["2024", "2025", "2026"]


def test_drilling_down_filters_the_list(admin_client, invoices):
    year = admin_client.get(CHANGELIST, {"issue_date__year": "2026"}).content.decode()
    links = _hierarchy(year)
    assert links[0] == "&lsaquo; All dates" and len(links) == 13 and links[3] == "March 2026"
    month = admin_client.get(CHANGELIST, {"issue_date__year": "2026", "issue_date__month": "3"})
    assert len(_hierarchy(month.content.decode())) == 1 + 31
    shown = {row.number for row in month.context["cl"].result_list}
    assert shown == {invoices[dt.date(2026, 3, 2)].number, invoices[dt.date(2026, 3, 20)].number}
    day = admin_client.get(CHANGELIST, {"issue_date__year": "2026", "issue_date__month": "3", "issue_date__day": "20"})
    assert [row.number for row in day.context["cl"].result_list] == [invoices[dt.date(2026, 3, 20)].number]


def test_no_invoices_no_hierarchy(admin_client):
    html = admin_client.get(CHANGELIST).content.decode()
    assert 'class="toplinks"' not in html
