"""The portal's credits page (docs/decisions/wallets.md): the customer's wallets with the same balance the admin
and the API show (``payments.selectors.customer_wallets``), the newest movements, and "Buy credits" — a top-up
through ``payments.wallets.wallet_top_up`` (the admin's and the API's service), then the pay page of its invoice.
One unpaid top-up at a time, so the page cannot pile up invoices."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from core.errors import ApplicationError, NotAllowed
from customers.portal import PortalView
from invoicing.portal import money
from payments.models import GrantStatus, WalletEntryKind, WalletGrant
from payments.selectors import customer_wallets, wallet_ledger
from payments.wallets import wallet_top_up

LEDGER_ROWS = 50
MAX_TOP_UP = Decimal("10000.00")  # per purchase in the portal; staff and the API have no such cap
KIND_LABELS: dict[str, Any] = {
    WalletEntryKind.GRANT: _("Free credits"),
    WalletEntryKind.TOP_UP: _("Credits bought"),
    WalletEntryKind.CONSUMPTION: _("Used for invoice"),
    WalletEntryKind.EXPIRY: _("Expired"),
    WalletEntryKind.REFUND: _("Refunded"),
}


class BuyCreditsForm(forms.Form):
    amount = forms.DecimalField(label=_("Amount"), max_digits=18, decimal_places=2, min_value=Decimal("1.00"))


class WalletView(PortalView):
    nav = "wallet"

    def _context(self, form: BuyCreditsForm) -> dict[str, Any]:
        wallets = []
        for wallet, balance in customer_wallets(customer=self.customer):
            currency = wallet.currency
            wallets.append(
                {
                    "currency": currency,
                    "total": money(balance.total, currency),
                    "free": money(balance.free, currency),
                    "paid": money(balance.paid, currency),
                    "pending": money(balance.pending, currency) if balance.pending else "",
                    "rows": [
                        {
                            "date": row.booked_on,
                            "label": str(KIND_LABELS.get(row.kind, row.kind)),
                            "invoice": row.invoice.number if row.invoice is not None else "",
                            "amount": money(row.amount, currency),
                            "balance_after": money(row.balance_after, currency),
                        }
                        for row in wallet_ledger(wallet=wallet, limit=LEDGER_ROWS)
                    ],
                }
            )
        return {"wallets": wallets, "form": form, "currency": self.customer.currency}

    def get(self, request: HttpRequest) -> HttpResponse:
        return self.render(request, "portal/payments/wallet.html", self._context(BuyCreditsForm()))

    def post(self, request: HttpRequest) -> HttpResponse:
        form = BuyCreditsForm(request.POST)
        if form.is_valid():
            amount = form.cleaned_data["amount"]
            if amount > MAX_TOP_UP:
                limit = money(MAX_TOP_UP, self.customer.currency)
                form.add_error("amount", gettext("At most %(amount)s at once.") % {"amount": limit})
            elif WalletGrant.objects.filter(wallet__customer=self.customer, status=GrantStatus.PENDING).exists():
                raise NotAllowed(gettext("Please pay your open credits invoice first."))
            else:
                try:
                    grant = wallet_top_up(customer=self.customer, amount=amount)
                except ApplicationError as exc:
                    form.add_error(None, exc.message)
                else:
                    assert grant.invoice is not None
                    return redirect("portal:invoice_pay", number=grant.invoice.number)
        return self.render(request, "portal/payments/wallet.html", self._context(form), status=400)
