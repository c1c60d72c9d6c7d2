"""/api/v1/customers: create and update through the admin's customer form, list with cursor pagination, balance."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from customers.models import Customer
from tests.factories import CustomerFactory, InvoiceFactory, record_payment

pytestmark = pytest.mark.django_db


def test_create_customer(api):
    response = api.post(
        "/api/v1/customers",
        {
            "name": "Acme GmbH",
            "email": "billing@acme.example",
            "country": "AT",
            "tax_id": "ATU 135 856 27",
            "tax_status": "reverse_charge",
            "currency": "EUR",
            "external_id": "crm-42",
            "metadata": {"tier": "gold"},
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    customer = Customer.objects.get()
    assert body["id"] == customer.pk and body["external_id"] == "crm-42"
    assert customer.tax_id == "ATU13585627"  # normalised by the model's clean, as in the admin
    assert customer.metadata == {"tier": "gold"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "A", "email": "not-an-email", "country": "DE"}, "email"),
        ({"name": "A", "email": "a@example.com"}, "country"),
        ({"name": "A", "email": "a@example.com", "country": "DE", "payment_terms_days": "soon"}, "payment_terms_days"),
        ({"name": "A", "email": "a@example.com", "country": "DE", "payment_terms_days": -1}, "payment_terms_days"),
        ({"name": "A", "email": "a@example.com", "country": "DE", "currency": "XXX"}, "currency"),
        ({"name": "A", "email": "a@example.com", "country": "DE", "tax_status": "reverse_charge"}, "tax_id"),
        ({"name": "A", "email": "a@example.com", "country": "ZZ"}, "country"),
        ({"name": "A", "email": "a@example.com", "country": "DE", "colour": "red"}, "colour"),
        ({"name": ["A"], "email": "a@example.com", "country": "DE"}, "name"),
    ],
)
def test_bad_input_is_problem_naming_the_field_and_writes_nothing(api, body, field):
    response = api.post("/api/v1/customers", body)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["field"] == field
    assert problem["detail"].startswith(f"{field}: ")
    assert any(error["field"] == field for error in problem["errors"])
    assert not Customer.objects.exists()


def test_malformed_json_is_400_problem(api):
    response = api.post("/api/v1/customers", raw="{not json")
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_body"


def test_duplicate_external_id_is_refused(api):
    CustomerFactory(external_id="crm-1")
    response = api.post(
        "/api/v1/customers", {"name": "B", "email": "b@example.com", "country": "DE", "external_id": "crm-1"}
    )
    assert response.status_code == 400
    assert response.json()["field"] == "external_id"
    assert Customer.objects.count() == 1


def test_partial_update_changes_only_what_was_given(api):
    customer = CustomerFactory(name="Old", city="Berlin")
    response = api.patch(f"/api/v1/customers/{customer.pk}", {"name": "New"})
    assert response.status_code == 200, response.content
    customer.refresh_from_db()
    assert customer.name == "New" and customer.city == "Berlin"


def test_get_unknown_customer_is_404_problem(api):
    response = api.get("/api/v1/customers/999999")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_list_is_cursor_paginated_newest_first(api, django_assert_max_num_queries):
    customers = CustomerFactory.create_batch(5)
    with django_assert_max_num_queries(6):
        first = api.get("/api/v1/customers", {"limit": 2}).json()
    assert first["object"] == "list"
    assert [row["id"] for row in first["data"]] == [customers[4].pk, customers[3].pk]
    second = api.client.get(first["next"], headers={"Authorization": f"Bearer {api.key}"}).json()
    assert [row["id"] for row in second["data"]] == [customers[2].pk, customers[1].pk]
    third = api.client.get(second["next"], headers={"Authorization": f"Bearer {api.key}"}).json()
    assert [row["id"] for row in third["data"]] == [customers[0].pk]
    assert third["next"] is None


def test_list_filters_by_external_id(api):
    CustomerFactory(external_id="a")
    wanted = CustomerFactory(external_id="b")
    data = api.get("/api/v1/customers", {"external_id": "b"}).json()["data"]
    assert [row["id"] for row in data] == [wanted.pk]


@pytest.mark.parametrize(
    ("params", "field"), [({"limit": 0}, "limit"), ({"limit": "x"}, "limit"), ({"cursor": "garbage"}, "cursor")]
)
def test_bad_list_parameters_name_the_parameter(api, params, field):
    response = api.get("/api/v1/customers", params)
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_balance(api, series, vat_de):
    invoice = InvoiceFactory(lines=[{"description": "Plan", "unit_amount": Decimal("100.00")}], finalized=True)
    record_payment(customer=invoice.customer, amount="150.00")  # 119.00 settles the invoice, 31.00 is credit
    response = api.get(f"/api/v1/customers/{invoice.customer_id}/balance", {"as_of": "2026-04-01"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["as_of"] == "2026-04-01"
    assert body["balances"] == [
        {
            "currency": "EUR",
            "amount_due": "0.00",
            "overdue": "0.00",
            "credit": "31.00",
            "net": "-31.00",
            "open_invoices": 0,
            "overdue_invoices": 0,
        }
    ]


def test_balance_with_open_invoice_overdue(api, series, vat_de):
    invoice = InvoiceFactory(
        lines=[{"description": "Plan", "unit_amount": Decimal("100.00")}], finalized=dt.date(2026, 3, 2)
    )
    body = api.get(f"/api/v1/customers/{invoice.customer_id}/balance", {"as_of": "2026-06-01"}).json()
    [row] = body["balances"]
    assert row["amount_due"] == "119.00" and row["overdue"] == "119.00" and row["overdue_invoices"] == 1


def test_parent_and_billing_mode_on_the_customer_resource(api):
    parent = CustomerFactory(name="Holding AG")
    response = api.post(
        "/api/v1/customers",
        {
            "name": "Branch",
            "email": "b@example.com",
            "country": "DE",
            "parent": parent.pk,
            "billing_mode": "consolidated",
        },
    )
    assert response.status_code == 201, response.content
    assert (response.json()["parent"], response.json()["billing_mode"]) == (parent.pk, "consolidated")
    child = Customer.objects.get(name="Branch")
    assert (child.parent_id, child.billing_mode) == (parent.pk, "consolidated")
    assert api.get(f"/api/v1/customers/{parent.pk}").json()["parent"] is None


def test_a_parent_in_another_currency_is_a_problem_naming_the_parent(api):
    parent = CustomerFactory(currency="USD")
    response = api.post(
        "/api/v1/customers",
        {"name": "Branch", "email": "b@example.com", "country": "DE", "currency": "EUR", "parent": parent.pk},
    )
    assert response.status_code == 400
    assert response.json()["field"] == "parent" and "USD" in response.json()["detail"]
