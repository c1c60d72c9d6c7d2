from __future__ import annotations

import json
from collections import Counter
from typing import Any

from core.commands import BaseCommand, CommandError
from customers.models import Customer
from customers.vat import vat_check_now, vat_checks_due


class Command(BaseCommand):
    help = (
        "Ask the EU's VIES, now and in this process, about the VAT numbers the daily job would check (never "
        "answered, VIES was down, or valid but older than VAT_RECHECK_DAYS), or about one customer's number. "
        "Each answer is kept as a VAT number check (evidence: date and consultation number)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--customer", type=int, help="Check this customer's number (by id), due or not.")
        parser.add_argument("--json", action="store_true", help="Print the counts as JSON.")

    def handle(self, *args: Any, customer: int | None = None, **options: Any) -> None:
        if customer is not None:
            found = Customer.objects.filter(pk=customer).first()
            if found is None:
                raise CommandError(f"--customer: no customer with id {customer}.")
            if not found.tax_id:
                raise CommandError(f"--customer: customer {customer} has no VAT number.")
            customers = [found]
        else:
            customers = list(Customer.objects.filter(pk__in=vat_checks_due()).order_by("pk"))
        counts: Counter[str] = Counter()
        for item in customers:
            check = vat_check_now(customer=item)
            counts[check.status if check is not None else "not_applicable"] += 1
        if options["json"]:
            self.stdout.write(json.dumps({"checked": len(customers), **dict(sorted(counts.items()))}))
        else:
            summary = ", ".join(f"{count} {status}" for status, count in sorted(counts.items())) or "nothing due"
            self.stdout.write(f"Checked {len(customers)} VAT number(s): {summary}.")
