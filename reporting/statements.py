"""Statement of account: one customer's account in one currency over a period — opening balance, the invoices,
payments (less refunds), credit notes and credit adjustments dated in it, closing balance — as figures, as a PDF
(xhtml2pdf, like the invoice) and as an e-mail through the notifications outbox.

The balance is what the customer owes: + invoices issued (void ones never count: nothing was owed), − payments
received, + refunds paid back, − credit notes issued, − manual credit added (+ removed). Each row is dated by its
document date (invoice and credit note issue date, payment date received) or, for refunds and adjustments, by the
day it happened in the billing timezone. Closing = opening + invoices − payments − credit notes, to the cent; up
to today it equals the amount due of the open invoices less the customer's credit (``customer_balances``).

Here in reporting because it reads invoicing and payments together (the layers: a lower app cannot)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet, Sum
from django.template.loader import render_to_string
from django.utils import translation

from core import formatting as fmt
from core.dates import billing_date_of, billing_tz
from core.errors import InvalidInput
from customers.models import Customer
from customers.seller import seller_profile, seller_snapshot
from invoicing.documents import FONT_FAMILY, html_to_pdf
from invoicing.models import CreditNote, Invoice, InvoiceStatus
from notifications.models import EmailKind, OutboundEmail
from notifications.sending import Attachment
from notifications.services import email_queue
from payments.models import (
    CreditEntryKind,
    CreditLedgerEntry,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    WalletEntryKind,
    WalletTransaction,
)

ZERO = Decimal(0)
COUNTED_PAYMENTS = (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED, PaymentStatus.PARTIALLY_REFUNDED)
STATEMENT_KEY_PREFIX = "statement:"

INVOICE, PAYMENT, REFUND, CREDIT_NOTE, ADJUSTMENT = "invoice", "payment", "refund", "credit_note", "adjustment"
# Prepaid credits that paid an invoice (docs/decisions/wallets.md): like a payment. The wallet itself is not part
# of the balance (a voucher), so a refund of paid wallet credits is not a statement line either.
WALLET = "wallet"
_KIND_ORDER = {INVOICE: 0, CREDIT_NOTE: 1, ADJUSTMENT: 2, PAYMENT: 3, WALLET: 4, REFUND: 5}
LABELS = {
    "en": {
        "title": "Statement of account",
        "period": "Period",
        "customer": "Customer",
        "opening": "Opening balance",
        "closing": "Closing balance",
        "date": "Date",
        "document": "Document",
        "description": "Description",
        "charges": "Charges",
        "credits": "Payments and credits",
        "balance": "Balance",
        INVOICE: "Invoice",
        PAYMENT: "Payment",
        REFUND: "Refund",
        CREDIT_NOTE: "Credit note",
        ADJUSTMENT: "Credit adjustment",
        WALLET: "Prepaid credits",
        "invoices": "Invoices",
        "payments": "Payments (less refunds)",
        "credit_notes": "Credit notes and credit adjustments",
        "owed": "A positive balance is owed by you; a negative balance is your credit with us.",
        "none": "No movements in this period.",
    },
    "de": {
        "title": "Kontoauszug",
        "period": "Zeitraum",
        "customer": "Kunde",
        "opening": "Anfangssaldo",
        "closing": "Endsaldo",
        "date": "Datum",
        "document": "Beleg",
        "description": "Beschreibung",
        "charges": "Belastungen",
        "credits": "Zahlungen und Gutschriften",
        "balance": "Saldo",
        INVOICE: "Rechnung",
        PAYMENT: "Zahlung",
        REFUND: "Erstattung",
        CREDIT_NOTE: "Gutschrift",
        ADJUSTMENT: "Guthabenkorrektur",
        WALLET: "Prepaid-Guthaben",
        "invoices": "Rechnungen",
        "payments": "Zahlungen (abzüglich Erstattungen)",
        "credit_notes": "Gutschriften und Guthabenkorrekturen",
        "owed": "Ein positiver Saldo ist von Ihnen zu zahlen; ein negativer Saldo ist Ihr Guthaben bei uns.",
        "none": "Keine Bewegungen in diesem Zeitraum.",
    },
    "fr": {
        "title": "Relevé de compte",
        "period": "Période",
        "customer": "Client",
        "opening": "Solde d’ouverture",
        "closing": "Solde de clôture",
        "date": "Date",
        "document": "Pièce",
        "description": "Désignation",
        "charges": "Débits",
        "credits": "Paiements et avoirs",
        "balance": "Solde",
        INVOICE: "Facture",
        PAYMENT: "Paiement",
        REFUND: "Remboursement",
        CREDIT_NOTE: "Avoir",
        ADJUSTMENT: "Ajustement de crédit",
        WALLET: "Crédits prépayés",
        "invoices": "Factures",
        "payments": "Paiements (moins les remboursements)",
        "credit_notes": "Avoirs et ajustements de crédit",
        "owed": "Un solde positif est à votre charge ; un solde négatif est votre crédit chez nous.",
        "none": "Aucun mouvement sur cette période.",
    },
    "es": {
        "title": "Extracto de cuenta",
        "period": "Periodo",
        "customer": "Cliente",
        "opening": "Saldo inicial",
        "closing": "Saldo final",
        "date": "Fecha",
        "document": "Documento",
        "description": "Descripción",
        "charges": "Cargos",
        "credits": "Pagos y abonos",
        "balance": "Saldo",
        INVOICE: "Factura",
        PAYMENT: "Pago",
        REFUND: "Reembolso",
        CREDIT_NOTE: "Factura rectificativa",
        ADJUSTMENT: "Ajuste de saldo",
        WALLET: "Créditos prepagados",
        "invoices": "Facturas",
        "payments": "Pagos (menos reembolsos)",
        "credit_notes": "Facturas rectificativas y ajustes de saldo",
        "owed": "Un saldo positivo es a su cargo; un saldo negativo es su saldo a favor con nosotros.",
        "none": "No hay movimientos en este periodo.",
    },
}


class StatementError(InvalidInput):
    pass


@dataclass(frozen=True)
class StatementEntry:
    date: dt.date
    kind: str
    reference: str
    description: str
    amount: Decimal  # signed: + raises what the customer owes, − lowers it


@dataclass
class Statement:
    customer: Customer
    currency: str
    start: dt.date  # both dates included
    end: dt.date
    opening: Decimal
    entries: list[StatementEntry] = field(default_factory=list)

    def _sum(self, kinds: Iterable[str]) -> Decimal:
        wanted = set(kinds)
        return sum((entry.amount for entry in self.entries if entry.kind in wanted), ZERO)

    @property
    def invoices(self) -> Decimal:
        return self._sum([INVOICE])

    @property
    def payments(self) -> Decimal:
        """Received in the period less refunded in it, and prepaid credits used (a positive number)."""
        return -self._sum([PAYMENT, REFUND, WALLET])

    @property
    def credit_notes(self) -> Decimal:
        """Credit notes and manual credit adjustments (a positive number when they lowered the balance)."""
        return -self._sum([CREDIT_NOTE, ADJUSTMENT])

    @property
    def closing(self) -> Decimal:
        return self.opening + self.invoices - self.payments - self.credit_notes

    def running(self) -> list[tuple[StatementEntry, Decimal]]:
        balance, rows = self.opening, []
        for entry in self.entries:
            balance += entry.amount
            rows.append((entry, balance))
        return rows


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=billing_tz())


def _total(queryset: QuerySet[Any], column: str) -> Decimal:
    return queryset.aggregate(total=Sum(column))["total"] or ZERO


def _sources(customer: Customer, currency: str) -> dict[str, QuerySet[Any]]:
    return {
        INVOICE: Invoice.objects.filter(customer=customer, currency=currency)
        .exclude(status__in=(InvoiceStatus.DRAFT, InvoiceStatus.VOID))
        .exclude(number=""),
        CREDIT_NOTE: CreditNote.objects.filter(customer=customer, currency=currency),
        PAYMENT: Payment.objects.filter(customer=customer, currency=currency, status__in=COUNTED_PAYMENTS),
        REFUND: Refund.objects.filter(customer=customer, currency=currency, status=RefundStatus.SUCCEEDED).exclude(
            pk__in=WalletTransaction.objects.filter(refund__isnull=False).values("refund_id")
        ),
        WALLET: WalletTransaction.objects.filter(
            wallet__customer=customer, wallet__currency=currency, kind=WalletEntryKind.CONSUMPTION
        ),
        ADJUSTMENT: CreditLedgerEntry.objects.filter(
            customer=customer, currency=currency, kind=CreditEntryKind.MANUAL_ADJUSTMENT
        ),
    }


def statement_of_account(*, customer: Customer, start: dt.date, end: dt.date, currency: str | None = None) -> Statement:
    """The statement for ``[start, end]`` (both days included) in ``currency`` (default: the customer's)."""
    if end < start:
        raise StatementError("the period ends before it starts", field="end")
    currency = currency or customer.currency
    src = _sources(customer, currency)
    before, after = _day_start(start), _day_start(end + dt.timedelta(days=1))
    opening = (
        _total(src[INVOICE].filter(issue_date__lt=start), "total")
        - _total(src[CREDIT_NOTE].filter(issue_date__lt=start), "total")
        - _total(src[PAYMENT].filter(received_on__lt=start), "amount")
        + _total(src[REFUND].filter(processed_at__lt=before), "amount")
        - _total(src[ADJUSTMENT].filter(created_at__lt=before), "amount")
        + _total(src[WALLET].filter(booked_on__lt=start), "amount")
    )
    entries = [
        *(
            StatementEntry(
                row.issue_date, INVOICE, row.number, f"due {row.due_date:%Y-%m-%d}" if row.due_date else "", row.total
            )
            for row in src[INVOICE]
            .filter(issue_date__gte=start, issue_date__lte=end)
            .only("pk", "number", "issue_date", "due_date", "total")
        ),
        *(
            StatementEntry(row.issue_date, CREDIT_NOTE, row.number, row.reason, -row.total)
            for row in src[CREDIT_NOTE]
            .filter(issue_date__gte=start, issue_date__lte=end)
            .only("pk", "number", "issue_date", "reason", "total")
        ),
        *(
            StatementEntry(
                row.received_on, PAYMENT, f"#{row.pk}", row.reference or row.get_method_display(), -row.amount
            )
            for row in src[PAYMENT].filter(received_on__gte=start, received_on__lte=end)
        ),
        *(
            StatementEntry(billing_date_of(row.processed_at), REFUND, f"#{row.pk}", row.reason, row.amount)
            for row in src[REFUND].filter(processed_at__gte=before, processed_at__lt=after)
        ),
        *(
            StatementEntry(billing_date_of(row.created_at), ADJUSTMENT, f"#{row.pk}", row.reason, -row.amount)
            for row in src[ADJUSTMENT].filter(created_at__gte=before, created_at__lt=after)
        ),
        *(
            StatementEntry(row.booked_on, WALLET, row.invoice.number if row.invoice else "", row.reason, row.amount)
            for row in src[WALLET].filter(booked_on__gte=start, booked_on__lte=end).select_related("invoice")
        ),
    ]
    entries.sort(key=lambda entry: (entry.date, _KIND_ORDER[entry.kind], entry.reference))
    return Statement(customer=customer, currency=currency, start=start, end=end, opening=opening, entries=entries)


# --- the document -----------------------------------------------------------------------------------------


def statement_context(statement: Statement) -> dict[str, Any]:
    customer = statement.customer
    lang = fmt.document_language(customer.language)
    labels = LABELS.get(lang, LABELS["en"])
    currency = statement.currency

    def money(value: Decimal) -> str:
        return fmt.money(value, currency, lang)

    with translation.override(lang):  # the country named in the statement's language
        address = customer.postal_address
    seller = {key: value if isinstance(value, dict) else str(value) for key, value in seller_snapshot().items()}
    return {
        "lang": lang,
        "L": labels,
        "font_family": FONT_FAMILY,
        "seller": seller,
        "customer_name": customer.display_legal_name,
        "customer_address": [line for line in address.splitlines() if line.strip()],
        "period": f"{fmt.date(statement.start, lang)} – {fmt.date(statement.end, lang)}",
        "currency": currency,
        "opening": money(statement.opening),
        "closing": money(statement.closing),
        "rows": [
            {
                "date": fmt.date(entry.date, lang),
                "kind": labels[entry.kind],
                "reference": entry.reference,
                "description": entry.description,
                "charge": money(entry.amount) if entry.amount > 0 else "",
                "credit": money(-entry.amount) if entry.amount < 0 else "",
                "balance": money(balance),
            }
            for entry, balance in statement.running()
        ],
        "totals": [
            (labels["invoices"], money(statement.invoices)),
            (labels["payments"], money(-statement.payments)),
            (labels["credit_notes"], money(-statement.credit_notes)),
        ],
    }


def statement_filename(statement: Statement) -> str:
    return f"statement-{statement.customer.pk}-{statement.start:%Y%m%d}-{statement.end:%Y%m%d}.pdf"


def statement_pdf(statement: Statement) -> bytes:
    return html_to_pdf(render_to_string("reporting/statement.html", statement_context(statement)))


# --- e-mail ---------------------------------------------------------------------------------------------------


def statement_email_queue(
    *, customer: Customer, start: dt.date, end: dt.date, currency: str | None = None, request_key: str | None = None
) -> OutboundEmail:
    """E-mail the statement (PDF attached at send time, by ``statement_email_attachment``) through the outbox:
    stored, sent once, retried, delivery tracked. ``request_key`` (one per form shown) makes a double submit
    queue one message; the period and currency ride in the message's key, which the attachment provider reads."""
    statement = statement_of_account(customer=customer, start=start, end=end, currency=currency)
    lang = fmt.document_language(customer.language)
    key = (
        f"{STATEMENT_KEY_PREFIX}{customer.pk}:{statement.currency}:{start:%Y-%m-%d}:{end:%Y-%m-%d}:"
        f"{(request_key or uuid.uuid4().hex)[:64]}"
    )
    return email_queue(
        kind=EmailKind.STATEMENT,
        customer=customer,
        idempotency_key=key,
        template="statement",
        context={
            "customer_name": customer.display_legal_name,
            "seller_name": seller_profile().legal_name,
            "period": f"{fmt.date(start, lang)} – {fmt.date(end, lang)}",
            "closing": fmt.money(statement.closing, statement.currency, lang),
            "owed": statement.closing > 0,
        },
        attach_pdf=True,
        language=lang,
    )


def _statement_of_email(email: OutboundEmail) -> Statement | None:
    if email.kind != EmailKind.STATEMENT or not email.idempotency_key.startswith(STATEMENT_KEY_PREFIX):
        return None
    customer_id, currency, start, end, _ = email.idempotency_key[len(STATEMENT_KEY_PREFIX) :].split(":", 4)
    customer = Customer.objects.get(pk=int(customer_id))
    return statement_of_account(
        customer=customer, start=dt.date.fromisoformat(start), end=dt.date.fromisoformat(end), currency=currency
    )


def statement_email_attachment(email: OutboundEmail) -> list[Attachment]:
    """The outbox's attachment provider for statements (registered in ReportingConfig.ready)."""
    statement = _statement_of_email(email)
    if statement is None:
        return []
    return [Attachment(statement_filename(statement), statement_pdf(statement))]
