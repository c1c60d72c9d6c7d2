"""Amounts, dates, quantities and fixed wording of customer documents, in the customer's language.

Babel does the locale work (``format_currency(Decimal("1234.5"), "EUR", locale="de_DE")`` → ``1.234,50 €``;
``en`` → ``€1,234.50``); amounts are rounded with the product's one rounding rule first
(``core.money.round_amount``) so the document shows exactly what is stored. The fixed wording of
the PDF lives here as one dict per language rather than in gettext catalogues: it is a few dozen labels, read by
one template, and a missing German label falls back to English instead of to an empty string.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from functools import lru_cache
from typing import Any

from babel import Locale
from babel.dates import format_date as babel_format_date
from babel.numbers import format_currency, format_decimal

from core.money import round_amount

SUPPORTED_LANGUAGES = ("en", "de", "fr", "es")
DEFAULT_LANGUAGE = "en"
# The Babel locale of each customer language: the region pins the conventions (de_DE "1.234,50 €", fr_FR
# "1 234,50 €" with a narrow no-break space, es_ES "1.234,50 €"; en_US "€1,234.50").
_LOCALES = {"en": "en_US", "de": "de_DE", "fr": "fr_FR", "es": "es_ES"}


def document_language(language: str | None) -> str:
    language = (language or "").split("-")[0].split("_")[0].lower()
    return language if language in SUPPORTED_LANGUAGES else DEFAULT_LANGUAGE


@lru_cache(maxsize=16)
def _locale(language: str) -> Locale:
    return Locale.parse(_LOCALES[document_language(language)])


def money(amount: Decimal | str | int, currency: str, language: str) -> str:
    """``€1,234.50`` (en), ``1.234,50 €`` (de); JPY without and BHD with three decimals."""
    try:
        return _money(amount, currency, language)
    except TypeError:  # an unhashable amount (a signalling NaN): not remembered, and refused as before
        return _money.__wrapped__(amount, currency, language)


# Babel spends ~50 µs on each amount; an admin list or a PDF shows the same amounts again and again (plan prices,
# the same page for every clerk), so the text of each (amount, currency, language) is kept. Equal amounts format
# the same whatever their exponent (``1.5`` and ``1.50``): each is rounded to the currency's digits first.
@lru_cache(maxsize=4096)
def _money(amount: Decimal | str | int, currency: str, language: str) -> str:
    value = round_amount(Decimal(amount), currency)
    return format_currency(value, currency, locale=_locale(language), currency_digits=True)


def unit_price(amount: Decimal, currency: str, language: str) -> str:
    """Unit prices keep their extra precision (``€0.0125`` per API call) but never show fewer digits than the
    currency has (``€31.00``, not ``€31``) nor more than it needs (``¥3,040``, not ``¥3,040.00``)."""
    value = Decimal(amount)
    rounded = round_amount(value, currency)
    shown = rounded if rounded == value else value.normalize()
    return format_currency(shown, currency, locale=_locale(language), currency_digits=True, decimal_quantization=False)


def plain_decimal(value: Decimal | str | int) -> str:
    """A Decimal as plain digits without trailing zeros, never in exponent notation: ``20`` (not ``2E+1``),
    ``7.5``, ``0.0125``. For stored percentages and machine-readable values."""
    text = f"{Decimal(value).normalize():f}"
    return "0" if text in ("-0", "") else text


def quantity(value: Decimal | int, language: str) -> str:
    """At most four decimals, no trailing zeros: ``1``, ``2.5``, ``1,250.125`` / ``1.250,125``."""
    return format_decimal(value, format="#,##0.####", locale=_locale(language))


def percentage(value: Decimal | str, language: str) -> str:
    """``20 %``, ``7.5 %`` (en), ``7,5 %`` (de, fr, es): no exponent (``2E+1``), no trailing zeros."""
    return format_decimal(Decimal(value), format="#,##0.###", locale=_locale(language)) + " %"


def date(value: dt.date | None, language: str) -> str:
    """``Mar 2, 2026`` (en), ``02.03.2026`` (de); empty for no date."""
    if value is None:
        return ""
    return babel_format_date(value, format="medium", locale=_locale(language))


def period(start: dt.date | None, end: dt.date | None, language: str) -> str:
    """A half-open period ``[start, end)`` printed with its last day inclusive, as customers read periods."""
    if start is None or end is None:
        return ""
    last_day = end - dt.timedelta(days=1) if end > start else end
    return f"{date(start, language)} – {date(last_day, language)}"


def country_name(code: str, language: str) -> str:
    """``Germany`` (en), ``Deutschland`` (de) for ``DE``; empty for no code."""
    code = (code or "").upper()
    return str(_locale(language).territories.get(code, code)) if code else ""


def iban(value: str) -> str:
    compact = "".join(value.split()).upper()
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


LABELS: dict[str, dict[str, str]] = {
    "en": {
        "invoice": "Invoice",
        "credit_note": "Credit note",
        "quote": "Quote",
        "quote_date": "Quote date",
        "valid_until": "Valid until",
        "starts": "Subscription starts",
        "starts_on_acceptance": "on acceptance",
        "renewal": "Then {amount} on {date}, and each period after",
        "quote_note": "Accept this quote in your customer portal: {url}",
        "first_invoice": "First invoice total",
        "draft": "DRAFT — not a valid invoice",
        "number": "Number",
        "issue_date": "Issue date",
        "due_date": "Due date",
        "period": "Service period",
        "credited_invoice": "Credits invoice",
        "reason": "Reason",
        "customer_tax_id": "Customer VAT ID",
        "seller_tax_id": "VAT ID",
        "bill_to": "Bill to",
        "pos": "#",
        "description": "Description",
        "quantity": "Qty",
        "unit_price": "Unit price",
        "tax": "Tax",
        "amount": "Amount",
        "discount": "Discount",
        "subtotal": "Subtotal",
        "net_total": "Net total",
        "account_total": "Total {name}",
        "account_net_tax": "net {net}, tax {tax}",
        "tax_on": "{name} on {taxable}",
        "tax_included": "incl.",
        "total": "Total",
        "amount_paid": "Amount paid",
        "amount_credited": "Credited",
        "amount_due": "Amount due",
        "credit_total": "Total credited",
        "payment": "Payment",
        "pay_by_transfer": "Please transfer {amount} by {due_date}, quoting {number}, to:",
        "bank": "Bank",
        "iban": "IBAN",
        "bic": "BIC",
        "pay_online": "Or pay online:",
        "paid_thanks": "This invoice is paid. Thank you!",
        "void": "This invoice has been cancelled (void). Nothing is due.",
        "credit_applied": "{applied} reduced the amount due of invoice {invoice}.",
        "credit_to_balance": "{amount} is added to your credit balance.",
        "page_prefix": "Page",
        "page_of": "of",
        "reverse_charge": "Reverse charge",
        "exempt": "Tax exempt",
        "outside_scope": "Outside the scope of VAT",
        "service_date": "Service date",
        "credited_invoice_date": "Invoice date",
        "seller_tax_number": "Tax number",
        "register": "Register",
        "managing_directors": "Managing directors",
        "vat": "VAT",
        "payment_terms": "Payment terms: payable without deduction within {days} days, by {due_date}.",
        "payment_terms_now": "Payment terms: payable without deduction on receipt, by {due_date}.",
        "legal_reverse_charge_eu": "Reverse charge: the recipient is liable for the VAT (Article 196, Council "
        "Directive 2006/112/EC; §13b UStG).",
        "legal_reverse_charge": "Reverse charge: the recipient is liable for the tax (§13b UStG).",
        "legal_exempt": "Exempt from VAT (Articles 132 ff., Council Directive 2006/112/EC; §4 UStG).",
        "legal_outside_scope": "Not subject to VAT in {seller_country}: the place of supply is outside the EU "
        "(Article 44, Council Directive 2006/112/EC; §3a (2) UStG).",
        "legal_intra_community": "Tax-free intra-community supply (Article 138, Council Directive 2006/112/EC; "
        "§4 No. 1b, §6a UStG).",
        "legal_export": "Tax-free export outside the EU (Article 146, Council Directive 2006/112/EC; §4 No. 1a, "
        "§6 UStG).",
        "intra_community": "Intra-community supply",
        "export": "Export",
        "phone": "Phone",
    },
    "de": {
        "invoice": "Rechnung",
        "credit_note": "Gutschrift",
        "quote": "Angebot",
        "quote_date": "Angebotsdatum",
        "valid_until": "Gültig bis",
        "starts": "Beginn des Abonnements",
        "starts_on_acceptance": "bei Annahme",
        "renewal": "Danach {amount} am {date} und in jedem weiteren Zeitraum",
        "quote_note": "Nehmen Sie dieses Angebot in Ihrem Kundenportal an: {url}",
        "first_invoice": "Summe der ersten Rechnung",
        "draft": "ENTWURF — keine gültige Rechnung",
        "number": "Nummer",
        "issue_date": "Rechnungsdatum",
        "due_date": "Fällig am",
        "period": "Leistungszeitraum",
        "credited_invoice": "Zu Rechnung",
        "reason": "Grund",
        "customer_tax_id": "USt-IdNr. Kunde",
        "seller_tax_id": "USt-IdNr.",
        "bill_to": "Rechnungsempfänger",
        "pos": "Pos.",
        "description": "Beschreibung",
        "quantity": "Menge",
        "unit_price": "Einzelpreis",
        "tax": "USt.",
        "amount": "Betrag",
        "discount": "Rabatt",
        "subtotal": "Zwischensumme",
        "net_total": "Nettobetrag",
        "account_total": "Summe {name}",
        "account_net_tax": "netto {net}, USt. {tax}",
        "tax_on": "{name} auf {taxable}",
        "tax_included": "enth.",
        "total": "Gesamtbetrag",
        "amount_paid": "Bezahlt",
        "amount_credited": "Gutgeschrieben",
        "amount_due": "Offener Betrag",
        "credit_total": "Gutschriftsbetrag",
        "payment": "Zahlung",
        "pay_by_transfer": "Bitte überweisen Sie {amount} bis {due_date} unter Angabe von {number} an:",
        "bank": "Bank",
        "iban": "IBAN",
        "bic": "BIC",
        "pay_online": "Oder online bezahlen:",
        "paid_thanks": "Diese Rechnung ist bezahlt. Vielen Dank!",
        "void": "Diese Rechnung wurde storniert. Es ist nichts zu zahlen.",
        "credit_applied": "{applied} wurden mit Rechnung {invoice} verrechnet.",
        "credit_to_balance": "{amount} werden Ihrem Guthaben gutgeschrieben.",
        "page_prefix": "Seite",
        "page_of": "von",
        "reverse_charge": "Steuerschuldnerschaft des Leistungsempfängers",
        "exempt": "Steuerbefreit",
        "outside_scope": "Nicht im Inland steuerbar",
        "service_date": "Leistungsdatum",
        "credited_invoice_date": "Rechnungsdatum",
        "seller_tax_number": "Steuernummer",
        "register": "Registergericht",
        "managing_directors": "Geschäftsführung",
        "vat": "USt.",
        "payment_terms": "Zahlungsbedingungen: zahlbar ohne Abzug innerhalb von {days} Tagen, bis {due_date}.",
        "payment_terms_now": "Zahlungsbedingungen: zahlbar ohne Abzug sofort nach Erhalt, bis {due_date}.",
        "legal_reverse_charge_eu": "Steuerschuldnerschaft des Leistungsempfängers (§13b UStG; Art. 196 "
        "MwStSystRL 2006/112/EG).",
        "legal_reverse_charge": "Steuerschuldnerschaft des Leistungsempfängers (§13b UStG).",
        "legal_exempt": "Steuerfreie Leistung (§4 UStG; Art. 132 ff. MwStSystRL 2006/112/EG).",
        "legal_outside_scope": "Nicht im Inland steuerbare Leistung: Leistungsort außerhalb der EU (§3a Abs. 2 "
        "UStG; Art. 44 MwStSystRL 2006/112/EG).",
        "legal_intra_community": "Steuerfreie innergemeinschaftliche Lieferung (§4 Nr. 1b, §6a UStG; Art. 138 "
        "MwStSystRL 2006/112/EG).",
        "legal_export": "Steuerfreie Ausfuhrlieferung (§4 Nr. 1a, §6 UStG; Art. 146 MwStSystRL 2006/112/EG).",
        "intra_community": "Innergemeinschaftliche Lieferung",
        "export": "Ausfuhr",
        "phone": "Telefon",
    },
    "fr": {
        "invoice": "Facture",
        "credit_note": "Avoir",
        "quote": "Devis",
        "quote_date": "Date du devis",
        "valid_until": "Valable jusqu'au",
        "starts": "Début de l'abonnement",
        "starts_on_acceptance": "à l'acceptation",
        "renewal": "Ensuite {amount} le {date}, puis à chaque période",
        "quote_note": "Acceptez ce devis dans votre espace client : {url}",
        "first_invoice": "Total de la première facture",
        "draft": "BROUILLON — facture non valable",
        "number": "Numéro",
        "issue_date": "Date de facture",
        "due_date": "Date d’échéance",
        "period": "Période de prestation",
        "credited_invoice": "Facture rectifiée",
        "reason": "Motif",
        "customer_tax_id": "N° TVA client",
        "seller_tax_id": "N° TVA",
        "bill_to": "Facturer à",
        "pos": "N°",
        "description": "Désignation",
        "quantity": "Qté",
        "unit_price": "Prix unitaire",
        "tax": "TVA",
        "amount": "Montant",
        "discount": "Remise",
        "subtotal": "Sous-total",
        "net_total": "Total HT",
        "account_total": "Total {name}",
        "account_net_tax": "HT {net}, TVA {tax}",
        "tax_on": "{name} sur {taxable}",
        "tax_included": "incl.",
        "total": "Total TTC",
        "amount_paid": "Montant payé",
        "amount_credited": "Montant crédité",
        "amount_due": "Montant dû",
        "credit_total": "Total crédité",
        "payment": "Paiement",
        "pay_by_transfer": "Veuillez virer {amount} avant le {due_date}, en indiquant la référence {number}, à :",
        "bank": "Banque",
        "iban": "IBAN",
        "bic": "BIC",
        "pay_online": "Ou payez en ligne :",
        "paid_thanks": "Cette facture est payée. Merci !",
        "void": "Cette facture a été annulée. Aucun montant n’est dû.",
        "credit_applied": "{applied} ont été imputés sur la facture {invoice}.",
        "credit_to_balance": "{amount} sont ajoutés à votre avoir disponible.",
        "page_prefix": "Page",
        "page_of": "sur",
        "reverse_charge": "Autoliquidation",
        "exempt": "Exonéré de TVA",
        "outside_scope": "Hors du champ d’application de la TVA",
        "service_date": "Date de prestation",
        "credited_invoice_date": "Date de la facture",
        "seller_tax_number": "Numéro fiscal",
        "register": "Registre du commerce",
        "managing_directors": "Gérants",
        "vat": "TVA",
        "payment_terms": "Conditions de paiement : payable sans escompte sous {days} jours, au plus tard le "
        "{due_date}.",
        "payment_terms_now": "Conditions de paiement : payable sans escompte à réception, au plus tard le {due_date}.",
        "legal_reverse_charge_eu": "Autoliquidation : la TVA est due par le preneur (article 196 de la directive "
        "2006/112/CE du Conseil ; §13b UStG).",
        "legal_reverse_charge": "Autoliquidation : la taxe est due par le preneur (§13b UStG).",
        "legal_exempt": "Exonération de TVA (articles 132 et suivants de la directive 2006/112/CE du Conseil ; "
        "§4 UStG).",
        "legal_outside_scope": "Non soumis à la TVA ({seller_country}) : le lieu de la prestation est situé hors de "
        "l’UE (article 44 de la directive 2006/112/CE du Conseil ; §3a (2) UStG).",
        "legal_intra_community": "Livraison intracommunautaire exonérée (article 138 de la directive 2006/112/CE du "
        "Conseil ; §4 n° 1b, §6a UStG).",
        "legal_export": "Exportation exonérée hors de l’UE (article 146 de la directive 2006/112/CE du Conseil ; "
        "§4 n° 1a, §6 UStG).",
        "intra_community": "Livraison intracommunautaire",
        "export": "Exportation",
        "phone": "Téléphone",
    },
    "es": {
        "invoice": "Factura",
        "credit_note": "Factura rectificativa",
        "quote": "Presupuesto",
        "quote_date": "Fecha del presupuesto",
        "valid_until": "Válido hasta",
        "starts": "Inicio de la suscripción",
        "starts_on_acceptance": "al aceptarlo",
        "renewal": "Después {amount} el {date} y en cada periodo siguiente",
        "quote_note": "Acepte este presupuesto en su portal de cliente: {url}",
        "first_invoice": "Total de la primera factura",
        "draft": "BORRADOR — no es una factura válida",
        "number": "Número",
        "issue_date": "Fecha de emisión",
        "due_date": "Fecha de vencimiento",
        "period": "Periodo de prestación",
        "credited_invoice": "Factura rectificada",
        "reason": "Motivo",
        "customer_tax_id": "NIF-IVA del cliente",
        "seller_tax_id": "NIF-IVA",
        "bill_to": "Facturar a",
        "pos": "N.º",
        "description": "Descripción",
        "quantity": "Cant.",
        "unit_price": "Precio unitario",
        "tax": "IVA",
        "amount": "Importe",
        "discount": "Descuento",
        "subtotal": "Subtotal",
        "net_total": "Base imponible",
        "account_total": "Total {name}",
        "account_net_tax": "base {net}, IVA {tax}",
        "tax_on": "{name} sobre {taxable}",
        "tax_included": "incl.",
        "total": "Total",
        "amount_paid": "Importe pagado",
        "amount_credited": "Importe abonado",
        "amount_due": "Importe pendiente",
        "credit_total": "Total abonado",
        "payment": "Pago",
        "pay_by_transfer": "Le rogamos transfiera {amount} antes del {due_date}, indicando {number}, a:",
        "bank": "Banco",
        "iban": "IBAN",
        "bic": "BIC",
        "pay_online": "O pague en línea:",
        "paid_thanks": "Esta factura está pagada. ¡Muchas gracias!",
        "void": "Esta factura ha sido anulada. No hay importe pendiente.",
        "credit_applied": "{applied} se han compensado con la factura {invoice}.",
        "credit_to_balance": "{amount} se añaden a su saldo a favor.",
        "page_prefix": "Página",
        "page_of": "de",
        "reverse_charge": "Inversión del sujeto pasivo",
        "exempt": "Exento de IVA",
        "outside_scope": "No sujeto a IVA",
        "service_date": "Fecha de prestación",
        "credited_invoice_date": "Fecha de la factura",
        "seller_tax_number": "Número fiscal",
        "register": "Registro mercantil",
        "managing_directors": "Administradores",
        "vat": "IVA",
        "payment_terms": "Condiciones de pago: pagadero sin deducción en un plazo de {days} días, hasta el {due_date}.",
        "payment_terms_now": "Condiciones de pago: pagadero sin deducción a la recepción, hasta el {due_date}.",
        "legal_reverse_charge_eu": "Inversión del sujeto pasivo: el destinatario es el deudor del IVA (artículo 196 "
        "de la Directiva 2006/112/CE del Consejo; §13b UStG).",
        "legal_reverse_charge": "Inversión del sujeto pasivo: el destinatario es el deudor del impuesto (§13b UStG).",
        "legal_exempt": "Exento de IVA (artículos 132 y siguientes de la Directiva 2006/112/CE del Consejo; §4 UStG).",
        "legal_outside_scope": "No sujeto a IVA en {seller_country}: el lugar de prestación está fuera de la UE "
        "(artículo 44 de la Directiva 2006/112/CE del Consejo; §3a (2) UStG).",
        "legal_intra_community": "Entrega intracomunitaria exenta (artículo 138 de la Directiva 2006/112/CE del "
        "Consejo; §4 n.º 1b, §6a UStG).",
        "legal_export": "Exportación exenta fuera de la UE (artículo 146 de la Directiva 2006/112/CE del Consejo; "
        "§4 n.º 1a, §6 UStG).",
        "intra_community": "Entrega intracomunitaria",
        "export": "Exportación",
        "phone": "Teléfono",
    },
}


def labels(language: str) -> dict[str, str]:
    return {**LABELS[DEFAULT_LANGUAGE], **LABELS[document_language(language)]}


def label(language: str, key: str, **values: Any) -> str:
    return labels(language)[key].format(**values)
