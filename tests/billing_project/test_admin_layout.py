"""The admin's lists as staff read them (issue 19): the chosen columns, status badges with their word, yes/no as
words, the admin CSS on every page — and a query count that does not grow with the rows on the page."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core.admin_lists import badge, status_badge, yes_no
from invoicing.services import credit_note_issue, invoice_void
from subscriptions.models import SubscriptionItem
from subscriptions.services import ItemSpec, usage_record_create
from tests.factories import (
    CustomerFactory,
    InvoiceFactory,
    PriceFactory,
    SubscriptionFactory,
    record_payment,
)
from tests.invoicing.conftest import series, vat_de  # noqa: F401 - the default number series, German VAT

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("series", "vat_de")]
TODAY = dt.datetime(2026, 3, 20, 10, tzinfo=dt.UTC)


def test_a_badge_is_a_pill_with_its_word_and_a_tone_per_meaning() -> None:
    assert status_badge("paid", "Paid") == '<span class="badge badge-success">Paid</span>'
    assert status_badge("uncollectible", "Uncollectible") == '<span class="badge badge-danger">Uncollectible</span>'
    assert status_badge("past_due", "Past due") == '<span class="badge badge-warning">Past due</span>'
    assert status_badge("something_new", "New") == '<span class="badge badge-neutral">New</span>'
    assert badge("<b>x</b>", "info", title='a "t"') == (
        '<span class="badge badge-info" title="a &quot;t&quot;">&lt;b&gt;x&lt;/b&gt;</span>'
    )
    assert yes_no(True) == '<span class="badge badge-success">Yes</span>'
    assert yes_no(False) == '<span class="badge badge-muted">No</span>'
    with pytest.raises(ValueError, match="unknown badge tone"):
        badge("x", "purple")


def _rows(n: int) -> None:
    """n customers, each with a subscription (usage on a metered item), an open and a paid and a void invoice,
    a credit note and a payment."""
    for i in range(n):
        customer = CustomerFactory(name=f"Kunde {i} mit einem sehr langen Namen GmbH & Co. KG", currency="EUR")
        SubscriptionFactory(
            customer=customer,
            items=[ItemSpec(price=PriceFactory(), quantity=1), ItemSpec(price=PriceFactory(metered=True), quantity=1)],
            start_date=dt.date(2026, 3, 1),
        )
        item = SubscriptionItem.objects.get(subscription__customer=customer, price__usage_type="metered")
        usage_record_create(
            subscription_item=item,
            quantity=Decimal("3"),
            timestamp=TODAY - dt.timedelta(days=1),
            idempotency_key=f"usage-{n}-{i}-a-very-long-idempotency-key-from-the-client",
        )
        InvoiceFactory(customer=customer, finalized=dt.date(2026, 3, 2))  # open, due in March: overdue later
        paid = InvoiceFactory(customer=customer, finalized=dt.date(2026, 3, 2))
        record_payment(customer=customer, amount=paid.amount_due, reference=f"SEPA {i} Rechnung {paid.number}")
        void = InvoiceFactory(customer=customer, finalized=dt.date(2026, 3, 2))
        invoice_void(invoice=void, reason="test")
        credit_note_issue(invoice=InvoiceFactory(customer=customer, finalized=dt.date(2026, 3, 2)), reason="test")


LISTS = {
    "invoice": "admin:invoicing_invoice_changelist",
    "credit note": "admin:invoicing_creditnote_changelist",
    "customer": "admin:customers_customer_changelist",
    "subscription": "admin:subscriptions_subscription_changelist",
    "payment": "admin:payments_payment_changelist",
    "usage": "admin:subscriptions_usageevent_changelist",
}


def _queries(client: Any, url: str) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries), response.content.decode()


@pytest.mark.slow
def test_each_list_reads_a_fixed_number_of_queries_whatever_its_rows(
    admin_client: Any, django_assert_max_num_queries: Any
) -> None:
    with time_machine.travel(TODAY, tick=False):
        _rows(2)
        few = {name: _queries(admin_client, reverse(url))[0] for name, url in LISTS.items()}
        _rows(10)
        for name, url in LISTS.items():
            with django_assert_max_num_queries(few[name]):
                response = admin_client.get(reverse(url))
            assert response.status_code == 200, name
            assert response.content.decode().count("<tr") > 10, name
    assert max(few.values()) <= 14, few


def test_status_columns_are_badges_with_the_word(admin_client: Any) -> None:
    with time_machine.travel(TODAY, tick=False):
        _rows(1)
        invoices = admin_client.get(reverse(LISTS["invoice"])).content.decode()
        assert '<span class="badge badge-success">Paid</span>' in invoices
        assert '<span class="badge badge-muted">Void</span>' in invoices
        # an open invoice past its due date (2 March + 14 days) reads as overdue
        assert 'class="badge badge-warning" title="Open, due' in invoices and ">Overdue</span>" in invoices
        subscriptions = admin_client.get(reverse(LISTS["subscription"])).content.decode()
        assert '<span class="badge badge-success">Active</span>' in subscriptions
        assert "every month" in subscriptions
        payments = admin_client.get(reverse(LISTS["payment"])).content.decode()
        assert '<span class="badge badge-success">Succeeded</span>' in payments


def test_long_names_are_cut_with_their_full_text_kept_and_no_raw_boolean_icons(admin_client: Any) -> None:
    with time_machine.travel(TODAY, tick=False):
        _rows(1)
        customer = CustomerFactory(name="Archiv GmbH", is_archived=True)
        customers = admin_client.get(reverse(LISTS["customer"])).content.decode()
        name = "Kunde 0 mit einem sehr langen Namen GmbH &amp; Co. KG"
        assert f'<span class="cell-text" title="{name}">{name}</span>' in customers
        assert f'title="{customer.name}">{customer.name}</span> <span class="badge badge-muted">Archived</span>' in (
            customers
        )
        assert "icon-yes.svg" not in customers and "icon-no.svg" not in customers
        assert "14 days" in customers


def test_every_admin_page_loads_the_layout_css(admin_client: Any) -> None:
    for url in (reverse("admin:index"), reverse(LISTS["invoice"]), reverse("admin:customers_customer_add")):
        assert 'href="/static/admin/billing/admin.css"' in admin_client.get(url).content.decode(), url
