"""DATEV export (docs/decisions/datev.md): the "Buchungsstapel" (bookings, EXTF data category 21, format version 13)
and the "Debitoren/Kreditoren" master data (category 16, format version 5) of a period, as a German tax adviser
imports them into DATEV Kanzlei-Rechnungswesen.

File shape (DATEV's "DATEV-Format" description, header version 700): line 1 the header record, line 2 the
column headings, then one booking (or one account) per line; ``;`` separated, text in double quotes (a quote
doubled), numbers with a decimal comma and no thousands separator, dates as digits (Belegdatum DDMM, others
DDMMYYYY), CRLF line ends, Windows-1252 (a character it cannot hold becomes ``?``). Every column of the format is
written, empty where we have nothing, because DATEV reads by position.

Bookings (one per line, Konto against Gegenkonto, the amount always positive with S/H for Konto's side):
- invoice: per tax key of its lines (category and rate: ``S19``, ``AA7``, ``AE`` …) the gross amount, the
  customer's debitor account (S) against the revenue account of the tax key, BU key from ``DATEV["bu_keys"]``
  (empty with DATEV's automatic accounts, which compute the VAT themselves); Belegfeld 1 the invoice number,
  Leistungsdatum the earliest service period start (else the issue date), Fälligkeit the due date;
- credit note: the same with H (the debitor credited);
- payment: bank (S) against the debitor per invoice it settled (Belegfeld 1 the invoice number, so DATEV's open
  item matching finds it) and for the part that became customer credit (Belegfeld 1 the payment's ``PAY-`` id);
- refund: the debitor (S) against the bank;
- a document in another currency than the company's carries WKZ Umsatz, Kurs (units per company-currency unit,
  the stored rate of the document's date) and Basis-Umsatz / WKZ Basis-Umsatz in the company currency (the
  invoice's tax groups adjusted so they add up to its total converted once, like the journal); a payment that
  settles such an invoice at another rate books the realised difference between the debitor and the FX gain or
  loss account, in the company currency.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from accounting.journal_fx import LazyRates
from accounting.rates import RateMissing
from core.csv_safe import safe_cell
from core.dates import billing_date_of, billing_tz
from core.money import round_amount
from customers.models import Customer
from invoicing.models import InvoiceStatus
from reporting.exports import (
    ExportError,
    ExportSummary,
    TextSink,
    _contact_name,
    export_credit_notes,
    export_invoices,
    export_payments,
    export_refunds,
    payment_number,
)

ZERO = Decimal(0)

# --- the published column lists (pinned in tests/reporting/test_datev.py) -----------------------------------

BUCHUNGSSTAPEL_COLUMNS: tuple[str, ...] = (
    "Umsatz (ohne Soll/Haben-Kz)",
    "Soll/Haben-Kennzeichen",
    "WKZ Umsatz",
    "Kurs",
    "Basis-Umsatz",
    "WKZ Basis-Umsatz",
    "Konto",
    "Gegenkonto (ohne BU-Schlüssel)",
    "BU-Schlüssel",
    "Belegdatum",
    "Belegfeld 1",
    "Belegfeld 2",
    "Skonto",
    "Buchungstext",
    "Postensperre",
    "Diverse Adressnummer",
    "Geschäftspartnerbank",
    "Sachverhalt",
    "Zinssperre",
    "Beleglink",
    *(f"Beleginfo - {part} {n}" for n in range(1, 9) for part in ("Art", "Inhalt")),
    "KOST1 - Kostenstelle",
    "KOST2 - Kostenstelle",
    "Kost-Menge",
    "EU-Land u. UStID (Bestimmung)",
    "EU-Steuersatz (Bestimmung)",
    "Abw. Versteuerungsart",
    "Sachverhalt L+L",
    "Funktionsergänzung L+L",
    "BU 49 Hauptfunktionstyp",
    "BU 49 Hauptfunktionsnummer",
    "BU 49 Funktionsergänzung",
    # DATEV's own spelling: "Art" with a space before the dash, "Inhalt" without
    *(name for n in range(1, 21) for name in (f"Zusatzinformation - Art {n}", f"Zusatzinformation- Inhalt {n}")),
    "Stück",
    "Gewicht",
    "Zahlweise",
    "Forderungsart",
    "Veranlagungsjahr",
    "Zugeordnete Fälligkeit",
    "Skontotyp",
    "Auftragsnummer",
    "Buchungstyp",
    "USt-Schlüssel (Anzahlungen)",
    "EU-Land (Anzahlungen)",
    "Sachverhalt L+L (Anzahlungen)",
    "EU-Steuersatz (Anzahlungen)",
    "Erlöskonto (Anzahlungen)",
    "Herkunft-Kz",
    "Buchungs GUID",
    "KOST-Datum",
    "SEPA-Mandatsreferenz",
    "Skontosperre",
    "Gesellschaftername",
    "Beteiligtennummer",
    "Identifikationsnummer",
    "Zeichnernummer",
    "Postensperre bis",
    "Bezeichnung SoBil-Sachverhalt",
    "Kennzeichen SoBil-Buchung",
    "Festschreibung",
    "Leistungsdatum",
    "Datum Zuord. Steuerperiode",
    "Fälligkeit",
    "Generalumkehr (GU)",
    "Steuersatz",
    "Land",
    "Abrechnungsreferenz",
    "BVV-Position",
    "EU-Land u. UStID (Ursprung)",
    "EU-Steuersatz (Ursprung)",
    "Abw. Skontokonto",
)


def _bank_columns(n: int, *, valid: str) -> tuple[str, ...]:
    """One of the ten bank connections of an account (DATEV's spelling of "gültig" varies between them)."""
    return (
        f"Bankleitzahl {n}",
        f"Bankbezeichnung {n}",
        f"Bankkonto-Nummer {n}",
        f"Länderkennzeichen {n}",
        f"IBAN {n}",
        "Leerfeld",
        f"SWIFT-Code {n}",
        f"Abw. Kontoinhaber {n}",
        f"Kennz. Haupt-Bankverb. {n}",
        f"{valid} {n} Gültig von" if n in (1, 4) else f"{valid} {n} gültig von",
        f"{valid} {n} Gültig bis" if n in (1, 4) else f"{valid} {n} gültig bis",
    )


DEBITOREN_COLUMNS: tuple[str, ...] = (
    "Konto",
    "Name (Adressatentyp Unternehmen)",
    "Unternehmensgegenstand",
    "Name (Adressatentyp natürl. Person)",
    "Vorname (Adressatentyp natürl. Person)",
    "Name (Adressatentyp keine Angabe)",
    "Adressatentyp",
    "Kurzbezeichnung",
    "EU-Land",
    "EU-USt-IdNr.",
    "Anrede",
    "Titel/Akad. Grad",
    "Adelstitel",
    "Namensvorsatz",
    "Adressart",
    "Straße",
    "Postfach",
    "Postleitzahl",
    "Ort",
    "Land",
    "Versandzusatz",
    "Adresszusatz",
    "Abweichende Anrede",
    "Abw. Zustellbezeichnung 1",
    "Abw. Zustellbezeichnung 2",
    "Kennz. Korrespondenzadresse",
    "Adresse gültig von",
    "Adresse gültig bis",
    "Telefon",
    "Bemerkung (Telefon)",
    "Telefon Geschäftsleitung",
    "Bemerkung (Telefon GL)",
    "E-Mail",
    "Bemerkung (E-Mail)",
    "Internet",
    "Bemerkung (Internet)",
    "Fax",
    "Bemerkung (Fax)",
    "Sonstige",
    "Bemerkung (Sonstige)",
    *(column for n in range(1, 6) for column in _bank_columns(n, valid="Bankverb.")),
    "Leerfeld",
    "Briefanrede",
    "Grußformel",
    "Kundennummer",
    "Steuernummer",
    "Sprache",
    "Ansprechpartner",
    "Vertreter",
    "Sachbearbeiter",
    "Diverse-Konto",
    "Ausgabeziel",
    "Währungssteuerung",
    "Kreditlimit (Debitor)",
    "Zahlungsbedingung",
    "Fälligkeit in Tagen (Debitor)",
    "Skonto in Prozent (Debitor)",
    "Kreditoren-Ziel 1 (Tage)",
    "Kreditoren-Skonto 1 (%)",
    "Kreditoren-Ziel 2 (Tage)",
    "Kreditoren-Skonto 2 (%)",
    "Kreditoren-Ziel 3 Brutto (Tage)",
    "Kreditoren-Ziel 4 (Tage)",
    "Kreditoren-Skonto 4 (%)",
    "Kreditoren-Ziel 5 (Tage)",
    "Kreditoren-Skonto 5 (%)",
    "Mahnung",
    "Kontoauszug",
    "Mahntext 1",
    "Mahntext 2",
    "Mahntext 3",
    "Kontoauszugstext",
    "Mahnlimit Betrag",
    "Mahnlimit %",
    "Zinsberechnung",
    "Mahnzinssatz 1",
    "Mahnzinssatz 2",
    "Mahnzinssatz 3",
    "Lastschrift",
    "Verfahren",
    "Mandantenbank",
    "Zahlungsträger",
    *(f"Indiv. Feld {n}" for n in range(1, 16)),
    "Abweichende Anrede (Rechnungsadresse)",
    "Adressart (Rechnungsadresse)",
    "Straße (Rechnungsadresse)",
    "Postfach (Rechnungsadresse)",
    "Postleitzahl (Rechnungsadresse)",
    "Ort (Rechnungsadresse)",
    "Land (Rechnungsadresse)",
    "Versandzusatz (Rechnungsadresse)",
    "Adresszusatz (Rechnungsadresse)",
    "Abw. Zustellbezeichnung 1 (Rechnungsadresse)",
    "Abw. Zustellbezeichnung 2 (Rechnungsadresse)",
    "Adresse Gültig von (Rechnungsadresse)",
    "Adresse Gültig bis (Rechnungsadresse)",
    *(column for n in range(6, 11) for column in _bank_columns(n, valid="Bankverb")),
    "Nummer Fremdsystem",
    "Insolvent",
    *(f"SEPA-Mandatsreferenz {n}" for n in range(1, 11)),
    "Verknüpftes OPOS-Konto",
    "Mahnsperre bis",
    "Lastschriftsperre bis",
    "Zahlungssperre bis",
    "Gebührenberechnung",
    "Mahngebühr 1",
    "Mahngebühr 2",
    "Mahngebühr 3",
    "Pauschalberechnung",
    "Verzugspauschale 1",
    "Verzugspauschale 2",
    "Verzugspauschale 3",
    "Alternativer Suchname",
    "Status",
    "Anschrift manuell geändert (Korrespondenzadresse)",
    "Anschrift individuell (Korrespondenzadresse)",
    "Anschrift manuell geändert (Rechnungsadresse)",
    "Anschrift individuell (Rechnungsadresse)",
    "Fristberechnung bei Debitor",
    "Mahnfrist 1",
    "Mahnfrist 2",
    "Mahnfrist 3",
    "Letzte Frist",
)

_B = {name: index for index, name in enumerate(BUCHUNGSSTAPEL_COLUMNS)}
_D = {name: index for index, name in enumerate(DEBITOREN_COLUMNS)}

# --- configuration -----------------------------------------------------------------------------------------

# Revenue accounts per tax key for the two standard charts: DATEV "automatic" accounts (AM) where one exists, which
# derive the VAT themselves, so no BU key is needed. The adviser may prefer others: DATEV["revenue_accounts"].
CHART_DEFAULTS: dict[str, dict[str, Any]] = {
    "SKR03": {
        "bank": "1200",
        "fx_gain": "2660",  # Erträge aus Kursdifferenzen
        "fx_loss": "2150",  # Aufwendungen aus Kursdifferenzen
        "revenue_accounts": {
            "S19": "8400",  # Erlöse 19 % USt (AM)
            "AA7": "8300",  # Erlöse 7 % USt (AM)
            "Z": "8200",  # Erlöse (no VAT)
            "E": "8100",  # Steuerfreie Umsätze § 4 Nr. 8 ff. UStG
            "AE": "8336",  # Erlöse aus im anderen EU-Land steuerpflichtigen sonstigen Leistungen (§ 13b)
            "K": "8125",  # Steuerfreie innergemeinschaftliche Lieferungen § 4 Nr. 1b UStG
            "G": "8120",  # Steuerfreie Umsätze § 4 Nr. 1a UStG (Ausfuhr Drittland)
            "O": "8338",  # Erlöse aus im Drittland steuerbaren Leistungen, im Inland nicht steuerbar
        },
    },
    "SKR04": {
        "bank": "1800",
        "fx_gain": "4840",
        "fx_loss": "6880",
        "revenue_accounts": {
            "S19": "4400",
            "AA7": "4300",
            "Z": "4200",
            "E": "4100",
            "AE": "4336",
            "K": "4125",
            "G": "4120",
            "O": "4338",
        },
    },
}


@dataclass(frozen=True)
class DatevSettings:
    consultant_number: int
    client_number: int
    chart: str
    account_length: int
    fiscal_year_start_month: int
    revenue_accounts: dict[str, str]
    bu_keys: dict[str, str]
    bank: str
    fx_gain: str
    fx_loss: str
    lock: bool  # Festschreibung: the adviser's import locks the batch
    origin: str  # Herkunft (2 characters)

    @property
    def skr(self) -> str:
        return self.chart[-2:]

    def debitor_account(self, customer_id: int) -> str:
        """Personal accounts have one digit more than general ledger accounts; debitors start at 10000 (with
        account length 4) and end below the creditors' 70000."""
        first = 10**self.account_length
        account = first + customer_id
        if account >= 7 * first:
            raise ExportError(
                f"customer {customer_id} has no DATEV debitor number below {7 * first} (account length "
                f"{self.account_length}): raise DATEV['account_length']",
                field="DATEV",
            )
        return str(account)


def datev_settings() -> DatevSettings:
    configured: dict[str, Any] = getattr(settings, "DATEV", None) or {}
    chart = str(configured.get("chart", "SKR03")).upper()
    if chart not in CHART_DEFAULTS:
        raise ExportError(f"DATEV['chart'] is {chart!r}: choose SKR03 or SKR04", field="DATEV")
    defaults = CHART_DEFAULTS[chart]
    length = int(configured.get("account_length", 4))
    if not 4 <= length <= 8:
        raise ExportError(f"DATEV['account_length'] is {length}: DATEV allows 4 to 8", field="DATEV")
    return DatevSettings(
        consultant_number=int(configured.get("consultant_number", 1001)),
        client_number=int(configured.get("client_number", 1)),
        chart=chart,
        account_length=length,
        fiscal_year_start_month=int(configured.get("fiscal_year_start_month", 1)),
        revenue_accounts={**defaults["revenue_accounts"], **configured.get("revenue_accounts", {})},
        bu_keys={str(key): str(value) for key, value in configured.get("bu_keys", {}).items()},
        bank=str(configured.get("bank", defaults["bank"])),
        fx_gain=str(configured.get("fx_gain", defaults["fx_gain"])),
        fx_loss=str(configured.get("fx_loss", defaults["fx_loss"])),
        lock=bool(configured.get("lock", False)),
        origin=str(configured.get("origin", "RE"))[:2],
    )


def tax_key(category: str, percentage: Decimal) -> str:
    """``S19``, ``AA7``: rated categories with their rate; the others (AE, K, G, E, O, Z) alone."""
    if category in ("S", "AA"):
        normalized = percentage.normalize()
        return f"{category}{normalized:f}".replace(".", ",")
    return category


# --- cells --------------------------------------------------------------------------------------------------


class Text(str):
    """A text cell: written in double quotes."""


def _text(value: str, length: int) -> Text:
    return Text(safe_cell(" ".join(str(value).split()))[:length])


def _number(value: Decimal) -> str:
    """Decimal comma, no thousands separator, as many decimals as the amount has (EUR 2, JPY 0)."""
    return f"{value:f}".replace(".", ",")


def _rate(value: Decimal) -> str:
    normalized = value.normalize()
    return _number(normalized.quantize(Decimal(1)) if normalized == normalized.to_integral() else normalized)


def _ddmm(day: dt.date) -> str:
    return day.strftime("%d%m")


def _ddmmyyyy(day: dt.date) -> str:
    return day.strftime("%d%m%Y")


def _cp1252(text: str) -> str:
    return text.encode("cp1252", errors="replace").decode("cp1252")


def _line(cells: Iterable[Any]) -> str:
    out = []
    for cell in cells:
        if isinstance(cell, Text):
            out.append('"' + cell.replace('"', '""') + '"')
        elif cell is None:
            out.append("")
        else:
            out.append(str(cell))
    return _cp1252(";".join(out)) + "\r\n"


# --- header ------------------------------------------------------------------------------------------------


def fiscal_year_start(day: dt.date, *, month: int) -> dt.date:
    start = dt.date(day.year, month, 1)
    return start if start <= day else dt.date(day.year - 1, month, 1)


def _created() -> str:
    now = timezone.now().astimezone(billing_tz())
    return now.strftime("%Y%m%d%H%M%S") + f"{now.microsecond // 1000:03d}"


def header_record(
    *,
    config: DatevSettings,
    category: int,
    name: str,
    version: int,
    date_from: dt.date | None,
    date_to: dt.date | None,
    label: str,
    exported_by: str,
) -> list[Any]:
    """The 31 fields of the header record (line 1)."""
    bookings = category == 21
    start = fiscal_year_start(date_from or timezone.localdate(), month=config.fiscal_year_start_month)
    return [
        Text("EXTF"),  # 1 DATEV-Formatkennzeichen (EXTF: written by a non-DATEV program)
        700,  # 2 Versionsnummer of the header
        category,  # 3 Formatkategorie (21 Buchungsstapel, 16 Debitoren/Kreditoren)
        Text(name),  # 4 Formatname
        version,  # 5 Formatversion
        _created(),  # 6 Erzeugt am (YYYYMMDDHHMMSSFFF)
        None,  # 7 Importiert (DATEV fills it)
        Text(config.origin),  # 8 Herkunft
        _text(exported_by, 25),  # 9 Exportiert von
        None,  # 10 Importiert von
        config.consultant_number,  # 11 Berater
        config.client_number,  # 12 Mandant
        start.strftime("%Y%m%d"),  # 13 WJ-Beginn
        config.account_length,  # 14 Sachkontenlänge
        date_from.strftime("%Y%m%d") if bookings and date_from else None,  # 15 Datum vom
        date_to.strftime("%Y%m%d") if bookings and date_to else None,  # 16 Datum bis
        _text(label, 30),  # 17 Bezeichnung
        Text(""),  # 18 Diktatkürzel
        1 if bookings else None,  # 19 Buchungstyp (1 Finanzbuchführung)
        0 if bookings else None,  # 20 Rechnungslegungszweck (0 unabhängig)
        (1 if config.lock else 0) if bookings else None,  # 21 Festschreibung
        Text(settings.COMPANY_CURRENCY) if bookings else Text(""),  # 22 WKZ
        None,  # 23 reserviert
        Text(""),  # 24 Derivatskennzeichen
        None,  # 25 reserviert
        None,  # 26 reserviert
        Text(config.skr),  # 27 SKR
        None,  # 28 Branchen-Lösungs-ID
        None,  # 29 reserviert
        None,  # 30 reserviert
        Text(""),  # 31 Anwendungsinformation
    ]


# --- bookings ----------------------------------------------------------------------------------------------


@dataclass
class _Booking:
    amount: Decimal  # positive, in ``currency``
    side: str  # S or H, of ``account``
    currency: str
    account: str
    contra: str
    date: dt.date
    document: str
    text: str
    base: Decimal | None = None  # in the company currency, for a foreign-currency amount
    rate: Decimal | None = None
    bu_key: str = ""
    service_date: dt.date | None = None
    due_date: dt.date | None = None
    reference: str = ""  # Belegfeld 2

    def cells(self, *, company: str) -> list[Any]:
        row: list[Any] = [None] * len(BUCHUNGSSTAPEL_COLUMNS)
        row[_B["Umsatz (ohne Soll/Haben-Kz)"]] = _number(round_amount(self.amount, self.currency))
        row[_B["Soll/Haben-Kennzeichen"]] = Text(self.side)
        row[_B["WKZ Umsatz"]] = Text(self.currency)
        if self.currency != company and self.base is not None and self.rate is not None:
            row[_B["Kurs"]] = _rate(self.rate)
            row[_B["Basis-Umsatz"]] = _number(round_amount(self.base, company))
            row[_B["WKZ Basis-Umsatz"]] = Text(company)
        row[_B["Konto"]] = self.account
        row[_B["Gegenkonto (ohne BU-Schlüssel)"]] = self.contra
        row[_B["BU-Schlüssel"]] = Text(self.bu_key)
        row[_B["Belegdatum"]] = _ddmm(self.date)
        row[_B["Belegfeld 1"]] = _text(self.document, 36)
        row[_B["Belegfeld 2"]] = _text(self.reference, 12)
        row[_B["Buchungstext"]] = _text(self.text, 60)
        row[_B["Leistungsdatum"]] = _ddmmyyyy(self.service_date) if self.service_date else None
        row[_B["Fälligkeit"]] = _ddmmyyyy(self.due_date) if self.due_date else None
        return row


def _signed(amount: Decimal, positive: str, negative: str) -> tuple[Decimal, str]:
    return (amount, positive) if amount >= 0 else (-amount, negative)


def _converted_groups(
    groups: dict[str, Decimal], *, total: Decimal, currency: str, day: dt.date, rates: LazyRates
) -> dict[str, Decimal]:
    """Each group's company-currency amount; the largest takes the difference to the total converted once, so
    the debitor carries exactly what the journal's receivable line carries."""
    converted = {key: rates.convert(amount, currency, day) for key, amount in groups.items()}
    if converted:
        largest = max(groups, key=lambda key: abs(groups[key]))
        converted[largest] += rates.convert(total, currency, day) - sum(converted.values(), ZERO)
    return converted


def _document_bookings(
    *,
    lines: Iterable[Any],
    kind: str,
    document: Any,
    debitor: str,
    config: DatevSettings,
    rates: LazyRates,
    text: str,
    due_date: dt.date | None,
    service_date: dt.date,
) -> list[_Booking]:
    groups: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for line in lines:
        groups[tax_key(line.tax_category, line.tax_percentage)] += line.net_amount + line.tax_amount
    currency, day = document.currency, document.issue_date
    base = _converted_groups(dict(groups), total=document.total, currency=currency, day=day, rates=rates)
    bookings = []
    for key, gross in groups.items():
        gross = round_amount(gross, currency)
        if not gross:
            continue
        if key not in config.revenue_accounts:
            raise ExportError(
                f"{kind} {document.number}: no DATEV revenue account for tax {key}: add it to "
                f"DATEV['revenue_accounts']",
                field="DATEV",
            )
        positive, negative = ("S", "H") if kind == "invoice" else ("H", "S")
        amount, side = _signed(gross, positive, negative)
        base_amount = abs(base[key])
        bookings.append(
            _Booking(
                amount=amount,
                side=side,
                currency=currency,
                account=debitor,
                contra=config.revenue_accounts[key],
                date=day,
                document=document.number,
                text=text,
                base=base_amount,
                rate=rates.rate(currency, day),
                bu_key=config.bu_keys.get(key, ""),
                service_date=service_date,
                due_date=due_date,
            )
        )
    return bookings


def _service_start(lines: Iterable[Any], fallback: dt.date) -> dt.date:
    starts = [line.period_start for line in lines if getattr(line, "period_start", None)]
    return min(starts) if starts else fallback


def datev_bookings(*, date_from: dt.date, date_to: dt.date, summary: ExportSummary) -> Iterator[_Booking]:
    config = datev_settings()
    rates = LazyRates(date_from=date_from, date_to=date_to)
    for invoice in export_invoices(date_from=date_from, date_to=date_to).iterator(chunk_size=500):
        if invoice.status == InvoiceStatus.VOID:
            summary.skipped_void += 1
            continue
        summary.invoices += 1
        lines = list(invoice.lines.all())
        name = _contact_name(invoice.customer_snapshot, str(invoice.customer_id))
        yield from _document_bookings(
            lines=lines,
            kind="invoice",
            document=invoice,
            debitor=config.debitor_account(invoice.customer_id),
            config=config,
            rates=rates,
            text=f"{invoice.number} {name}",
            due_date=invoice.due_date,
            service_date=_service_start(lines, invoice.issue_date),  # type: ignore[arg-type]
        )
    for credit_note in export_credit_notes(date_from=date_from, date_to=date_to).iterator(chunk_size=500):
        summary.credit_notes += 1
        credit_lines = list(credit_note.lines.all())
        invoice_lines = [line.invoice_line for line in credit_lines if line.invoice_line is not None]
        name = _contact_name(credit_note.customer_snapshot, str(credit_note.customer_id))
        yield from _document_bookings(
            lines=credit_lines,
            kind="credit note",
            document=credit_note,
            debitor=config.debitor_account(credit_note.customer_id),
            config=config,
            rates=rates,
            text=f"{credit_note.number} zu {credit_note.invoice.number} {name}",
            due_date=None,
            service_date=_service_start(invoice_lines, credit_note.issue_date),
        )
    company = rates.into
    for payment in export_payments(date_from=date_from, date_to=date_to).iterator(chunk_size=500):
        summary.payments += 1
        number, day, currency = payment_number(payment), payment.received_on, payment.currency
        debitor = config.debitor_account(payment.customer_id)
        parts = [(a.amount, a.invoice) for a in payment.allocations.all()]
        leftover = payment.amount - sum((amount for amount, _ in parts), ZERO)
        for amount, invoice in [*parts, *([(leftover, None)] if leftover else [])]:
            base = rates.convert(amount, currency, day)
            yield _Booking(
                amount=amount,
                side="S",
                currency=currency,
                account=config.bank,
                contra=debitor,
                date=day,
                document=invoice.number if invoice is not None else number,
                reference=number if invoice is not None else "",
                text=f"Zahlung {number} {payment.customer.display_legal_name}",
                base=base,
                rate=rates.rate(currency, day),
            )
            if invoice is None or currency == company:
                continue
            difference = rates.convert(amount, currency, invoice.issue_date) - base  # > 0: the debitor keeps a loss
            if difference:
                loss = difference > 0
                yield _Booking(
                    amount=abs(difference),
                    side="S",
                    currency=company,
                    account=config.fx_loss if loss else debitor,
                    contra=debitor if loss else config.fx_gain,
                    date=day,
                    document=invoice.number,
                    reference=number,
                    text=f"Kursdifferenz {number} {invoice.number}",
                )
    for refund in export_refunds(date_from=date_from, date_to=date_to).iterator(chunk_size=500):
        summary.refunds += 1
        day = billing_date_of(refund.processed_at)
        yield _Booking(
            amount=refund.amount,
            side="S",
            currency=refund.currency,
            account=config.debitor_account(refund.customer_id),
            contra=config.bank,
            date=day,
            document=f"REF-{refund.pk}",
            text=f"Erstattung REF-{refund.pk} {refund.customer.display_legal_name}",
            base=rates.convert(refund.amount, refund.currency, day),
            rate=rates.rate(refund.currency, day),
        )


def _check_fiscal_year(config: DatevSettings, date_from: dt.date, date_to: dt.date) -> None:
    start = fiscal_year_start(date_from, month=config.fiscal_year_start_month)
    if fiscal_year_start(date_to, month=config.fiscal_year_start_month) != start:
        raise ExportError(
            f"a DATEV batch covers one fiscal year: {date_from}..{date_to} crosses the year starting "
            f"{fiscal_year_start(date_to, month=config.fiscal_year_start_month)}; export each year on its own",
            field="date_to",
        )


def datev_bookings_write(
    *, out: TextSink, date_from: dt.date, date_to: dt.date, exported_by: str = ""
) -> ExportSummary:
    """The Buchungsstapel of ``[date_from, date_to]`` (within one fiscal year). Rows are built before anything is
    written: a document that cannot be booked (no account for its tax, a missing rate) writes nothing."""
    config = datev_settings()
    _check_fiscal_year(config, date_from, date_to)
    summary = ExportSummary(format="datev", date_from=date_from, date_to=date_to)
    company = str(settings.COMPANY_CURRENCY)
    try:
        rows = [booking.cells(company=company) for booking in datev_bookings(
            date_from=date_from, date_to=date_to, summary=summary
        )]  # fmt: skip
    except RateMissing as exc:
        raise ExportError(str(exc), field="currency") from exc
    label = f"Buchungen {date_from:%d.%m.%y}-{date_to:%d.%m.%y}"
    out.write(
        _line(
            header_record(
                config=config,
                category=21,
                name="Buchungsstapel",
                version=13,
                date_from=date_from,
                date_to=date_to,
                label=label,
                exported_by=exported_by,
            )
        )
    )
    out.write(_line(BUCHUNGSSTAPEL_COLUMNS))
    for row in rows:
        out.write(_line(row))
    summary.rows = len(rows)
    return summary


# --- Debitoren ---------------------------------------------------------------------------------------------

EU_COUNTRIES = frozenset(
    "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split()  # noqa: SIM905
)


def datev_customers(*, date_from: dt.date, date_to: dt.date) -> list[Customer]:
    """Customers with an invoice, credit note, payment or refund in the period (the accounts the bookings use)."""
    ids: set[int] = set()
    ids.update(export_invoices(date_from=date_from, date_to=date_to).values_list("customer_id", flat=True))
    ids.update(export_credit_notes(date_from=date_from, date_to=date_to).values_list("customer_id", flat=True))
    ids.update(export_payments(date_from=date_from, date_to=date_to).values_list("customer_id", flat=True))
    ids.update(export_refunds(date_from=date_from, date_to=date_to).values_list("customer_id", flat=True))
    return list(Customer.objects.filter(pk__in=ids).order_by("pk"))


def _debitor_cells(customer: Customer, config: DatevSettings) -> list[Any]:
    row: list[Any] = [None] * len(DEBITOREN_COLUMNS)
    name = customer.display_legal_name
    country = str(customer.country or "")
    tax_id = customer.tax_id.replace(" ", "").upper()
    row[_D["Konto"]] = config.debitor_account(customer.pk)
    row[_D["Name (Adressatentyp Unternehmen)"]] = _text(name, 50)
    row[_D["Adressatentyp"]] = 2  # 2 Unternehmen (the product bills businesses and people alike)
    row[_D["Kurzbezeichnung"]] = _text(customer.name, 15)
    if tax_id[:2] in EU_COUNTRIES | {"EL"} and len(tax_id) > 2:
        row[_D["EU-Land"]] = Text(tax_id[:2])
        row[_D["EU-USt-IdNr."]] = _text(tax_id[2:], 13)
    row[_D["Adressart"]] = Text("STR")
    row[_D["Straße"]] = _text(" ".join(filter(None, (customer.address_line1, customer.address_line2))), 36)
    row[_D["Postleitzahl"]] = _text(customer.postal_code, 10)
    row[_D["Ort"]] = _text(customer.city, 30)
    row[_D["Land"]] = Text(country[:2])
    row[_D["E-Mail"]] = _text(customer.email, 60)
    row[_D["Kundennummer"]] = _text(str(customer.pk), 15)
    row[_D["Nummer Fremdsystem"]] = _text(customer.external_id or str(customer.pk), 15)
    return row


def datev_debitors_write(
    *, out: TextSink, date_from: dt.date, date_to: dt.date, exported_by: str = ""
) -> ExportSummary:
    """The Debitoren/Kreditoren master data of the customers the period's bookings use."""
    config = datev_settings()
    customers = datev_customers(date_from=date_from, date_to=date_to)
    rows = [_debitor_cells(customer, config) for customer in customers]
    out.write(
        _line(
            header_record(
                config=config,
                category=16,
                name="Debitoren/Kreditoren",
                version=5,
                date_from=date_from,
                date_to=date_to,
                label=f"Debitoren {date_from:%d.%m.%y}-{date_to:%d.%m.%y}",
                exported_by=exported_by,
            )
        )
    )
    out.write(_line(DEBITOREN_COLUMNS))
    for row in rows:
        out.write(_line(row))
    return ExportSummary(format="datev-debitors", date_from=date_from, date_to=date_to, rows=len(rows))
