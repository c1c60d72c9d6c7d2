"""The payment terms sentence of an invoice, in a language: printed on the PDF and written into its e-invoice
(BT-20). Its own module because both ``invoicing.documents`` and ``invoicing.einvoice`` read it."""

from __future__ import annotations

from core import formatting as fmt
from invoicing.models import Invoice


def payment_terms_text(invoice: Invoice, lang: str | None = None) -> str:
    """ "Payable without deduction within 14 days, by 15.01.2026." — in ``lang``, by default the customer's."""
    if invoice.due_date is None or invoice.issue_date is None:
        return ""
    lang = lang or fmt.document_language((invoice.customer_snapshot or {}).get("language"))
    days = (invoice.due_date - invoice.issue_date).days
    due = fmt.date(invoice.due_date, lang)
    return (
        fmt.label(lang, "payment_terms", days=days, due_date=due)
        if days > 0
        else fmt.label(lang, "payment_terms_now", due_date=due)
    )
