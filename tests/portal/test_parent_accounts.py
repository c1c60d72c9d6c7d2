"""The portal of a parent account sees its children's invoices (list, detail, PDF); a child's portal user never
sees the parent's or a sibling's (docs/decisions/parent-accounts.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.urls import reverse

from customers.models import BillingMode
from invoicing.billing_run import billing_run
from invoicing.models import Invoice
from tests.factories.parent_accounts import parent_family_create
from tests.factories.portal import PortalUserFactory
from tests.portal.conftest import make_invoice, signed_in_client

JAN_1 = dt.date(2026, 1, 1)


@pytest.fixture
def family(billing: Any) -> dict[str, Any]:
    family = parent_family_create()
    billing_run(as_of=JAN_1)  # the consolidated invoice, the parent's
    family["consolidated"] = Invoice.objects.get(customer=family["parent"])
    # a child billed on its own invoices too (a one-off of Berlin's), and the parent's own invoice
    family["berlin_own"] = make_invoice(family["berlin"], "30.00", description="Berlin workshop")
    family["paris_own"] = make_invoice(family["paris"], "40.00", description="Paris workshop")
    return family


def _numbers(client: Any) -> list[str]:
    response = client.get(reverse("portal:invoices"))
    assert response.status_code == 200
    return sorted(row["invoice"].number for row in response.context["rows"])


def test_the_parent_sees_the_consolidated_invoice_and_its_childrens_own_invoices(family, django_assert_max_num_queries):
    client = signed_in_client(PortalUserFactory(customer=family["parent"], email="finance@holding.example"))
    with django_assert_max_num_queries(10):
        numbers = _numbers(client)
    assert numbers == sorted([family["consolidated"].number, family["berlin_own"].number, family["paris_own"].number])
    detail = client.get(reverse("portal:invoice_detail", args=[family["consolidated"].number]))
    page = detail.content.decode()
    assert "Anna Schmidt (DE)" in page and "Total Paris SARL" in page and "€364.74" in page
    child_detail = client.get(reverse("portal:invoice_detail", args=[family["berlin_own"].number]))
    assert child_detail.status_code == 200 and child_detail.context["payable"] is False  # Berlin's to pay
    pdf = client.get(reverse("portal:invoice_pdf", args=[family["paris_own"].number]))
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"


def test_the_parents_list_and_overview_name_the_child_of_each_childs_invoice(family, django_assert_max_num_queries):
    """A child's own invoice in the parent's list says whose it is ("for Berlin GmbH") and offers no payment; the
    parent's own invoices name nobody; in German the label is translated."""
    user = PortalUserFactory(customer=family["parent"], email="finance@holding.example")
    client = signed_in_client(user)
    for url in (reverse("portal:invoices"), reverse("portal:overview")):
        with django_assert_max_num_queries(12):
            response = client.get(url)
        rows = {row["invoice"].number: row for row in response.context["rows" if "invoices" in url else "recent"]}
        assert rows[family["berlin_own"].number]["account"] == "Berlin GmbH"
        assert rows[family["paris_own"].number]["account"] == "Paris SARL"
        assert rows[family["consolidated"].number]["account"] == ""
        assert [row["payable"] for number, row in rows.items() if row["account"]] == [False, False]
        html = response.content.decode()
        assert '<span class="sub">for Berlin GmbH</span>' in html and "for Holding AG" not in html
    family["parent"].language = "de"
    family["parent"].save(update_fields=["language"])
    assert '<span class="sub">für Paris SARL</span>' in client.get(reverse("portal:invoices")).content.decode()
    # a child's own portal names nobody: every invoice it sees is its own
    child = signed_in_client(PortalUserFactory(customer=family["berlin"], email="it@berlin.example"))
    assert [row["account"] for row in child.get(reverse("portal:invoices")).context["rows"]] == [""]


def test_a_child_sees_only_its_own_invoices_never_the_parents_or_a_siblings(family):
    client = signed_in_client(PortalUserFactory(customer=family["berlin"], email="it@berlin.example"))
    assert _numbers(client) == [family["berlin_own"].number]
    for number in (family["consolidated"].number, family["paris_own"].number):
        assert client.get(reverse("portal:invoice_detail", args=[number])).status_code == 404
        assert client.get(reverse("portal:invoice_pdf", args=[number])).status_code == 404


def test_a_parent_pays_child_invoice_is_the_parents_not_the_childs(billing):
    family = parent_family_create(billing_mode=BillingMode.PARENT_PAYS)
    billing_run(as_of=JAN_1)
    parent = signed_in_client(PortalUserFactory(customer=family["parent"], email="finance@holding.example"))
    child = signed_in_client(PortalUserFactory(customer=family["anna"], email="anna@example.com"))
    assert len(_numbers(parent)) == 3
    assert _numbers(child) == []
