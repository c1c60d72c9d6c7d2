"""Wallets: prepaid credits per customer and currency (docs/decisions/wallets.md). Every write of a wallet is here.

- A **free grant** (promotion) is active at once; a **top-up** issues an invoice through the one issue path and
  its paid grant stays ``pending`` until that invoice is paid (``invoice.paid``, settle phase).
- When an invoice is issued, ``wallet_consume`` (settle phase, before the customer's credit balance) pays what the
  wallet covers — free grants before paid ones, then the soonest expiry, then the oldest — like a payment: the
  invoice is frozen, so credits never change its lines or its tax. Once per invoice (a unique constraint).
- ``wallet_credits_expire`` (daily job) voids what is left of grants whose expiry day has passed.
- The automatic top-up issues one top-up invoice when a consumption takes the balance below the threshold, once
  per crossing (``auto_top_up_armed``), and charges it to the saved default payment method.
- Paid credits can be refunded (paid outside the system, like ``customer_credit_refund``); free ones never.

Lock order: the customer (``lock_in_order``), its subscription and invoice, then the wallet row — so two invoices
of one customer issued at once consume one after the other and never overdraw a grant.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from core.dates import billing_date_of, billing_today
from core.errors import ApplicationError, InvalidInput, NotAllowed
from core.models import DomainEvent
from core.money import amount_limit_problem, round_amount
from core.tax_categories import TaxCategory
from customers.models import Customer
from invoicing import services as invoicing_services
from invoicing.models import Invoice
from payments.locks import lock_in_order
from payments.models import (
    GrantKind,
    GrantStatus,
    PaymentAttempt,
    PaymentMethod,
    PaymentMethodKind,
    Refund,
    RefundStatus,
    Wallet,
    WalletAppliesTo,
    WalletEntryKind,
    WalletGrant,
    WalletTransaction,
)
from payments.selectors import wallet_balance
from payments.services import PAYABLE, Actor, PaymentError, _actor_id, _mark_subscriptions_paid_up, _user
from subscriptions.models import LineKind

logger = logging.getLogger(__name__)
ZERO = Decimal(0)
TOP_UP_DESCRIPTION = "Prepaid credits"


class WalletError(InvalidInput, PaymentError):
    """A wallet request the rules refuse; the message says why."""


class WalletStateError(NotAllowed, PaymentError):
    pass


def _checked_amount(amount: Decimal, currency: str, *, what: str = "amount") -> Decimal:
    if not isinstance(amount, Decimal):
        raise TypeError(f"{what} must be a Decimal, not {type(amount).__name__}")
    if problem := amount_limit_problem(amount, currency):
        raise WalletError(problem, field=what)
    if amount <= 0:
        raise WalletError(f"the {what} must be positive, not {amount}", field=what)
    if round_amount(amount, currency) != amount:
        raise WalletError(f"{amount} has more decimals than {currency} allows", field=what)
    return amount


def _currency(customer: Customer, currency: str | None) -> str:
    from django.conf import settings

    currency = currency or customer.currency
    if currency not in settings.CURRENCIES:
        raise WalletError(f"{currency} is not one of the billing currencies", field="currency")
    return currency


def _lock_wallet(*, customer_id: int, currency: str) -> Wallet:
    """The customer's wallet in ``currency``, locked (made when missing). The caller holds the customer's lock,
    so two callers never both create it."""
    wallet = (
        Wallet.objects.select_for_update().filter(customer_id=customer_id, currency=currency).order_by("pk").first()
    )
    if wallet is None:
        wallet = Wallet.objects.create(customer_id=customer_id, currency=currency)
    return wallet


def _book(
    *,
    wallet: Wallet,
    grant: WalletGrant,
    kind: str,
    amount: Decimal,
    balance_after: Decimal,
    booked_on: dt.date,
    reason: str = "",
    invoice_id: int | None = None,
    refund: Refund | None = None,
    actor: Actor = None,
) -> WalletTransaction:
    return WalletTransaction.objects.create(
        wallet=wallet,
        grant=grant,
        kind=kind,
        credit_kind=grant.kind,
        amount=amount,
        balance_after=balance_after,
        invoice_id=invoice_id,
        refund=refund,
        booked_on=booked_on,
        reason=reason[:500],
        created_by_id=_actor_id(actor),
    )


def _rearm(wallet: Wallet, balance: Decimal) -> None:
    """Back at (or above) the threshold: the next fall below it tops up again."""
    if wallet.auto_top_up_enabled and not wallet.auto_top_up_armed and balance >= (wallet.auto_top_up_threshold or 0):
        Wallet.objects.filter(pk=wallet.pk).update(auto_top_up_armed=True)
        wallet.auto_top_up_armed = True


# --- settings --------------------------------------------------------------------------------------------


def wallet_configure(
    *,
    customer: Customer,
    currency: str | None = None,
    applies_to: str = WalletAppliesTo.ALL,
    auto_top_up_threshold: Decimal | None = None,
    auto_top_up_amount: Decimal | None = None,
    actor: Actor = None,
) -> Wallet:
    """Create or change the customer's wallet: what its credits pay, and the automatic top-up (both amounts, or
    neither to turn it off)."""
    currency = _currency(customer, currency)
    if applies_to not in WalletAppliesTo.values:
        raise WalletError(f"'{applies_to}' is not one of {', '.join(WalletAppliesTo.values)}", field="applies_to")
    if (auto_top_up_threshold is None) != (auto_top_up_amount is None):
        raise WalletError("an automatic top-up needs both a threshold and an amount", field="auto_top_up_amount")
    if auto_top_up_amount is not None and auto_top_up_threshold is not None:
        _checked_amount(auto_top_up_amount, currency, what="auto_top_up_amount")
        if auto_top_up_threshold != 0:
            _checked_amount(auto_top_up_threshold, currency, what="auto_top_up_threshold")
    with transaction.atomic():
        lock_in_order(customer_id=customer.pk)
        wallet = _lock_wallet(customer_id=customer.pk, currency=currency)
        wallet.applies_to = applies_to
        wallet.auto_top_up_threshold = auto_top_up_threshold
        wallet.auto_top_up_amount = auto_top_up_amount
        wallet.auto_top_up_armed = True
        wallet.save(update_fields=["applies_to", "auto_top_up_threshold", "auto_top_up_amount", "auto_top_up_armed"])
    return wallet


# --- adding credits --------------------------------------------------------------------------------------


def wallet_grant_free(
    *,
    customer: Customer,
    amount: Decimal,
    reason: str,
    currency: str | None = None,
    expires_on: dt.date | None = None,
    as_of: dt.date | None = None,
    actor: Actor = None,
) -> WalletGrant:
    """Promotional credits, active at once. Not revenue, never refunded (docs/decisions/wallets.md)."""
    currency = _currency(customer, currency)
    _checked_amount(amount, currency)
    as_of = as_of or billing_today()
    if not reason.strip():
        raise WalletError("a free grant needs a reason (the promotion)", field="reason")
    if expires_on is not None and expires_on < as_of:
        raise WalletError(f"the expiry {expires_on} lies before {as_of}", field="expires_on")
    with transaction.atomic():
        lock_in_order(customer_id=customer.pk)
        wallet = _lock_wallet(customer_id=customer.pk, currency=currency)
        balance = wallet_balance(wallet=wallet).total
        grant = WalletGrant.objects.create(
            wallet=wallet,
            kind=GrantKind.FREE,
            status=GrantStatus.ACTIVE,
            amount=amount,
            remaining=amount,
            granted_on=as_of,
            expires_on=expires_on,
            reason=reason[:500],
            created_by_id=_actor_id(actor),
        )
        _book(
            wallet=wallet,
            grant=grant,
            kind=WalletEntryKind.GRANT,
            amount=amount,
            balance_after=balance + amount,
            booked_on=as_of,
            reason=reason,
            actor=actor,
        )
        _rearm(wallet, balance + amount)
    return grant


def wallet_top_up(
    *,
    customer: Customer,
    amount: Decimal,
    currency: str | None = None,
    expires_on: dt.date | None = None,
    as_of: dt.date | None = None,
    charge: bool = False,
    automatic: bool = False,
    actor: Actor = None,
) -> WalletGrant:
    """Buy credits: a top-up invoice for ``amount`` is issued (``invoice_finalize``, the one issue path), and a
    paid grant waits for it (``pending``) until the invoice is paid. The invoice's one line is a prepayment for
    supplies not yet made (a multi-purpose voucher), outside the scope of VAT: the VAT is on the invoices the
    credits pay. ``charge``: charge the customer's saved default payment method after commit."""
    currency = _currency(customer, currency)
    _checked_amount(amount, currency)
    as_of = as_of or billing_today()
    if expires_on is not None and expires_on < as_of:
        raise WalletError(f"the expiry {expires_on} lies before {as_of}", field="expires_on")
    with transaction.atomic():
        lock_in_order(customer_id=customer.pk)
        wallet = _lock_wallet(customer_id=customer.pk, currency=currency)
        draft = invoicing_services.invoice_create_draft(
            customer=customer,
            currency=currency,
            memo=f"{TOP_UP_DESCRIPTION}: the credits become available when this invoice is paid.",
            lines=[
                invoicing_services.InvoiceLineSpec(
                    description=TOP_UP_DESCRIPTION + (" (automatic top-up)" if automatic else ""),
                    unit_amount=amount,
                    tax_category=TaxCategory.OUTSIDE_SCOPE,
                )
            ],
        )
        grant = WalletGrant.objects.create(
            wallet=wallet,
            kind=GrantKind.PAID,
            status=GrantStatus.PENDING,
            amount=amount,
            remaining=amount,
            granted_on=as_of,
            expires_on=expires_on,
            invoice=draft,
            automatic=automatic,
            reason="automatic top-up" if automatic else "top-up",
            created_by_id=_actor_id(actor),
        )
        grant.invoice = invoicing_services.invoice_finalize(invoice=draft, issue_date=as_of, actor=_user(actor))
        if charge:  # after commit: the gateway is never called inside a transaction
            transaction.on_commit(partial(wallet_top_up_collect, invoice_id=draft.pk, as_of=as_of))
    return grant


def wallet_top_up_collect(*, invoice_id: int, as_of: dt.date) -> PaymentAttempt | None:
    """Charge a top-up invoice to the saved default method, once (a second call finds the attempt and does
    nothing); a customer without a usable method keeps the open invoice (pay-now in the portal). A failed charge
    is retried by the retry job like any other attempt."""
    from payments.services import invoice_collect

    invoice = Invoice.objects.filter(pk=invoice_id, wallet_top_up__isnull=False).first()
    if invoice is None or PaymentAttempt.objects.filter(invoice_id=invoice_id).exists():
        return None
    if not PaymentMethod.objects.filter(customer_id=invoice.customer_id, is_active=True, is_default=True).exists():
        return None
    return invoice_collect(invoice_id=invoice_id, as_of=as_of, require_automatic=False)


def wallet_top_up_activate(*, invoice_id: int, as_of: dt.date) -> WalletGrant | None:
    """The credits of a paid top-up invoice become available (the ``invoice.paid`` handler); once."""
    grant_row = WalletGrant.objects.filter(invoice_id=invoice_id).values("wallet__customer_id", "pk").first()
    if grant_row is None:
        return None
    with transaction.atomic():
        locked = lock_in_order(customer_id=grant_row["wallet__customer_id"])
        grant = WalletGrant.objects.select_related("wallet").get(pk=grant_row["pk"])
        wallet = _lock_wallet(customer_id=locked.customer.pk, currency=grant.wallet.currency)
        if WalletGrant.objects.filter(pk=grant.pk, status=GrantStatus.PENDING).update(status=GrantStatus.ACTIVE) != 1:
            return None  # activated by an earlier run, or canceled
        grant.status = GrantStatus.ACTIVE
        balance = wallet_balance(wallet=wallet).total  # includes this grant now
        _book(
            wallet=wallet,
            grant=grant,
            kind=WalletEntryKind.TOP_UP,
            amount=grant.amount,
            balance_after=balance,
            booked_on=as_of,
            reason=f"top-up invoice {grant.invoice} paid",
            invoice_id=invoice_id,
        )
        _rearm(wallet, balance)
    return grant


def on_invoice_paid_activate_top_up(event: DomainEvent) -> None:
    """``invoice.paid`` (settle, atomic): a paid top-up invoice makes its credits available."""
    wallet_top_up_activate(invoice_id=event.payload["invoice_id"], as_of=billing_date_of(event.occurred_at))


def on_invoice_voided_cancel_top_up(event: DomainEvent) -> None:
    """``invoice.voided`` (settle, atomic): a voided top-up invoice will never be paid; its grant is canceled."""
    WalletGrant.objects.filter(invoice_id=event.payload["invoice_id"], status=GrantStatus.PENDING).update(
        status=GrantStatus.CANCELED
    )


# --- consumption -----------------------------------------------------------------------------------------


def _payable_by_wallet(invoice: Invoice, wallet: Wallet) -> Decimal:
    if wallet.applies_to == WalletAppliesTo.USAGE:
        usage = invoice.lines.filter(kind=LineKind.USAGE).aggregate(total=Sum("total_amount"))["total"] or ZERO
        return max(ZERO, min(usage, invoice.amount_due))
    return invoice.amount_due


def consumption_order(grants: list[WalletGrant]) -> list[WalletGrant]:
    """Free before paid (promotions are used before the customer's money), then the soonest expiry (a grant
    without an expiry last), then the oldest."""
    return sorted(
        grants,
        key=lambda g: (g.kind != GrantKind.FREE, g.expires_on is None, g.expires_on or dt.date.max, g.granted_on, g.pk),
    )


def wallet_consume(*, invoice: Invoice, actor: Actor = None) -> Decimal:
    """Pay as much of a newly issued invoice as the customer's wallet in its currency covers; returns the amount.
    Once per invoice; a top-up invoice is never paid with credits. Grants whose expiry day lies before the
    invoice's issue date are not used (even if the expiry job has not voided them yet)."""
    if not Wallet.objects.filter(customer_id=invoice.customer_id, currency=invoice.currency).exists():
        return ZERO
    with transaction.atomic():
        locked = lock_in_order(
            customer_id=invoice.customer_id, subscription_ids=[invoice.subscription_id], invoice_ids=[invoice.pk]
        )
        current = locked.invoices[invoice.pk]
        if current.status not in PAYABLE or current.amount_due <= 0:
            return ZERO
        if WalletGrant.objects.filter(invoice_id=current.pk).exists():
            return ZERO  # a top-up invoice
        if WalletTransaction.objects.filter(invoice_id=current.pk, kind=WalletEntryKind.CONSUMPTION).exists():
            return ZERO  # consumed by an earlier run
        wallet = _lock_wallet(customer_id=current.customer_id, currency=current.currency)
        issue_date = current.issue_date or billing_today()
        usable = Q(status=GrantStatus.ACTIVE, remaining__gt=0) & (
            Q(expires_on__isnull=True) | Q(expires_on__gte=issue_date)
        )
        grants = consumption_order(list(wallet.grants.filter(usable)))
        to_pay = _payable_by_wallet(current, wallet)
        balance = wallet_balance(wallet=wallet).total
        paid = ZERO
        for grant in grants:
            if paid >= to_pay:
                break
            share = min(grant.remaining, to_pay - paid)
            WalletGrant.objects.filter(pk=grant.pk).update(remaining=grant.remaining - share)
            balance -= share
            paid += share
            _book(
                wallet=wallet,
                grant=grant,
                kind=WalletEntryKind.CONSUMPTION,
                amount=-share,
                balance_after=balance,
                booked_on=issue_date,
                reason=f"invoice {current.number}",
                invoice_id=current.pk,
                actor=actor,
            )
        if paid > 0:
            locked.invoices[current.pk] = invoicing_services.invoice_apply_payment(
                invoice=current, amount=paid, actor=_user(actor), reason="wallet credits applied"
            )
            _mark_subscriptions_paid_up(locked=locked, actor=actor)
            _auto_top_up_if_due(wallet=wallet, balance=balance, as_of=issue_date)
    return paid


def _auto_top_up_if_due(*, wallet: Wallet, balance: Decimal, as_of: dt.date) -> WalletGrant | None:
    """Below the threshold and armed: one automatic top-up, and disarmed until the balance is back at the
    threshold — once per crossing, however many invoices consume meanwhile."""
    if not wallet.auto_top_up_enabled or not wallet.auto_top_up_armed:
        return None
    if balance >= (wallet.auto_top_up_threshold or ZERO):
        return None
    if Wallet.objects.filter(pk=wallet.pk, auto_top_up_armed=True).update(auto_top_up_armed=False) != 1:
        return None
    wallet.auto_top_up_armed = False
    assert wallet.auto_top_up_amount is not None
    try:
        with transaction.atomic():  # a savepoint: a refused top-up never undoes the consumption that triggered it
            return wallet_top_up(
                customer=wallet.customer,
                amount=wallet.auto_top_up_amount,
                currency=wallet.currency,
                as_of=as_of,
                charge=True,
                automatic=True,
            )
    except ApplicationError:  # e.g. an e-invoice customer whose details fail validation: tried again next time
        logger.warning("automatic top-up of wallet %s refused", wallet.pk, exc_info=True)
        Wallet.objects.filter(pk=wallet.pk).update(auto_top_up_armed=True)
        wallet.auto_top_up_armed = True
        return None


def wallets_in_use(event_type: str) -> bool:
    """The consumption handler's ``applies``: only once any customer has a wallet (one indexed query), so a book
    without wallets writes no handler run per issued invoice."""
    return Wallet.objects.exists()


def on_invoice_issued_consume_wallet(event: DomainEvent) -> None:
    """``invoice.issued`` (settle, atomic): wallet credits first (they may expire; customer credit never does),
    then the customer's credit balance, then automatic collection of what is still due."""
    wallet_consume(invoice=Invoice.objects.get(pk=event.payload["invoice_id"]))


# --- expiry ----------------------------------------------------------------------------------------------


@dataclass
class ExpiryReport:
    as_of: dt.date
    grants: int = 0
    amounts: dict[str, Decimal] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "grants_expired": self.grants,
            "amounts": {currency: str(amount) for currency, amount in sorted(self.amounts.items())},
            "errors": self.errors,
        }


def wallet_credits_expire(*, as_of: dt.date, customer_id: int | None = None) -> ExpiryReport:
    """Void what is left of every grant whose expiry day lies before ``as_of`` (a grant expiring on the 31st is
    usable through the 31st), one ledger entry each; a grant never expires twice (a unique constraint), so a
    re-run does nothing. One wallet failing never stops the others."""
    report = ExpiryReport(as_of=as_of)
    due = WalletGrant.objects.filter(status=GrantStatus.ACTIVE, expires_on__lt=as_of)
    if customer_id is not None:
        due = due.filter(wallet__customer_id=customer_id)
    wallets = list(due.values_list("wallet_id", "wallet__customer_id").distinct().order_by("wallet_id"))
    for wallet_id, wallet_customer_id in wallets:
        try:
            with transaction.atomic():
                lock_in_order(customer_id=wallet_customer_id)
                wallet = Wallet.objects.select_for_update().get(pk=wallet_id)
                balance = wallet_balance(wallet=wallet).total
                for grant in wallet.grants.filter(status=GrantStatus.ACTIVE, expires_on__lt=as_of).order_by(
                    "expires_on", "pk"
                ):
                    WalletGrant.objects.filter(pk=grant.pk).update(status=GrantStatus.EXPIRED, remaining=ZERO)
                    report.grants += 1
                    if grant.remaining <= 0:
                        continue
                    balance -= grant.remaining
                    _book(
                        wallet=wallet,
                        grant=grant,
                        kind=WalletEntryKind.EXPIRY,
                        amount=-grant.remaining,
                        balance_after=balance,
                        booked_on=as_of,
                        reason=f"expired on {grant.expires_on}",
                    )
                    report.amounts[wallet.currency] = round_amount(
                        report.amounts.get(wallet.currency, ZERO) + grant.remaining, wallet.currency
                    )
        except Exception as exc:  # one failing wallet never stops the others; reported, and logged
            logger.exception("expiry of wallet %s failed", wallet_id)
            report.errors.append(f"wallet {wallet_id}: {exc}")
    return report


# --- refund of paid credits ------------------------------------------------------------------------------


def wallet_refund(
    *,
    customer: Customer,
    amount: Decimal,
    reason: str,
    currency: str | None = None,
    method: str = PaymentMethodKind.BANK_TRANSFER,
    as_of: dt.date | None = None,
    actor: Actor = None,
) -> Refund:
    """Pay unused paid credits back (recorded as paid outside the system). Free credits are never refunded: the
    amount is refused beyond the paid credits left. The latest paid grants are refunded first."""
    currency = _currency(customer, currency)
    _checked_amount(amount, currency)
    as_of = as_of or billing_today()
    if not reason.strip():
        raise WalletError("a refund needs a reason", field="reason")
    with transaction.atomic():
        lock_in_order(customer_id=customer.pk)
        wallet = Wallet.objects.select_for_update().filter(customer=customer, currency=currency).order_by("pk").first()
        if wallet is None:
            raise WalletStateError(f"{customer} has no wallet in {currency}")
        balance = wallet_balance(wallet=wallet)
        if amount > balance.paid:
            raise WalletStateError(
                f"{customer} has {balance.paid} {currency} of paid credits: cannot refund {amount} "
                "(free credits are never refunded)",
                field="amount",
            )
        refund = Refund.objects.create(
            customer=customer,
            currency=currency,
            amount=amount,
            status=RefundStatus.SUCCEEDED,
            reason=f"wallet credits: {reason}"[:500],
            method=method,
            created_by_id=_actor_id(actor),
            processed_at=timezone.now(),
        )
        total = balance.total
        left = amount
        paid_grants = wallet.grants.filter(kind=GrantKind.PAID, status=GrantStatus.ACTIVE, remaining__gt=0)
        for grant in paid_grants.order_by("-granted_on", "-pk"):
            if left <= 0:
                break
            share = min(grant.remaining, left)
            WalletGrant.objects.filter(pk=grant.pk).update(remaining=grant.remaining - share)
            total -= share
            left -= share
            _book(
                wallet=wallet,
                grant=grant,
                kind=WalletEntryKind.REFUND,
                amount=-share,
                balance_after=total,
                booked_on=as_of,
                reason=reason,
                refund=refund,
                actor=actor,
            )
    return refund
