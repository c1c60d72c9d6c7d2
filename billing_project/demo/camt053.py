"""A bank statement for the demo: ISO 20022 CAMT.053 (camt.053.001.02, the version German and Swiss banks
send), one booked incoming transfer per open demo invoice that is paid by bank transfer, each for the amount due
and naming the invoice number — what ``manage.py import_bank_statement FILE --format camt053`` and the admin's
bank-statement import match automatically.

The demo's invoice numbers and amounts depend on the day it was seeded (the calendar is billed up to today), so
the statement is written from the database: ``manage.py demo_camt053`` (``make demo`` writes
``var/camt053-demo.xml``). ``docs/samples/camt053-demo.xml`` is one such file, kept as an example of the format.

Which invoices: open, with an amount due, in the seller's account currency (EUR), not charged automatically
(one-off invoices and "send invoice" subscriptions) and never tried by card — so the worker cannot settle one
before the statement is imported — and not the portal customer's, whose open invoice is there to be paid in the
portal. The oldest due first, one per customer, at most ``limit``."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from xml.etree.ElementTree import Element, SubElement, indent, tostring

from django.db.models import Exists, OuterRef, Q, QuerySet

from billing_project.demo.portal_customer import PORTAL_CUSTOMER
from core.dates import billing_today, billing_tz
from customers.seller import seller_profile
from invoicing.models import Invoice, InvoiceStatus
from payments.models import PaymentAttempt
from subscriptions.models import CollectionMethod

NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"
ACCOUNT_CURRENCY = "EUR"
OPENING_BALANCE = Decimal("12500.00")
CENT = Decimal("0.01")


def statement_invoices(*, limit: int = 6) -> list[Invoice]:
    """The open demo invoices the statement pays (see the module docstring), one per customer."""
    chosen: dict[int, Invoice] = {}
    for invoice in _payable_by_transfer():
        chosen.setdefault(invoice.customer_id, invoice)
        if len(chosen) == limit:
            break
    return list(chosen.values())


def _payable_by_transfer() -> QuerySet[Invoice]:
    return (
        Invoice.objects.filter(
            status=InvoiceStatus.OPEN,
            amount_due__gt=0,
            currency=ACCOUNT_CURRENCY,
            customer__external_id__startswith="DEMO-",
        )
        .filter(Q(subscription__isnull=True) | Q(subscription__collection_method=CollectionMethod.SEND_INVOICE))
        .exclude(customer__external_id=PORTAL_CUSTOMER)
        .exclude(Exists(PaymentAttempt.objects.filter(invoice=OuterRef("pk"))))
        .select_related("customer")
        .order_by("due_date", "pk")
    )


def _text(parent: Element, tag: str, text: str, **attributes: str) -> Element:
    element = SubElement(parent, tag, attributes)
    element.text = text
    return element


def _amount(value: Decimal) -> str:
    return str(Decimal(value).quantize(CENT))


def _balance(parent: Element, code: str, amount: Decimal, day: dt.date) -> None:
    balance = SubElement(parent, "Bal")
    _text(SubElement(SubElement(balance, "Tp"), "CdOrPrtry"), "Cd", code)
    _text(balance, "Amt", _amount(amount), Ccy=ACCOUNT_CURRENCY)
    _text(balance, "CdtDbtInd", "CRDT")
    _text(SubElement(balance, "Dt"), "Dt", day.isoformat())


def demo_statement(*, as_of: dt.date | None = None, limit: int = 6) -> tuple[bytes, list[Invoice]]:
    """``(CAMT.053 XML, the invoices it pays)``, booked on ``as_of`` (today in BILLING_TIMEZONE)."""
    day = as_of or billing_today()
    invoices = statement_invoices(limit=limit)
    created = dt.datetime.combine(day, dt.time(18), tzinfo=billing_tz()).isoformat()
    statement_id = f"CADENCE-DEMO-{day:%Y%m%d}"
    root = Element("Document", {"xmlns": NAMESPACE})
    container = SubElement(root, "BkToCstmrStmt")
    header = SubElement(container, "GrpHdr")
    _text(header, "MsgId", statement_id)
    _text(header, "CreDtTm", created)
    statement = SubElement(container, "Stmt")
    _text(statement, "Id", f"{statement_id}-1")
    _text(statement, "ElctrncSeqNb", "1")
    _text(statement, "CreDtTm", created)
    account = SubElement(statement, "Acct")
    seller = seller_profile()
    _text(SubElement(account, "Id"), "IBAN", seller.iban.replace(" ", ""))
    _text(account, "Ccy", ACCOUNT_CURRENCY)
    _text(account, "Nm", seller.legal_name)
    _text(SubElement(SubElement(account, "Svcr"), "FinInstnId"), "BIC", seller.bic)
    received = sum((Decimal(invoice.amount_due).quantize(CENT) for invoice in invoices), Decimal(0))
    _balance(statement, "OPBD", OPENING_BALANCE, day)
    _balance(statement, "CLBD", OPENING_BALANCE + received, day)
    for position, invoice in enumerate(invoices, start=1):
        entry = SubElement(statement, "Ntry")
        _text(entry, "NtryRef", str(position))
        _text(entry, "Amt", _amount(invoice.amount_due), Ccy=ACCOUNT_CURRENCY)
        _text(entry, "CdtDbtInd", "CRDT")
        _text(entry, "Sts", "BOOK")
        _text(SubElement(entry, "BookgDt"), "Dt", day.isoformat())
        _text(SubElement(entry, "ValDt"), "Dt", day.isoformat())
        _text(entry, "AcctSvcrRef", f"{statement_id}-{position:04d}")
        domain = SubElement(SubElement(entry, "BkTxCd"), "Domn")
        _text(domain, "Cd", "PMNT")
        family = SubElement(domain, "Fmly")
        _text(family, "Cd", "RCDT")
        _text(family, "SubFmlyCd", "ESCT")
        details = SubElement(SubElement(entry, "NtryDtls"), "TxDtls")
        _text(SubElement(details, "Refs"), "EndToEndId", "NOTPROVIDED")
        _text(SubElement(SubElement(details, "AmtDtls"), "TxAmt"), "Amt", _amount(invoice.amount_due), Ccy="EUR")
        payer = (invoice.customer_snapshot or {}).get("legal_name") or invoice.customer.name
        _text(SubElement(SubElement(details, "RltdPties"), "Dbtr"), "Nm", payer[:140])
        _text(SubElement(details, "RmtInf"), "Ustrd", f"Invoice {invoice.number}")
    indent(root)
    note = (
        f"<!-- Written by manage.py demo_camt053 on {day.isoformat()}: it pays open invoices of the demo as seeded "
        "that day (the demo's invoice numbers depend on the day it is seeded). -->\n"
    )
    body = tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{note}{body}\n'.encode(), invoices
