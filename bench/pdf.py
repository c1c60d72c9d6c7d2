"""PDF rendering cost: bare xhtml2pdf on the same HTML vs. the full invoice render (template + xhtml2pdf).

Renders from in-memory (unsaved) invoices, so no database is needed. Prints the median of several runs in ms.
Targets: one page ≤ 1.1 × bare xhtml2pdf (issue 27; issue 5 had 1.2); 100 lines ≤ 1.5 s; 200 lines ≤ 3 × 100
lines. Also prints the size of a one-page invoice in Latin and in Japanese script (issue 20: the CJK font is
subset per document). Run: `.venv/bin/python bench/pdf.py [--runs N] [--one-page-only]` (or `make bench`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")
os.environ.setdefault("DATABASE_URL", "sqlite:///:memory:")

import django

django.setup()

import logging  # noqa: E402

from xhtml2pdf import pisa  # noqa: E402

from customers.models import SellerProfile  # noqa: E402
from customers.seller import seller_snapshot  # noqa: E402
from invoicing import documents  # noqa: E402
from invoicing.models import Invoice, InvoiceLine  # noqa: E402

logging.getLogger("xhtml2pdf").setLevel(logging.ERROR)
RUNS = int(os.environ.get("BENCH_RUNS", "7"))


# A complete German seller, as the demo seeds it, without a database (an unsaved profile; no logo, which the bare
# xhtml2pdf baseline would not load either).
SELLER = seller_snapshot(
    SellerProfile(
        legal_name="Nordlicht Software GmbH",
        address="Am Sandtorkai 41\n20457 Hamburg",
        country="DE",
        vat_id="DE814527394",
        tax_number="22/815/04711",
        register_court="Amtsgericht Hamburg",
        register_number="HRB 178432",
        managing_directors="Katrin Albers, Dr. Malte Jessen",
        email="rechnung@nordlicht.example",
        bank_name="Hamburger Sparkasse",
        iban="DE07200505500012345678",
        bic="HASPDEHHXXX",
        invoice_footer={"en": "Thank you for your business."},
    )
)


def invoice_with(lines: int) -> tuple[Invoice, list[InvoiceLine]]:
    amount = Decimal("41.50")
    invoice = Invoice(
        currency="EUR",
        status="open",
        number="INV-2026-000123",
        issue_date=dt.date(2026, 3, 2),
        due_date=dt.date(2026, 3, 16),
        period_start=dt.date(2026, 3, 1),
        period_end=dt.date(2026, 4, 1),
        subtotal=amount * lines,
        tax_total=(amount * lines * Decimal("0.19")).quantize(Decimal("0.01")),
        total=amount * lines * Decimal("1.19"),
        amount_due=amount * lines * Decimal("1.19"),
        tax_summary=[
            {
                "name": "VAT 19 %",
                "percentage": "19",
                "inclusive": False,
                "taxable_amount": str(amount * lines),
                "tax_amount": "1.00",
            }
        ],
        customer_snapshot={
            "name": "Παπαδόπουλος & Ёлкин Łódź Sp. z o.o.",
            "postal_address": "ul. Piotrkowska 1\n90-001 Łódź\nPoland",
            "tax_id": "PL5260250274",
            "language": "de",
        },
        seller_snapshot=SELLER,
    )
    items = [
        InvoiceLine(
            description=f"Seat {n} — Pro plan",
            quantity=Decimal(1),
            unit_amount=amount,
            amount=amount,
            tax_percentage=Decimal(19),
            tax_name="VAT 19 %",
            period_start=dt.date(2026, 3, 1),
            period_end=dt.date(2026, 4, 1),
        )
        for n in range(1, lines + 1)
    ]
    return invoice, items


def median_ms(function: Callable[[], object], runs: int) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


def bare(html: str) -> None:
    # The same HTML through xhtml2pdf alone (fonts already registered in this process, as in a worker).
    pisa.pisaDocument(html, dest=io.BytesIO(), encoding="utf-8")


def one_page_sizes() -> None:
    """The bytes of a one-page invoice for a Latin-script and for a Japanese customer (fonts subset per document)."""
    for label, name, address in (
        ("Latin", "Papadopoulos & Jolkin Lodz Sp. z o.o.", "ul. Piotrkowska 1\n90-001 Lodz\nPoland"),
        ("Japanese (CJK)", "株式会社さくらデザイン", "丸の内1-1\n100-0005 東京都千代田区\n日本"),
    ):
        invoice, items = invoice_with(1)
        # The address as one text (no country code): printed as it is, without a country name in the language.
        snapshot = {**invoice.customer_snapshot, "name": name, "postal_address": address, "country": ""}
        invoice.customer_snapshot = snapshot
        items[0].description = "クラウド会計プラン（月額）" if label.startswith("Japanese") else "Pro plan"
        size = len(documents.render_invoice_pdf(invoice=invoice, lines=items))
        print(f"one-page invoice, {label}: {size / 1024:.1f} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=RUNS, help=f"runs per size (default {RUNS}, env BENCH_RUNS)")
    parser.add_argument("--one-page-only", action="store_true", help="only the one-page ratio and the sizes")
    options = parser.parse_args()
    results = {}
    sizes = (1,) if options.one_page_only else (1, 100, 200)
    for lines in sizes:
        invoice, items = invoice_with(lines)
        documents.render_invoice_pdf(invoice=invoice, lines=items)  # warm-up: fonts, template, Babel data
        html = documents.render_html(documents.invoice_context(invoice=invoice, lines=items))
        runs = options.runs if lines == 1 else max(3, options.runs // 2)
        # Interleaved, so that both see the same machine load.
        plain_runs, our_runs = [], []
        for _ in range(runs):
            plain_runs.append(median_ms(lambda html=html: bare(html), 1))
            our_runs.append(
                median_ms(
                    lambda invoice=invoice, items=items: documents.render_invoice_pdf(invoice=invoice, lines=items), 1
                )
            )
        plain, ours = statistics.median(plain_runs), statistics.median(our_runs)
        results[lines] = (plain, ours)
        print(
            f"{lines:>4} line(s): bare xhtml2pdf {plain:8.1f} ms   ours {ours:8.1f} ms   ratio {ours / plain:5.2f}"
            f"   (median of {runs} runs)"
        )
    one_bare, one_ours = results[1]
    print(f"one page: ours / bare = {one_ours / one_bare:.2f} (target <= 1.10)")
    if not options.one_page_only:
        print(f"100 lines: {results[100][1] / 1000:.2f} s (target <= 1.5 s)")
        print(f"200 / 100 lines: {results[200][1] / results[100][1]:.2f}x (target <= 3)")
    one_page_sizes()


if __name__ == "__main__":
    main()
