"""Parent accounts (issue 25, first bullet; docs/decisions/parent-accounts.md): a consolidated invoice of three
children with mixed tax, billed once whatever runs twice or overlaps; "parent pays"; dry-run equals the run.
Exact amounts; the seller is the German GmbH of tests/conftest.py."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal as D

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from pypdf import PdfReader

from customers.models import BillingMode, Customer
from invoicing import consolidation, documents
from invoicing.billing_run import billing_run, billing_run_chunk, billing_run_open
from invoicing.models import ChildAccountPeriod, Invoice, InvoiceStatus, TaxTreatment
from invoicing.services import invoice_finalize
from invoicing.subscription_billing import subscription_change_invoice
from subscriptions.services import ItemSpec, ProrationBehavior
from tests.factories import CustomerFactory, SubscriptionFactory
from tests.factories.parent_accounts import parent_family_create

JAN_1 = dt.date(2026, 1, 1)
FEB_1 = dt.date(2026, 2, 1)


def _rows(summary: list[dict]) -> list[tuple[str, str, str, str]]:
    return [(row["category"], row["percentage"], row["taxable_amount"], row["tax_amount"]) for row in summary]


@pytest.fixture
def family(series):
    return parent_family_create()


def _groups(invoice: Invoice) -> list[tuple[str, list[tuple[str, str, D, D]]]]:
    lines = list(invoice.lines.order_by("position"))
    return [
        (
            period.account_snapshot["name"],
            [
                (line.description.split(" ")[0], line.tax_category, line.net_amount, line.tax_amount)
                for line in lines
                if period.first_position <= line.position <= period.last_position
            ],
        )
        for period in invoice.child_periods.order_by("first_position")
    ]


def test_three_children_with_mixed_tax_are_billed_on_one_invoice_to_the_parent(family):
    run = billing_run(as_of=JAN_1)

    assert run.invoices_created == 1
    invoice = Invoice.objects.get()
    assert invoice.customer == family["parent"]
    assert invoice.customer_snapshot["name"] == "Holding AG"
    assert (invoice.number, invoice.status, invoice.subscription_id) == ("INV-2026-000001", InvoiceStatus.OPEN, None)
    assert invoice.due_date == JAN_1 + dt.timedelta(days=30)  # the parent's payment terms
    # grouped per child, children by name; each child's lines taxed per the child
    assert _groups(invoice) == [
        ("Anna Schmidt", [("Cloud", "S", D("100.00"), D("19.00")), ("Handbook", "AA", D("24.99"), D("1.75"))]),
        ("Berlin GmbH", [("Cloud", "S", D("100.00"), D("19.00"))]),
        ("Paris SARL", [("Cloud", "AE", D("100.00"), D("0.00"))]),
    ]
    assert sorted(_rows(invoice.tax_summary)) == [
        ("AA", "7", "24.99", "1.75"),
        ("AE", "0", "100.00", "0.00"),
        ("S", "19", "200.00", "38.00"),
    ]
    assert (invoice.subtotal, invoice.tax_total, invoice.total, invoice.amount_due) == (
        D("324.99"), D("39.75"), D("364.74"), D("364.74")
    )  # fmt: skip
    assert invoice.tax_treatment == TaxTreatment.STANDARD
    assert "FR40303265045" in invoice.tax_note  # the reverse-charge note of the French group
    assert sorted(invoice.child_periods.values_list("subscription_id", flat=True)) == sorted(
        s.pk for s in family["subscriptions"].values()
    )


def test_a_second_run_and_a_redelivered_chunk_bill_nothing_again(family):
    run, chunks = billing_run_open(as_of=JAN_1, chunk_size=2)
    # the parent's three subscriptions stay in one chunk whatever the chunk size
    assert chunks == [sorted(s.pk for s in family["subscriptions"].values())]
    billing_run_chunk(run=run, subscription_ids=chunks[0], as_of=JAN_1)
    billing_run_chunk(run=run, subscription_ids=chunks[0], as_of=JAN_1)  # delivered twice
    again = billing_run(as_of=JAN_1)

    assert again.invoices_created == 0
    assert Invoice.objects.count() == 1
    assert ChildAccountPeriod.objects.count() == 3
    february = billing_run(as_of=FEB_1)
    assert february.invoices_created == 1
    assert list(Invoice.objects.order_by("number").values_list("number", "total")) == [
        ("INV-2026-000001", D("364.74")),
        ("INV-2026-000002", D("364.74")),
    ]


def test_the_database_refuses_a_child_period_billed_twice(family):
    billing_run(as_of=JAN_1)
    period = ChildAccountPeriod.objects.first()
    assert period is not None
    with pytest.raises(IntegrityError), transaction.atomic():
        ChildAccountPeriod.objects.create(
            invoice=period.invoice,
            account=period.account,
            subscription=period.subscription,
            period_key=period.period_key,
            first_position=1,
            last_position=1,
        )


def test_chunks_keep_each_parents_subscriptions_together():
    payers = {11: 1, 12: 2, 13: 1, 14: 2, 15: 1}
    assert list(consolidation.chunks_by_payer([1, 2, 3, 11, 12, 13, 14, 15], payers, 2)) == [
        [1, 2],
        [3],
        [11, 13, 15],
        [12, 14],
    ]


def test_a_failed_chunk_is_billed_again_with_each_parents_subscriptions_together(family):
    subscriptions = sorted(s.pk for s in family["subscriptions"].values())
    own = SubscriptionFactory(customer=CustomerFactory()).pk
    assert consolidation.billing_units([subscriptions[0], own, *subscriptions[1:]]) == [subscriptions, [own]]


def test_dry_run_equals_the_real_run(family):
    dry = billing_run(as_of=JAN_1, dry_run=True)
    assert Invoice.objects.count() == 0
    real = billing_run(as_of=JAN_1)
    assert (dry.invoices_created, dry.totals) == (real.invoices_created, real.totals) == (1, {"EUR": "364.74"})


def test_a_run_for_one_child_bills_the_whole_family_on_one_invoice(family):
    billing_run(as_of=JAN_1, customer_id=family["paris"].pk)
    assert Invoice.objects.get().total == D("364.74")


def test_parent_pays_bills_each_child_on_its_own_invoice_addressed_to_the_parent(family):
    Customer.objects.filter(pk__in=[family["berlin"].pk, family["paris"].pk, family["anna"].pk]).update(
        billing_mode=BillingMode.PARENT_PAYS
    )
    billing_run(as_of=JAN_1)

    invoices = list(Invoice.objects.order_by("number"))
    assert [(i.customer_id, i.customer_snapshot["name"]) for i in invoices] == [(family["parent"].pk, "Holding AG")] * 3
    by_child = {i.child_periods.get().account_snapshot["name"]: i for i in invoices}
    assert {name: (i.total, i.tax_treatment) for name, i in by_child.items()} == {
        "Anna Schmidt": (D("145.74"), TaxTreatment.STANDARD),
        "Berlin GmbH": (D("119.00"), TaxTreatment.STANDARD),
        "Paris SARL": (D("100.00"), TaxTreatment.REVERSE_CHARGE),
    }
    assert by_child["Paris SARL"].subscription_id == family["subscriptions"]["paris"].pk
    assert [i.number for i in invoices] == ["INV-2026-000001", "INV-2026-000002", "INV-2026-000003"]


def test_a_held_consolidated_draft_is_finalized_with_each_childs_tax(family):
    Customer.objects.filter(pk=family["parent"].pk).update(review_invoices=True)
    billing_run(as_of=JAN_1)
    draft = Invoice.objects.get()
    assert draft.status == InvoiceStatus.DRAFT and draft.memo == "held for review (customer setting)"

    invoice = invoice_finalize(invoice=draft, issue_date=JAN_1)
    assert (invoice.tax_total, invoice.total) == (D("39.75"), D("364.74"))
    assert sorted(_rows(invoice.tax_summary))[1] == ("AE", "0", "100.00", "0.00")


# --- the parent and its rules ----------------------------------------------------------------------------


def test_a_parent_in_another_currency_is_refused_naming_the_field(db):
    parent = CustomerFactory(currency="USD")
    child = CustomerFactory(parent=None)
    child.parent = parent
    with pytest.raises(ValidationError) as error:
        child.full_clean()
    assert "USD" in error.value.message_dict["parent"][0]


def test_parents_are_one_level_so_cycles_are_refused(db):
    top = CustomerFactory(name="Top")
    middle = CustomerFactory(name="Middle", parent=top)
    child = CustomerFactory()
    child.parent = middle
    with pytest.raises(ValidationError) as error:
        child.full_clean()
    assert "one level" in error.value.message_dict["parent"][0]
    top.parent = middle  # top → middle → top
    with pytest.raises(ValidationError) as error:
        top.full_clean()
    assert "parent" in error.value.message_dict
    top.parent = top
    with pytest.raises(ValidationError) as error:
        top.full_clean()
    assert error.value.message_dict["parent"] == ["A customer cannot be its own parent."]


def test_a_billing_mode_needs_a_parent(db):
    customer = CustomerFactory()
    customer.billing_mode = BillingMode.CONSOLIDATED
    with pytest.raises(ValidationError) as error:
        customer.full_clean()
    assert "parent" in error.value.message_dict["billing_mode"][0]


# --- the faces: PDF, admin, API ------------------------------------------------------------------------------


def _pdf_text(pdf: bytes) -> str:
    return " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages).split())


def test_the_pdf_groups_the_lines_per_child_with_each_childs_total(family):
    billing_run(as_of=JAN_1)
    invoice = Invoice.objects.get()
    text = _pdf_text(documents.render_invoice_pdf(invoice=invoice))
    assert "Holding AG" in text
    assert text.index("Anna Schmidt (DE)") < text.index("Berlin GmbH (DE, Customer VAT ID: DE136695976)")
    assert "Total Anna Schmidt net €124.99, tax €20.75 €145.74" in text
    assert "Total Berlin GmbH net €100.00, tax €19.00 €119.00" in text
    assert "Paris SARL (FR, Customer VAT ID: FR40303265045)" in text
    assert "Total Paris SARL net €100.00, tax €0.00 €100.00" in text
    assert "VAT 19 % on €200.00 €38.00 VAT 7 % on €24.99 €1.75 VAT 0 % (Reverse charge) on €100.00 €0.00" in text
    assert "Total €364.74" in text
    # the legal note of the French group is the EU reverse charge's: for the child, not for the German parent
    assert "Paris SARL: Reverse charge: the recipient is liable for the VAT (Article 196" in text


def test_the_admin_shows_the_children_and_the_per_child_grouping(family, admin_client):
    billing_run(as_of=JAN_1)
    invoice = Invoice.objects.get()
    page = admin_client.get(reverse("admin:invoicing_invoice_change", args=[invoice.pk])).content.decode()
    assert "Child accounts (lines per child)" in page
    assert reverse("admin:customers_customer_change", args=[family["paris"].pk]) in page
    parent_page = admin_client.get(
        reverse("admin:customers_customer_change", args=[family["parent"].pk])
    ).content.decode()
    assert "Anna Schmidt</a> · On the parent&#x27;s consolidated invoice" in parent_page
    children = admin_client.get(reverse("admin:customers_customer_changelist") + "?account=child")
    assert [c.name for c in children.context["cl"].result_list] == ["Anna Schmidt", "Berlin GmbH", "Paris SARL"]
    parents = admin_client.get(reverse("admin:customers_customer_changelist") + "?account=parent")
    assert [c.name for c in parents.context["cl"].result_list] == ["Holding AG"]


def test_an_invoice_now_change_of_a_child_is_addressed_to_the_parent_under_the_childs_heading(family):
    billing_run(as_of=JAN_1)
    subscription = family["subscriptions"]["berlin"]
    plan = subscription.items.get().price
    ebook = family["subscriptions"]["anna"].items.get(price__product__name="Handbook (e-book)").price
    outcome = subscription_change_invoice(
        subscription=subscription,
        items=[ItemSpec(price=plan, quantity=1), ItemSpec(price=ebook, quantity=1)],
        as_of=dt.date(2026, 1, 16),
        proration_behavior=ProrationBehavior.ALWAYS_INVOICE,
    )
    invoice = outcome.invoice
    assert invoice is not None and invoice.customer_id == family["parent"].pk
    assert invoice.customer_snapshot["name"] == "Holding AG"
    # the e-book for 16 of 31 days: 24.99 × 16/31 = 12.90, 7 % VAT 0.90 (taxed per Berlin GmbH)
    assert (invoice.subtotal, invoice.tax_total, invoice.total) == (D("12.90"), D("0.90"), D("13.80"))
    assert [group for group, _ in _groups(invoice)] == ["Berlin GmbH"]
