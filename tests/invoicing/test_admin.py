"""Invoicing admin: bounded queries, read-only finalized invoices, actions with partial failures, credit notes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse

from invoicing.models import BillingReason, BillingRun, CreditNote, Invoice, InvoiceLine, InvoiceStatus
from tests.factories.customers import CustomerFactory, StaffUserFactory
from tests.factories.invoicing import InvoiceFactory, invoices_issue_new

pytestmark = pytest.mark.django_db
ISSUE = dt.date(2026, 3, 2)
CHANGELIST = "admin:invoicing_invoice_changelist"


def _issue(customers, count):
    batch = [
        (
            Invoice(customer=customers[i % len(customers)], currency="EUR", billing_reason=BillingReason.ONE_OFF),
            [InvoiceLine(description="Plan", quantity=D(1), unit_amount=D("10.00"))],
        )
        for i in range(count)
    ]
    return invoices_issue_new(invoices=batch, issue_date=ISSUE)


def _messages(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_changelist_with_300_invoices_uses_a_bounded_number_of_queries(
    admin_client, series, vat_de, django_assert_max_num_queries
):
    _issue(CustomerFactory.create_batch(30), 300)
    with django_assert_max_num_queries(10):
        response = admin_client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert response.content.count(b'class="action-select"') == 50  # list_per_page
    with django_assert_max_num_queries(10):
        response = admin_client.get(reverse(CHANGELIST), {"status__exact": "open", "currency__exact": "EUR"})
    assert response.status_code == 200


def test_search_by_number_and_customer_email(admin_client, series, vat_de):
    customers = [CustomerFactory(email="anna@kunde.example"), CustomerFactory(email="bob@kunde.example")]
    first, second = _issue(customers, 2)
    response = admin_client.get(reverse(CHANGELIST), {"q": second.number})
    assert second.number.encode() in response.content and first.number.encode() not in response.content
    response = admin_client.get(reverse(CHANGELIST), {"q": "anna@kunde"})
    assert first.number.encode() in response.content and second.number.encode() not in response.content


def test_finalized_invoice_change_page_is_read_only_and_a_post_changes_nothing(admin_client, series, vat_de):
    invoice = InvoiceFactory(finalized=ISSUE, memo="original")
    url = reverse("admin:invoicing_invoice_change", args=[invoice.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert invoice.number in html
    for editable in ('name="memo"', 'name="customer"', 'name="lines-0-description"', 'name="_save"'):
        assert editable not in html
    assert "Create credit note" in html
    response = admin_client.post(url, {"memo": "edited", "currency": "EUR", "customer": invoice.customer_id})
    assert response.status_code == 403
    invoice.refresh_from_db()
    assert invoice.memo == "original"
    delete = admin_client.post(reverse("admin:invoicing_invoice_delete", args=[invoice.pk]), {"post": "yes"})
    assert delete.status_code == 403
    assert Invoice.objects.filter(pk=invoice.pk).exists()


def test_draft_is_edited_with_its_lines_and_totals_are_recomputed(admin_client, series, vat_de):
    invoice = InvoiceFactory()
    line = invoice.lines.get()
    url = reverse("admin:invoicing_invoice_change", args=[invoice.pk])
    assert 'name="lines-0-description"' in admin_client.get(url).content.decode()
    data = {
        "customer": invoice.customer_id,
        "currency": "EUR",
        "billing_reason": "manual",
        "memo": "edited",
        "footer": "",
        "number_series": "",
        "period_start": "",
        "period_end": "",
        "lines-TOTAL_FORMS": "2",
        "lines-INITIAL_FORMS": "1",
        "lines-MIN_NUM_FORMS": "0",
        "lines-MAX_NUM_FORMS": "1000",
        "lines-0-id": line.pk,
        "lines-0-invoice": invoice.pk,
        "lines-0-position": "1",
        "lines-0-kind": "one_off",
        "lines-0-description": "Service",
        "lines-0-quantity": "2",
        "lines-0-unit_amount": "100.00",
        "lines-0-discount_amount": "0",
        "lines-1-invoice": invoice.pk,
        "lines-1-position": "2",
        "lines-1-kind": "one_off",
        "lines-1-description": "Extra",
        "lines-1-quantity": "1",
        "lines-1-unit_amount": "10.00",
        "lines-1-discount_amount": "0",
    }
    for prefix in ("credit_notes", "events"):
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    invoice.refresh_from_db()
    assert (invoice.memo, invoice.total) == ("edited", D("249.90"))


def test_actions_report_the_invoices_that_failed(admin_client, series, vat_de):
    good = InvoiceFactory()
    bad = InvoiceFactory(lines=[])
    response = admin_client.post(
        reverse(CHANGELIST), {"action": "finalize_selected", "_selected_action": [good.pk, bad.pk]}, follow=True
    )
    messages = _messages(response)
    assert any("Finalized 1 invoice(s)" in m for m in messages)
    assert any(f"Draft #{bad.pk}: not finalized" in m and "no lines" in m for m in messages)
    good.refresh_from_db()
    assert good.status == InvoiceStatus.OPEN

    response = admin_client.post(
        reverse(CHANGELIST), {"action": "void_selected", "_selected_action": [good.pk, bad.pk]}, follow=True
    )
    messages = _messages(response)
    assert any("Voided 1 invoice(s)" in m for m in messages)
    assert any(f"Draft #{bad.pk}: not voided" in m for m in messages)


def test_a_clerk_can_finalize_but_not_void(client, series, vat_de):
    clerk = StaffUserFactory()
    clerk.save()  # the factory sets the password after its own save
    clerk.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="invoicing", codename__in=["view_invoice", "change_invoice", "finalize_invoice"]
        )
    )
    client.force_login(clerk)
    response = client.get(reverse(CHANGELIST))
    actions = [choice[0] for choice in response.context["action_form"].fields["action"].choices]
    assert "finalize_selected" in actions
    assert "void_selected" not in actions and "mark_uncollectible_selected" not in actions


def test_credit_note_screen_issues_a_partial_credit(admin_client, series, vat_de):
    invoice = InvoiceFactory(finalized=ISSUE)
    url = reverse("admin:invoicing_invoice_credit_note", args=[invoice.pk])
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(url, {"mode": "amount", "amount": "500.00", "reason": "too much"})
    assert "exceeds the creditable" in response.content.decode()
    data = {"mode": "amount", "amount": "11.90", "reason": "goodwill"}
    preview = admin_client.post(url, {**data, "_preview": "1"})  # shown first, nothing issued
    assert "€11.90" in preview.content.decode() and not CreditNote.objects.exists()
    response = admin_client.post(url, {**data, "_confirm": "1", "previewed": preview.context["previewed"]})
    credit_note = CreditNote.objects.get()
    assert response.status_code == 302 and credit_note.total == D("11.90")
    page = admin_client.get(reverse("admin:invoicing_creditnote_change", args=[credit_note.pk]))
    assert page.status_code == 200 and 'name="reason"' not in page.content.decode()
    response = admin_client.post(url, {"mode": "lines", "lines": [invoice.lines.get().pk], "reason": "rest"})
    assert response.status_code == 200 and "exceeds the creditable 107.10" in response.content.decode()


def test_billing_runs_are_read_only(admin_client):
    run = BillingRun.objects.create(started_at="2026-03-02T05:00:00Z", as_of=ISSUE, totals={"EUR": "10.00"})
    run.errors.create(subscription_id=7, message="boom", traceback="Traceback …")
    page = admin_client.get(reverse("admin:invoicing_billingrun_change", args=[run.pk]))
    assert page.status_code == 200 and "boom" in page.content.decode()
    assert 'name="_save"' not in page.content.decode()
    assert admin_client.get(reverse("admin:invoicing_billingrun_add")).status_code == 403


def test_invoice_search_by_number_email_name_and_vat_number(admin_client):
    from django.urls import reverse

    from tests.factories import CustomerFactory, InvoiceFactory, NumberSeriesFactory, TaxRateFactory

    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE")
    anna = CustomerFactory(name="Anna Bäckerei GmbH", email="Billing@Anna.example", tax_id="DE136695976")
    other = CustomerFactory(name="Zeta AG")
    mine = InvoiceFactory(customer=anna, finalized=True)
    theirs = InvoiceFactory(customer=other, finalized=True)
    url = reverse("admin:invoicing_invoice_changelist")

    def found(term: str) -> set[str]:
        response = admin_client.get(url, {"q": term})
        return {n for n in (mine.number, theirs.number) if n.encode() in response.content}

    assert found(mine.number) == {mine.number}
    assert found(mine.number.lower()) == {mine.number}
    assert found("billing@anna.example") == {mine.number}
    assert found("bäckerei") == {mine.number}
    assert found("DE 136 695 976") == {mine.number}
    assert found("Zeta") == {theirs.number}


def test_overdue_filter_finds_open_invoices_past_due_by_how_late(admin_client):
    import datetime as dt

    import time_machine
    from django.urls import reverse

    from invoicing.services import invoice_apply_payment
    from tests.factories import InvoiceFactory, NumberSeriesFactory, TaxRateFactory

    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE")
    very_late = InvoiceFactory(finalized=dt.date(2026, 1, 2))  # due 16 Jan
    late = InvoiceFactory(finalized=dt.date(2026, 2, 20))  # due 6 Mar
    current = InvoiceFactory(finalized=dt.date(2026, 3, 10))  # due 24 Mar
    paid = InvoiceFactory(finalized=dt.date(2026, 1, 2))
    invoice_apply_payment(invoice=paid, amount=paid.amount_due)
    url = reverse("admin:invoicing_invoice_changelist")
    with time_machine.travel(dt.datetime(2026, 4, 20, 10, tzinfo=dt.UTC)):

        def listed(value: str) -> set[str]:
            content = admin_client.get(url, {"overdue": value}).content
            return {i.number for i in (very_late, late, current, paid) if i.number.encode() in content}

        assert listed("yes") == {very_late.number, late.number, current.number}
        assert listed("30") == {very_late.number, late.number}
        assert listed("90") == {very_late.number}
        assert listed("no") == {paid.number}
