from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count, Sum

from customers.models import Customer
from invoicing.models import Invoice, InvoiceLine

pytestmark = pytest.mark.django_db


def test_seed_scale_writes_consistent_invoices_set_based_and_resets(capsys):
    call_command("seed_scale", "--customers", "20", "--invoices", "200")
    assert "Created 20 customers and 200 invoices with 2 lines each" in capsys.readouterr().out
    assert Customer.objects.filter(external_id__startswith="SCALE-").count() == 20
    by_status = dict(Invoice.objects.values_list("status").annotate(n=Count("pk")))
    assert by_status == {"draft": 6, "void": 4, "paid": 140, "open": 50}
    assert InvoiceLine.objects.count() == 400
    # every invoice adds up: lines to the invoice, tax per line, amount due to total minus paid
    for invoice in Invoice.objects.annotate(lines_total=Sum("lines__total_amount"), lines_tax=Sum("lines__tax_amount"))[
        :50
    ]:
        assert invoice.lines_total == invoice.total
        assert invoice.lines_tax == invoice.tax_total
        assert invoice.amount_due == invoice.total - invoice.amount_paid
    sample = Invoice.objects.get(number="SCL-0000007")  # plan fee 19.00 + 7; VAT 4.94 + 1.90
    assert (sample.subtotal, sample.tax_total, sample.total) == (Decimal("36.000"), Decimal("6.840"), Decimal("42.840"))
    with pytest.raises(CommandError, match="--reset first"):
        call_command("seed_scale", "--customers", "1", "--invoices", "1")
    call_command("seed_scale", "--reset")
    assert not Customer.objects.filter(external_id__startswith="SCALE-").exists()
    assert not Invoice.objects.exists()
