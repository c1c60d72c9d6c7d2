"""``manage.py wallet_grant CUSTOMER AMOUNT --reason TEXT [--currency EUR] [--expires-on DATE] [--as-of DATE]``:
give a customer free (promotional) wallet credits — the admin's "Grant free credits" and ``POST
/api/v1/customers/{id}/wallet/grants`` call the same service. ``--paid`` issues a top-up invoice instead."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import CommandError, CommandParser

from core.asof import parse_as_of, parse_date_option
from core.commands import BaseCommand
from customers.models import Customer
from payments.wallets import wallet_grant_free, wallet_top_up


class Command(BaseCommand):
    help = "Grant free wallet credits to a customer (or, with --paid, issue a top-up invoice)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("customer", help="The customer's id or external id.")
        parser.add_argument("amount", help="The amount, e.g. 100.00.")
        parser.add_argument("--reason", default="", help="The promotion (required for a free grant).")
        parser.add_argument("--currency", default="", help="Default: the customer's currency.")
        parser.add_argument("--expires-on", default="", help="YYYY-MM-DD: usable through this day.")
        parser.add_argument("--as-of", help="YYYY-MM-DD; default today in BILLING_TIMEZONE.")
        parser.add_argument("--paid", action="store_true", help="A paid top-up: issue its invoice.")

    def handle(self, *args: Any, **options: Any) -> None:
        reference = options["customer"]
        customer = Customer.objects.filter(external_id=reference).first()
        if customer is None and reference.isdigit():
            customer = Customer.objects.filter(pk=int(reference)).first()
        if customer is None:
            raise CommandError(f"no customer with id or external id {reference!r}")
        try:
            amount = Decimal(options["amount"])
        except InvalidOperation as exc:
            raise CommandError(f"{options['amount']!r} is not an amount") from exc
        as_of = parse_as_of(options["as_of"])
        expires_on = parse_date_option(options["expires_on"], option="--expires-on") if options["expires_on"] else None
        currency = options["currency"] or None
        if options["paid"]:
            grant = wallet_top_up(
                customer=customer, amount=amount, currency=currency, expires_on=expires_on, as_of=as_of
            )
            self.stdout.write(f"Top-up invoice {grant.invoice} issued for {amount} {grant.wallet.currency}.")
            return
        grant = wallet_grant_free(
            customer=customer,
            amount=amount,
            reason=options["reason"],
            currency=currency,
            expires_on=expires_on,
            as_of=as_of,
        )
        self.stdout.write(
            f"Granted {amount} {grant.wallet.currency} free credits to {customer}"
            + (f", usable through {expires_on}." if expires_on else ".")
        )
