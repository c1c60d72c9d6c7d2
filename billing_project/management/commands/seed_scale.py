"""``manage.py seed_scale --customers 100000 --invoices 1000000``: a large, realistic-looking dataset for the
admin benchmarks (bench/admin.py), written set-based in PostgreSQL (INSERT … SELECT over generate_series), in
one transaction. Scale records are marked (customers' external ids ``SCALE-…``, invoice numbers ``SCL-…``) and
``--reset`` removes them again."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import connection, transaction

from core.commands import BaseCommand
from invoicing.models import NumberSeries
from subscriptions.models import Price, Product

# Invoice n: status by n % 100 (3 % drafts, 2 % void, 70 % paid, 25 % open), issued over the last two years,
# 14 days' terms, two lines (a monthly recurring plan fee for the month from the issue date, and a one-off 10.00
# add-on) with German VAT 19 % rounded per line.
_CUSTOMERS_SQL = """
INSERT INTO customers_customer (name, legal_name, email, cc_emails, phone, address_line1, address_line2,
    postal_code, city, region, country, tax_id, tax_status, currency, payment_terms_days, language, notes,
    external_id, metadata, review_invoices, is_archived, created_at, updated_at, einvoice_format, buyer_reference,
    purchase_order, einvoice_address, einvoice_address_scheme)
SELECT 'Scale customer ' || g, '', 'scale' || g || '@scale.example', '', '', 'Hauptstraße ' || (g %% 200 + 1), '',
    lpad((10000 + g %% 89999)::text, 5, '0'), 'Berlin', '', 'DE', '', 'taxable', 'EUR', 14, 'en', '',
    'SCALE-' || g, '{}'::jsonb, false, false, now(), now(), '', '', '', '', 'EM'
FROM generate_series(1, %(customers)s) AS g
"""

_INVOICES_SQL = """
WITH first_customer AS (
    SELECT min(id) AS id FROM customers_customer WHERE external_id LIKE 'SCALE-%%'
), rows AS (
    SELECT g,
        CASE WHEN g %% 100 < 3 THEN 'draft' WHEN g %% 100 < 5 THEN 'void' WHEN g %% 100 < 75 THEN 'paid'
             ELSE 'open' END AS status,
        (%(today)s::date - (g %% 730)) AS issue_date,
        (19.00 + (g %% 500))::numeric(18, 3) AS plan_fee
    FROM generate_series(1, %(invoices)s) AS g
), amounts AS (
    SELECT *, round(plan_fee * 0.19, 2) + 1.90 AS tax, plan_fee + 10.00 AS subtotal FROM rows
)
INSERT INTO invoicing_invoice (customer_id, subscription_id, period_key, billing_run_id, status, billing_reason,
    currency, number_series_id, number, issue_date, due_date, period_start, period_end, subtotal, discount_total,
    tax_total, total, amount_paid, amount_credited, amount_due, tax_treatment, tax_note, tax_summary, memo, footer,
    customer_snapshot, seller_snapshot, hold_reminders, finalized_at, paid_at, voided_at, created_at, updated_at)
SELECT (SELECT id FROM first_customer) + (g %% %(customers)s), NULL, '', NULL, status, 'manual', 'EUR',
    CASE WHEN status = 'draft' THEN NULL ELSE %(series)s END,
    CASE WHEN status = 'draft' THEN '' ELSE 'SCL-' || lpad(g::text, 7, '0') END,
    CASE WHEN status = 'draft' THEN NULL ELSE issue_date END,
    CASE WHEN status = 'draft' THEN NULL ELSE issue_date + 14 END,
    NULL, NULL, subtotal, 0, tax, subtotal + tax,
    CASE WHEN status = 'paid' THEN subtotal + tax ELSE 0 END, 0,
    CASE WHEN status = 'paid' THEN 0 ELSE subtotal + tax END,
    'standard', '', '[]'::jsonb, '', '',
    jsonb_build_object('name', 'Scale customer ' || (g %% %(customers)s + 1)), '{}'::jsonb, false,
    CASE WHEN status = 'draft' THEN NULL ELSE issue_date::timestamptz END,
    CASE WHEN status = 'paid' THEN (issue_date + 7)::timestamptz END,
    CASE WHEN status = 'void' THEN (issue_date + 2)::timestamptz END,
    now(), now()
FROM amounts
"""

_LINES_SQL = """
INSERT INTO invoicing_invoiceline (invoice_id, position, kind, description, quantity, unit_amount, amount,
    discount_amount, net_amount, tax_rate_id, tax_name, tax_percentage, tax_inclusive, tax_amount, total_amount,
    period_start, period_end, proration, price_id, subscription_item_id)
SELECT i.id, p.position, CASE WHEN p.position = 1 THEN 'recurring' ELSE 'one_off' END, p.description, 1, p.amount,
    p.amount, 0, p.amount, NULL, 'VAT 19 %%', 19, false, round(p.amount * 0.19, 2),
    p.amount + round(p.amount * 0.19, 2),
    CASE WHEN p.position = 1 THEN i.issue_date END,
    CASE WHEN p.position = 1 THEN (i.issue_date + interval '1 month')::date END,
    false, CASE WHEN p.position = 1 THEN %(price)s END, NULL
FROM invoicing_invoice i
CROSS JOIN LATERAL (VALUES (1, 'Plan fee', i.subtotal - 10.00), (2, 'Support add-on', 10.00::numeric))
    AS p(position, description, amount)
WHERE i.number LIKE 'SCL-%%' OR (i.number = '' AND i.customer_id IN (
    SELECT id FROM customers_customer WHERE external_id LIKE 'SCALE-%%'))
"""


class Command(BaseCommand):
    help = "Create a large dataset (customers, invoices with lines) set-based, for the admin benchmarks."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--customers", type=int, default=100_000)
        parser.add_argument("--invoices", type=int, default=1_000_000)
        parser.add_argument("--reset", action="store_true", help="Remove the scale data (and create nothing).")

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("seed_scale writes set-based SQL for PostgreSQL; set DATABASE_URL to a PostgreSQL db")
        customers, invoices = options["customers"], options["invoices"]
        if options["reset"]:
            self._reset()
            return
        if customers < 1 or invoices < 0:
            raise CommandError("--customers must be at least 1 and --invoices at least 0")
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM customers_customer WHERE external_id LIKE 'SCALE-%%' LIMIT 1")
            if cursor.fetchone():
                raise CommandError("scale data exists already: run with --reset first")
        from core.dates import billing_today

        started = time.monotonic()
        series, _ = NumberSeries.objects.get_or_create(
            code="scale",
            defaults={"name": "Scale data", "kind": NumberSeries.Kind.INVOICE, "prefix": "SCL-", "yearly_reset": False,
                      "format": "{prefix}{number:07d}"},
        )  # fmt: skip
        product, _ = Product.objects.get_or_create(name="Scale plan")
        price = Price.objects.filter(product=product).first() or Price.objects.create(
            product=product, unit_amount=Decimal("19.00"), unit_amount_currency="EUR", nickname="monthly"
        )
        params = {
            "customers": customers,
            "invoices": invoices,
            "today": billing_today(),
            "series": series.pk,
            "price": price.pk,
        }
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_CUSTOMERS_SQL, params)
            cursor.execute(_INVOICES_SQL, params)
            cursor.execute(_LINES_SQL, params)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE customers_customer, invoicing_invoice, invoicing_invoiceline")
        self.stdout.write(
            f"Created {customers:,} customers and {invoices:,} invoices with 2 lines each "
            f"in {time.monotonic() - started:.0f} s."
        )

    def _reset(self) -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM invoicing_invoiceline WHERE invoice_id IN (SELECT i.id FROM invoicing_invoice i "
                "JOIN customers_customer c ON c.id = i.customer_id WHERE c.external_id LIKE 'SCALE-%%')"
            )
            cursor.execute(
                "DELETE FROM invoicing_invoice WHERE customer_id IN "
                "(SELECT id FROM customers_customer WHERE external_id LIKE 'SCALE-%%')"
            )
            cursor.execute("DELETE FROM customers_customer WHERE external_id LIKE 'SCALE-%%'")
        self.stdout.write("Scale data removed.")
