"""Customer e-mails of the payments app, sent through the product's one outbound-email machinery
(notifications.services.email_queue: stored OutboundEmail rows, retries with back-off, tracking webhooks, once
per idempotency key), to the customer's billing address and cc addresses, in the customer's language:

- payment failed (``payment_failed:attempt:<id>``), from the collection and retry services;
- payment receipt (``payment-receipt:<payment id>``), deliver-phase handler of ``payment.succeeded`` — every
  succeeded payment: card charges, matched bank transfers, payments staff record;
- refund issued (``refund:<refund id>``), deliver-phase handler of ``payment.refunded``;
- card about to expire (``card-expiring:<method id>:<yyyy-mm>``), the daily ``card_expiry_notices`` job.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from core import formatting as fmt
from core.dates import billing_date_of
from core.models import DomainEvent
from customers.seller import seller_snapshot
from notifications.models import EmailKind, OutboundEmail
from notifications.services import email_queue
from payments.models import (
    AttemptStatus,
    Dispute,
    Payment,
    PaymentAllocation,
    PaymentAttempt,
    PaymentMethod,
    PaymentMethodKind,
    Refund,
    RefundStatus,
)
from payments.selectors import customer_balances


def portal_url(path: str = "") -> str:
    base = getattr(settings, "PORTAL_BASE_URL", "http://127.0.0.1:8000")
    return f"{base.rstrip('/')}/portal/{path}"


# How a payment was made, in the e-mail's language (the model's labels are the staff's English).
METHOD_LABELS: dict[str, dict[str, str]] = {
    "en": {
        PaymentMethodKind.BANK_TRANSFER: "bank transfer",
        PaymentMethodKind.CARD: "card",
        PaymentMethodKind.DIRECT_DEBIT: "SEPA direct debit",
        PaymentMethodKind.CASH: "cash",
        PaymentMethodKind.CHEQUE: "cheque",
        PaymentMethodKind.OTHER: "other",
    },
    "de": {
        PaymentMethodKind.BANK_TRANSFER: "Überweisung",
        PaymentMethodKind.CARD: "Karte",
        PaymentMethodKind.DIRECT_DEBIT: "SEPA-Lastschrift",
        PaymentMethodKind.CASH: "Bargeld",
        PaymentMethodKind.CHEQUE: "Scheck",
        PaymentMethodKind.OTHER: "andere Zahlungsart",
    },
    # (used once core.formatting supports these languages; until then their customers get English)
    "fr": {
        PaymentMethodKind.BANK_TRANSFER: "virement bancaire",
        PaymentMethodKind.CARD: "carte",
        PaymentMethodKind.DIRECT_DEBIT: "prélèvement SEPA",
        PaymentMethodKind.CASH: "espèces",
        PaymentMethodKind.CHEQUE: "chèque",
        PaymentMethodKind.OTHER: "autre moyen de paiement",
    },
    "es": {
        PaymentMethodKind.BANK_TRANSFER: "transferencia bancaria",
        PaymentMethodKind.CARD: "tarjeta",
        PaymentMethodKind.DIRECT_DEBIT: "adeudo directo SEPA",
        PaymentMethodKind.CASH: "efectivo",
        PaymentMethodKind.CHEQUE: "cheque",
        PaymentMethodKind.OTHER: "otro medio de pago",
    },
}


def method_label(method: str, language: str, payment_method: PaymentMethod | None = None) -> str:
    labels = METHOD_LABELS.get(language, METHOD_LABELS[fmt.DEFAULT_LANGUAGE])
    label = labels.get(method, method)
    if payment_method is not None and payment_method.last4:
        label += f" ({payment_method.brand or 'card'} •••• {payment_method.last4})"
    return label


def _seller_context() -> dict[str, Any]:
    seller = seller_snapshot()
    return {"seller_name": seller.get("legal_name", ""), "seller_email": seller.get("email", "")}


def send_payment_failed_email(*, attempt_id: int) -> bool:
    """ "Your payment failed — update your card", at most once per attempt: the attempt's ``failure_email_sent_at``
    is claimed with ``UPDATE … WHERE failure_email_sent_at IS NULL``, and the message is queued under the key
    ``payment_failed:attempt:<id>``, so neither a second call nor a retried task sends it twice. Sending,
    retries and failures are the outbound-email machinery's (visible on the invoice in the admin).
    Returns whether this call queued it."""
    claimed = PaymentAttempt.objects.filter(
        pk=attempt_id, status=AttemptStatus.FAILED, failure_email_sent_at__isnull=True
    ).update(failure_email_sent_at=timezone.now())
    if claimed != 1:
        return False
    attempt = PaymentAttempt.objects.select_related("customer", "invoice", "payment_method").get(pk=attempt_id)
    language = fmt.document_language(attempt.customer.language)
    email_queue(
        kind=EmailKind.PAYMENT_FAILED,
        customer=attempt.customer,
        idempotency_key=f"payment_failed:attempt:{attempt.pk}",
        template="payments/payment_failed",
        context={
            "customer": attempt.customer,
            "invoice": attempt.invoice,
            "attempt": attempt,
            "amount": fmt.money(attempt.amount, attempt.currency, language),
            "currency": attempt.currency,
            "payment_method": attempt.payment_method,
            "portal_url": portal_url(),
            "product_name": settings.PRODUCT_NAME,
        },
        invoice=attempt.invoice,
    )
    return True


# --- payment receipt ------------------------------------------------------------------------------------


def payment_receipt_context(payment: Payment, language: str) -> dict[str, Any]:
    """Amount, date and method of the payment, the invoices it paid (number and amount), what became credit,
    and what the customer still owes in that currency afterwards — all money in the e-mail's language."""
    currency = payment.currency

    def money(value: Decimal) -> str:
        return fmt.money(value, currency, language)

    allocations = list(PaymentAllocation.objects.filter(payment=payment).select_related("invoice").order_by("pk"))
    allocated = sum((row.amount for row in allocations), Decimal(0))
    balance = customer_balances(customer=payment.customer, as_of=payment.received_on).get(currency)
    due = balance.due if balance is not None else Decimal(0)
    credit = balance.credit if balance is not None else Decimal(0)
    return {
        "payment": payment,
        "customer_name": payment.customer.display_legal_name or payment.customer.name,
        "amount": money(payment.amount),
        "received_on": fmt.date(payment.received_on, language),
        "method": method_label(payment.method, language, payment.payment_method),
        "reference": payment.reference,
        "invoices": [{"number": row.invoice.number, "amount": money(row.amount)} for row in allocations],
        "to_credit": money(payment.amount - allocated),
        "has_credit_part": payment.amount - allocated > 0,
        "balance_due": money(due),
        "is_due": due > 0,
        "credit_balance": money(credit),
        "has_credit_balance": credit > 0,
        "portal_url": portal_url(),
        **_seller_context(),
    }


def payment_receipt_send(*, payment_id: int) -> OutboundEmail | None:
    """The receipt of a succeeded payment: once per payment (key ``payment-receipt:<id>``). A payment refunded or
    failed before the handler ran gets none."""
    payment = Payment.objects.select_related("customer", "payment_method").filter(pk=payment_id).first()
    if payment is None or not payment.customer.email.strip():
        return None
    language = fmt.document_language(payment.customer.language)
    return email_queue(
        kind=EmailKind.PAYMENT_RECEIPT,
        customer=payment.customer,
        idempotency_key=f"payment-receipt:{payment.pk}",
        template="payments/payment_receipt",
        context=payment_receipt_context(payment, language),
        language=language,
    )


def on_payment_succeeded_receipt(event: DomainEvent) -> None:
    """Handler of ``payment.succeeded``, deliver phase (PaymentsConfig.ready): e-mail the receipt."""
    payment_receipt_send(payment_id=event.payload["payment_id"])


# --- refund issued --------------------------------------------------------------------------------------


def refund_email_send(*, refund_id: int) -> OutboundEmail | None:
    """ "We refunded you": once per refund (key ``refund:<id>``), for a refund that succeeded."""
    refund = (
        Refund.objects.select_related("customer", "payment", "payment__payment_method")
        .filter(pk=refund_id, status=RefundStatus.SUCCEEDED)
        .first()
    )
    if refund is None or not refund.customer.email.strip():
        return None
    if Dispute.objects.filter(refund=refund).exists():
        return None  # a lost dispute: the customer's bank took the money back, we did not refund anything
    language = fmt.document_language(refund.customer.language)
    payment = refund.payment
    currency = refund.currency

    def money(value: Decimal) -> str:
        return fmt.money(value, currency, language)

    refunded_on = billing_date_of(refund.processed_at or refund.created_at)
    context = {
        "refund": refund,
        "customer_name": refund.customer.display_legal_name or refund.customer.name,
        "amount": money(refund.amount),
        "refunded_on": fmt.date(refunded_on, language),
        "method": method_label(refund.method, language, payment.payment_method if payment else None),
        "reason": refund.reason,
        "has_payment": payment is not None,
        "is_card": refund.method == PaymentMethodKind.CARD,
        "payment_amount": money(payment.amount) if payment else "",
        "payment_date": fmt.date(payment.received_on, language) if payment else "",
        "amount_reopened": money(refund.amount_reopened),
        "has_reopened": refund.amount_reopened > 0,
        "portal_url": portal_url(),
        **_seller_context(),
    }
    return email_queue(
        kind=EmailKind.REFUND,
        customer=refund.customer,
        idempotency_key=f"refund:{refund.pk}",
        template="payments/refund",
        context=context,
        language=language,
    )


def on_payment_refunded_email(event: DomainEvent) -> None:
    """Handler of ``payment.refunded``, deliver phase (PaymentsConfig.ready): e-mail the refund."""
    refund_email_send(refund_id=event.payload["refund_id"])


# --- card about to expire -------------------------------------------------------------------------------


def _month_after(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def expiring_cards(*, as_of: dt.date) -> list[PaymentMethod]:
    """Active default cards of active customers that expire at the end of this month or next (billing timezone
    date ``as_of``), with a billing e-mail address."""
    this_month = (as_of.year, as_of.month)
    next_month = _month_after(*this_month)
    months = Q(exp_year=this_month[0], exp_month=this_month[1]) | Q(exp_year=next_month[0], exp_month=next_month[1])
    return list(
        PaymentMethod.objects.filter(months, is_default=True, is_active=True)
        .exclude(customer__email="")
        .select_related("customer")
        .order_by("pk")
    )


@dataclass
class CardExpiryReport:
    as_of: dt.date
    cards: int = 0
    queued: int = 0
    already_sent: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "cards": self.cards,
            "queued": self.queued,
            "already_sent": self.already_sent,
            "errors": list(self.errors),
        }


def card_expiring_email_key(method: PaymentMethod) -> str:
    return f"card-expiring:{method.pk}:{method.exp_year:04d}-{method.exp_month:02d}"


def card_expiry_notices_send(*, as_of: dt.date) -> CardExpiryReport:
    """The daily job: e-mail each customer whose default card expires at the end of this month or next, once per
    card and expiry (key ``card-expiring:<method id>:<yyyy-mm>``), with the portal's payment-method page. Run
    again (the same day or the next), it finds the keys and sends nothing new; a card replaced by one with a
    later expiry gets its own e-mail when that one nears its end."""
    report = CardExpiryReport(as_of=as_of)
    for method in expiring_cards(as_of=as_of):
        report.cards += 1
        key = card_expiring_email_key(method)
        if OutboundEmail.objects.filter(idempotency_key=key).exists():
            report.already_sent += 1
            continue
        customer = method.customer
        language = fmt.document_language(customer.language)
        assert method.exp_year is not None and method.exp_month is not None
        expiry_last_day = dt.date(*_month_after(method.exp_year, method.exp_month), 1) - dt.timedelta(days=1)
        context = {
            "customer_name": customer.display_legal_name or customer.name,
            "card": f"{method.brand or 'card'} •••• {method.last4}" if method.last4 else str(method),
            "expiry": f"{method.exp_month:02d}/{method.exp_year}",
            "expires_on": fmt.date(expiry_last_day, language),
            "payment_methods_url": portal_url("payment-methods/"),
            **_seller_context(),
        }
        try:
            email_queue(
                kind=EmailKind.CARD_EXPIRING,
                customer=customer,
                idempotency_key=key,
                template="payments/card_expiring",
                context=context,
                language=language,
            )
        except Exception as exc:  # one customer's bad data must not stop the others' notices
            report.errors.append(f"payment method {method.pk}: {type(exc).__name__}: {exc}")
            continue
        report.queued += 1
    return report


# --- 3-D Secure needed, SEPA mandate, add-a-method link -------------------------------------------------

# Stripe's SEPA Direct Debit mandate text (the wording Stripe's Payment Element shows), per language; shown on the
# portal page before the customer confirms and e-mailed with the mandate reference afterwards.
SEPA_MANDATE_TEXT: dict[str, str] = {
    "en": (
        "By providing your payment information and confirming this mandate, you authorise (A) {seller} and Stripe, "
        "our payment service provider, to send instructions to your bank to debit your account and (B) your bank "
        "to debit your account in accordance with those instructions. As part of your rights, you are entitled to "
        "a refund from your bank under the terms and conditions of your agreement with your bank. A refund must be "
        "claimed within 8 weeks starting from the date on which your account was debited. Your rights are "
        "explained in a statement that you can obtain from your bank."
    ),
    "de": (
        "Mit der Angabe Ihrer Zahlungsinformationen und der Bestätigung dieses Mandats ermächtigen Sie (A) "
        "{seller} und Stripe, unseren Zahlungsdienstleister, Ihrer Bank Anweisungen zur Belastung Ihres Kontos zu "
        "erteilen, und (B) Ihre Bank, Ihr Konto gemäß diesen Anweisungen zu belasten. Sie haben Anspruch auf "
        "Erstattung durch Ihre Bank gemäß den Bedingungen Ihres Vertrags mit Ihrer Bank. Die Erstattung muss "
        "innerhalb von 8 Wochen ab dem Tag der Belastung Ihres Kontos verlangt werden. Ihre Rechte erläutert eine "
        "Erklärung, die Sie von Ihrer Bank erhalten können."
    ),
    "fr": (
        "En fournissant vos informations de paiement et en confirmant ce mandat, vous autorisez (A) {seller} et "
        "Stripe, notre prestataire de services de paiement, à envoyer des instructions à votre banque pour débiter "
        "votre compte, et (B) votre banque à débiter votre compte conformément à ces instructions. Vous avez droit à "
        "un remboursement par votre banque selon les conditions de votre convention avec elle. Le remboursement "
        "doit être demandé dans un délai de 8 semaines à compter de la date de débit de votre compte. Vos droits "
        "sont expliqués dans un document que vous pouvez obtenir auprès de votre banque."
    ),
    "es": (
        "Al facilitar sus datos de pago y confirmar esta orden, autoriza (A) a {seller} y a Stripe, nuestro "
        "proveedor de servicios de pago, a enviar instrucciones a su banco para adeudar su cuenta y (B) a su banco "
        "a adeudar su cuenta conforme a dichas instrucciones. Tiene derecho a que su banco le reembolse según los "
        "términos y condiciones del contrato suscrito con él. El reembolso debe solicitarse en un plazo de 8 "
        "semanas a partir de la fecha en que se adeudó su cuenta. Sus derechos se explican en un documento que "
        "puede obtener en su banco."
    ),
}


def sepa_mandate_text(language: str) -> str:
    text = SEPA_MANDATE_TEXT.get(language) or SEPA_MANDATE_TEXT["en"]
    return text.format(seller=_seller_context()["seller_name"] or settings.PRODUCT_NAME)


def send_payment_action_email(*, attempt_id: int) -> bool:
    """ "Please confirm the payment (3-D Secure)", once per attempt (``action_email_sent_at`` claimed, key
    ``payment_action:attempt:<id>``), with a signed link to the portal page that completes the authentication."""
    from core.links import invoice_link_url

    claimed = PaymentAttempt.objects.filter(
        pk=attempt_id, status=AttemptStatus.REQUIRES_ACTION, action_email_sent_at__isnull=True
    ).update(action_email_sent_at=timezone.now())
    if claimed != 1:
        return False
    attempt = PaymentAttempt.objects.select_related("customer", "invoice", "payment_method").get(pk=attempt_id)
    language = fmt.document_language(attempt.customer.language)
    email_queue(
        kind=EmailKind.PAYMENT_FAILED,  # the collection problem family: staff filter these together
        customer=attempt.customer,
        idempotency_key=f"payment_action:attempt:{attempt.pk}",
        template="payments/payment_action",
        context={
            "customer": attempt.customer,
            "invoice": attempt.invoice,
            "amount": fmt.money(attempt.amount, attempt.currency, language),
            "payment_method": attempt.payment_method,
            "action_url": invoice_link_url(invoice_id=attempt.invoice_id, purpose="authenticate"),
            "link_valid_days": settings.PORTAL_LINK_MAX_AGE_DAYS,
            "product_name": settings.PRODUCT_NAME,
        },
        invoice=attempt.invoice,
        language=language,
    )
    return True


def sepa_mandate_email_send(*, payment_method_id: int) -> OutboundEmail | None:
    """The mandate's reference and text, once per mandate (key ``sepa-mandate:<mandate id>``)."""
    method = PaymentMethod.objects.select_related("customer").get(pk=payment_method_id)
    if not method.mandate_id or not method.customer.email.strip():
        return None
    customer = method.customer
    language = fmt.document_language(customer.language)
    return email_queue(
        kind=EmailKind.OTHER,
        customer=customer,
        idempotency_key=f"sepa-mandate:{method.mandate_id}",
        template="payments/sepa_mandate",
        context={
            "customer_name": customer.display_legal_name or customer.name,
            "account": f"•••• {method.last4}",
            "mandate_reference": method.mandate_reference or method.mandate_id,
            "signed_on": fmt.date(billing_date_of(method.created_at), language),
            "mandate_text": sepa_mandate_text(language),
            "payment_methods_url": portal_url("payment-methods/"),
            **_seller_context(),
        },
        language=language,
    )


def add_method_link_email_send(*, customer: Any, link_url: str, sent_by: Any = None) -> OutboundEmail:
    """Staff's "send add-card link": a signed, expiring link to the portal's add-a-method page."""
    language = fmt.document_language(customer.language)
    return email_queue(
        kind=EmailKind.OTHER,
        customer=customer,
        idempotency_key=f"add-method-link:{customer.pk}:{timezone.now().isoformat()}",
        template="payments/add_method_link",
        context={
            "customer_name": customer.display_legal_name or customer.name,
            "link_url": link_url,
            "link_valid_days": settings.PAYMENTS_METHOD_LINK_MAX_AGE_DAYS,
            **_seller_context(),
        },
        language=language,
    )
