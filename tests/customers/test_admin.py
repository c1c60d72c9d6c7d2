import io

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from customers.models import Customer
from tests.factories import CustomerFactory, StaffUserFactory

pytestmark = pytest.mark.django_db


def test_customer_changelist_with_500_customers_uses_a_bounded_number_of_queries(
    admin_client, django_assert_max_num_queries
):
    CustomerFactory.create_batch(500)
    url = reverse("admin:customers_customer_changelist")
    with django_assert_max_num_queries(12):
        response = admin_client.get(url)
    assert response.status_code == 200
    assert response.content.count(b'class="action-select"') == 50  # one page of 50


def test_changelist_search_and_filters(admin_client):
    CustomerFactory(name="Kowalski Sp. z o.o.", country="PL", currency="PLN", tax_id="PL5260250274")
    CustomerFactory(name="Müller GmbH")
    url = reverse("admin:customers_customer_changelist")
    response = admin_client.get(url, {"q": "PL5260250274"})
    assert b"Kowalski" in response.content and "Müller".encode() not in response.content
    response = admin_client.get(url, {"currency__exact": "PLN"})
    assert b"Kowalski" in response.content and "Müller".encode() not in response.content


def test_admin_import_view_dry_run_then_real_import(admin_client):
    url = reverse("admin:customers_customer_import")
    csv_bytes = "name,email,country\nŽofie Dvořáková,z@example.cz,CZ\n".encode()
    response = admin_client.post(url, {"file": io.BytesIO(csv_bytes), "dry_run": "on"})
    assert response.status_code == 200
    assert b"Dry run: would create 1" in response.content
    assert Customer.objects.count() == 0
    upload = io.BytesIO(csv_bytes)
    upload.name = "customers.csv"
    response = admin_client.post(url, {"file": upload})
    assert response.status_code == 302
    assert Customer.objects.get().name == "Žofie Dvořáková"


def test_admin_import_view_shows_row_errors_and_writes_nothing(admin_client):
    upload = io.BytesIO(b"name,email,country\nA,a@example.com,DE\nB,b@example.com,ZZ\n")
    upload.name = "bad.csv"
    response = admin_client.post(reverse("admin:customers_customer_import"), {"file": upload})
    assert response.status_code == 200
    assert b"<td>3</td><td>country</td>" in response.content
    assert Customer.objects.count() == 0


def test_change_form_rejects_invalid_vat_number_naming_the_field(admin_client):
    customer = CustomerFactory()
    url = reverse("admin:customers_customer_change", args=[customer.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    data = {
        "name": customer.name,
        "email": customer.email,
        "country": "DE",
        "tax_id": "DE000000000",
        "tax_status": "taxable",
        "currency": "EUR",
        "payment_terms_days": "14",
        "language": "en",
        "metadata": "{}",
    }
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "is not a valid EU VAT number" in response.content.decode()


def test_customer_without_history_can_be_deleted(admin_client):
    customer = CustomerFactory()
    response = admin_client.post(reverse("admin:customers_customer_delete", args=[customer.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Customer.objects.filter(pk=customer.pk).exists()


def test_archive_action(admin_client):
    customers = CustomerFactory.create_batch(3)
    admin_client.post(
        reverse("admin:customers_customer_changelist"),
        {"action": "archive_customers", "_selected_action": [c.pk for c in customers[:2]]},
    )
    assert list(Customer.objects.order_by("pk").values_list("is_archived", flat=True)) == [True, True, False]


@pytest.mark.parametrize(
    ("group", "can_view", "can_add", "can_delete"),
    [
        ("Billing admin", True, True, True),
        ("Billing clerk", True, True, False),
        ("Auditor (read-only)", True, False, False),
    ],
)
def test_staff_groups_grant_what_their_names_say(client, group, can_view, can_add, can_delete):
    assert Group.objects.filter(name=group).exists()
    user = StaffUserFactory(group=group)
    assert user.has_perm("customers.view_customer") is can_view
    assert user.has_perm("customers.add_customer") is can_add
    assert user.has_perm("customers.change_customer") is can_add
    assert user.has_perm("customers.delete_customer") is can_delete
    client.force_login(user)
    response = client.get(reverse("admin:customers_customer_add"))
    assert response.status_code == (200 if can_add else 403)


def test_admin_site_carries_the_product_name(admin_client):
    response = admin_client.get(reverse("admin:index"))
    assert b"Cadence Billing" in response.content


@pytest.mark.parametrize(
    ("group", "allowed", "refused"),
    [
        ("Billing admin", ["invoicing.void_invoice", "invoicing.change_taxrate"], []),
        (
            "Billing clerk",
            ["invoicing.finalize_invoice", "invoicing.add_creditnote"],
            ["invoicing.void_invoice", "invoicing.change_taxrate", "invoicing.delete_invoice"],
        ),
        ("Auditor (read-only)", ["invoicing.view_invoice"], ["invoicing.finalize_invoice", "invoicing.add_invoice"]),
    ],
)
def test_invoicing_permissions_per_group(group, allowed, refused):
    user = StaffUserFactory(group=group)
    for perm in allowed:
        assert user.has_perm(perm), perm
    for perm in refused:
        assert not user.has_perm(perm), perm
