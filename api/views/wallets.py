"""A customer's wallets (prepaid credits, docs/decisions/wallets.md): balance, ledger, free grants and top-ups. The
admin's wallet page and buttons call the same services and selectors (``payments.wallets``, ``payments.selectors``)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from api.fields import AmountIn, CurrencyIn, check_minor_units
from api.problems import ApiProblem
from api.serializers import amount_text
from api.views.base import IDEMPOTENCY_PARAMETER, ApiViewSet
from customers.models import Customer
from payments.models import Wallet, WalletGrant
from payments.selectors import WalletBalance, customer_wallets, wallet_ledger
from payments.wallets import wallet_grant_free, wallet_top_up

LEDGER_LIMIT = 100

WalletOut = inline_serializer(
    "Wallet",
    {
        "object": serializers.CharField(),
        "customer": serializers.IntegerField(),
        "currency": serializers.CharField(),
        "balance": serializers.CharField(help_text="free + paid: what the next invoices can consume."),
        "free": serializers.CharField(help_text="Promotional credits (not revenue, never refunded)."),
        "paid": serializers.CharField(help_text="Bought credits whose top-up invoice is paid."),
        "pending": serializers.CharField(help_text="Bought credits whose top-up invoice is not paid yet."),
        "applies_to": serializers.CharField(help_text="all (whole invoices) or usage (usage lines only)."),
        "auto_top_up_threshold": serializers.CharField(allow_null=True),
        "auto_top_up_amount": serializers.CharField(allow_null=True),
    },
)
WalletListOut = inline_serializer(
    "WalletList", {"object": serializers.CharField(), "customer": serializers.IntegerField(), "data": WalletOut}
)
LedgerOut = inline_serializer(
    "WalletLedger",
    {
        "object": serializers.CharField(),
        "customer": serializers.IntegerField(),
        "currency": serializers.CharField(),
        "data": inline_serializer(
            "WalletTransaction",
            {
                "id": serializers.IntegerField(),
                "booked_on": serializers.DateField(),
                "kind": serializers.CharField(help_text="grant, top_up, consumption, expiry or refund."),
                "credit_kind": serializers.CharField(help_text="free or paid."),
                "amount": serializers.CharField(),
                "balance_after": serializers.CharField(),
                "invoice": serializers.IntegerField(allow_null=True),
                "reason": serializers.CharField(),
            },
            many=True,
        ),
    },
)
GrantOut = inline_serializer(
    "WalletGrant",
    {
        "object": serializers.CharField(),
        "id": serializers.IntegerField(),
        "customer": serializers.IntegerField(),
        "currency": serializers.CharField(),
        "kind": serializers.CharField(help_text="free or paid."),
        "status": serializers.CharField(help_text="pending, active, expired or canceled."),
        "amount": serializers.CharField(),
        "remaining": serializers.CharField(),
        "granted_on": serializers.DateField(),
        "expires_on": serializers.DateField(allow_null=True),
        "invoice": serializers.IntegerField(allow_null=True, help_text="The top-up invoice of a paid grant."),
    },
)


class GrantIn(serializers.Serializer):
    amount = AmountIn(positive=True)
    currency = CurrencyIn(required=False, help_text="Default: the customer's.")
    reason = serializers.CharField(max_length=500, help_text="The promotion.")
    expires_on = serializers.DateField(required=False, allow_null=True, help_text="Usable through this day.")


class TopUpIn(serializers.Serializer):
    amount = AmountIn(positive=True)
    currency = CurrencyIn(required=False, help_text="Default: the customer's.")
    expires_on = serializers.DateField(required=False, allow_null=True, help_text="Usable through this day.")
    charge = serializers.BooleanField(required=False, help_text="Charge the saved default payment method.")


CURRENCY_PARAMETER = OpenApiParameter("currency", str, description="The wallet's currency; default the customer's.")


def _wallet(wallet: Wallet, balance: WalletBalance) -> dict[str, Any]:
    currency = wallet.currency
    return {
        "object": "wallet",
        "customer": wallet.customer_id,
        "currency": currency,
        "balance": amount_text(balance.total, currency),
        "free": amount_text(balance.free, currency),
        "paid": amount_text(balance.paid, currency),
        "pending": amount_text(balance.pending, currency),
        "applies_to": wallet.applies_to,
        "auto_top_up_threshold": amount_text(wallet.auto_top_up_threshold, currency),
        "auto_top_up_amount": amount_text(wallet.auto_top_up_amount, currency),
    }


def _grant(grant: WalletGrant) -> dict[str, Any]:
    currency = grant.wallet.currency
    return {
        "object": "wallet_grant",
        "id": grant.pk,
        "customer": grant.wallet.customer_id,
        "currency": currency,
        "kind": grant.kind,
        "status": grant.status,
        "amount": amount_text(grant.amount, currency),
        "remaining": amount_text(grant.remaining, currency),
        "granted_on": grant.granted_on.isoformat(),
        "expires_on": grant.expires_on.isoformat() if grant.expires_on else None,
        "invoice": grant.invoice_id,
    }


class WalletViewSet(ApiViewSet):
    """``/customers/{id}/wallet`` (GET: the wallets), ``…/wallet/ledger`` (GET), ``…/wallet/grants`` (POST: free
    credits), ``…/wallet/top_ups`` (POST: a top-up invoice). Reads need the read scope, writes the write scope."""

    queryset = Wallet.objects.all()

    def _customer(self, customer_id: int) -> Customer:
        return self.object_or_404(Customer.objects.all(), customer_id, what="customer")

    @extend_schema(responses=WalletListOut, operation_id="customer_wallet")
    def retrieve(self, request: Request, customer_id: int) -> Response:
        """The customer's wallets, one per currency, with their balances."""
        customer = self._customer(customer_id)
        rows = [_wallet(wallet, balance) for wallet, balance in customer_wallets(customer=customer)]
        return Response({"object": "list", "customer": customer.pk, "data": rows})

    @extend_schema(responses=LedgerOut, parameters=[CURRENCY_PARAMETER], operation_id="customer_wallet_ledger")
    def ledger(self, request: Request, customer_id: int) -> Response:
        """The newest 100 movements of the wallet, each with the balance after it."""
        customer = self._customer(customer_id)
        currency = self.query_param("currency") or customer.currency
        wallet = Wallet.objects.filter(customer=customer, currency=currency).first()
        if wallet is None:
            raise ApiProblem(404, f"customer {customer.pk} has no wallet in {currency}.", code="not_found")
        rows = [
            {
                "id": row.pk,
                "booked_on": row.booked_on.isoformat(),
                "kind": row.kind,
                "credit_kind": row.credit_kind,
                "amount": amount_text(row.amount, currency),
                "balance_after": amount_text(row.balance_after, currency),
                "invoice": row.invoice_id,
                "reason": row.reason,
            }
            for row in wallet_ledger(wallet=wallet, limit=LEDGER_LIMIT)
        ]
        return Response({"object": "wallet_ledger", "customer": customer.pk, "currency": currency, "data": rows})

    @extend_schema(
        request=GrantIn, responses={201: GrantOut}, parameters=[IDEMPOTENCY_PARAMETER], operation_id="wallet_grant"
    )
    def grant(self, request: Request, customer_id: int) -> Response:
        """Free (promotional) credits, usable at once."""
        customer = self._customer(customer_id)
        given = self.typed(GrantIn)
        currency = given.get("currency") or customer.currency
        check_minor_units(given["amount"], currency, "amount")
        grant = wallet_grant_free(
            customer=customer,
            amount=given["amount"],
            currency=currency,
            reason=given["reason"],
            expires_on=given.get("expires_on"),
        )
        return Response(_grant(grant), status=201)

    @extend_schema(
        request=TopUpIn, responses={201: GrantOut}, parameters=[IDEMPOTENCY_PARAMETER], operation_id="wallet_top_up"
    )
    def top_up(self, request: Request, customer_id: int) -> Response:
        """Buy credits: issues the top-up invoice; the credits become available when it is paid."""
        customer = self._customer(customer_id)
        given = self.typed(TopUpIn)
        currency = given.get("currency") or customer.currency
        check_minor_units(given["amount"], currency, "amount")
        grant = wallet_top_up(
            customer=customer,
            amount=given["amount"],
            currency=currency,
            expires_on=given.get("expires_on"),
            charge=bool(given.get("charge")),
        )
        return Response(_grant(grant), status=201)
