"""DATEV export: the published column lists pinned, a small period's Buchungsstapel compared byte for byte
(Windows-1252, `;`, decimal comma, quoted text, EXTF header), a foreign-currency invoice with its rate and base
amount and the exchange difference of its late payment, the Debitoren file, the refusals, the command and the
admin screen."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.urls import reverse

from accounting.models import ExchangeRate
from invoicing.services import credit_note_issue
from reporting.datev import BUCHUNGSSTAPEL_COLUMNS, DEBITOREN_COLUMNS
from reporting.exports import ExportError, accounting_export_write
from tests.factories import CustomerFactory, InvoiceFactory, record_payment

pytestmark = pytest.mark.django_db
MARCH_1, MARCH_31 = dt.date(2026, 3, 1), dt.date(2026, 3, 31)

# DATEV-Format, Buchungsstapel (data category 21, format version 13): the 125 column headings in their order.
PUBLISHED_BUCHUNGSSTAPEL = (
    "Umsatz (ohne Soll/Haben-Kz);Soll/Haben-Kennzeichen;WKZ Umsatz;Kurs;Basis-Umsatz;WKZ Basis-Umsatz;Konto;"
    "Gegenkonto (ohne BU-Schlüssel);BU-Schlüssel;Belegdatum;Belegfeld 1;Belegfeld 2;Skonto;Buchungstext;"
    "Postensperre;Diverse Adressnummer;Geschäftspartnerbank;Sachverhalt;Zinssperre;Beleglink;"
    "Beleginfo - Art 1;Beleginfo - Inhalt 1;Beleginfo - Art 2;Beleginfo - Inhalt 2;Beleginfo - Art 3;"
    "Beleginfo - Inhalt 3;Beleginfo - Art 4;Beleginfo - Inhalt 4;Beleginfo - Art 5;Beleginfo - Inhalt 5;"
    "Beleginfo - Art 6;Beleginfo - Inhalt 6;Beleginfo - Art 7;Beleginfo - Inhalt 7;Beleginfo - Art 8;"
    "Beleginfo - Inhalt 8;KOST1 - Kostenstelle;KOST2 - Kostenstelle;Kost-Menge;EU-Land u. UStID (Bestimmung);"
    "EU-Steuersatz (Bestimmung);Abw. Versteuerungsart;Sachverhalt L+L;Funktionsergänzung L+L;"
    "BU 49 Hauptfunktionstyp;BU 49 Hauptfunktionsnummer;BU 49 Funktionsergänzung;"
    "Zusatzinformation - Art 1;Zusatzinformation- Inhalt 1;Zusatzinformation - Art 2;Zusatzinformation- Inhalt 2;"
    "Zusatzinformation - Art 3;Zusatzinformation- Inhalt 3;Zusatzinformation - Art 4;Zusatzinformation- Inhalt 4;"
    "Zusatzinformation - Art 5;Zusatzinformation- Inhalt 5;Zusatzinformation - Art 6;Zusatzinformation- Inhalt 6;"
    "Zusatzinformation - Art 7;Zusatzinformation- Inhalt 7;Zusatzinformation - Art 8;Zusatzinformation- Inhalt 8;"
    "Zusatzinformation - Art 9;Zusatzinformation- Inhalt 9;Zusatzinformation - Art 10;"
    "Zusatzinformation- Inhalt 10;Zusatzinformation - Art 11;Zusatzinformation- Inhalt 11;"
    "Zusatzinformation - Art 12;Zusatzinformation- Inhalt 12;Zusatzinformation - Art 13;"
    "Zusatzinformation- Inhalt 13;Zusatzinformation - Art 14;Zusatzinformation- Inhalt 14;"
    "Zusatzinformation - Art 15;Zusatzinformation- Inhalt 15;Zusatzinformation - Art 16;"
    "Zusatzinformation- Inhalt 16;Zusatzinformation - Art 17;Zusatzinformation- Inhalt 17;"
    "Zusatzinformation - Art 18;Zusatzinformation- Inhalt 18;Zusatzinformation - Art 19;"
    "Zusatzinformation- Inhalt 19;Zusatzinformation - Art 20;Zusatzinformation- Inhalt 20;"
    "Stück;Gewicht;Zahlweise;Forderungsart;Veranlagungsjahr;Zugeordnete Fälligkeit;Skontotyp;Auftragsnummer;"
    "Buchungstyp;USt-Schlüssel (Anzahlungen);EU-Land (Anzahlungen);Sachverhalt L+L (Anzahlungen);"
    "EU-Steuersatz (Anzahlungen);Erlöskonto (Anzahlungen);Herkunft-Kz;Buchungs GUID;KOST-Datum;"
    "SEPA-Mandatsreferenz;Skontosperre;Gesellschaftername;Beteiligtennummer;Identifikationsnummer;"
    "Zeichnernummer;Postensperre bis;Bezeichnung SoBil-Sachverhalt;Kennzeichen SoBil-Buchung;Festschreibung;"
    "Leistungsdatum;Datum Zuord. Steuerperiode;Fälligkeit;Generalumkehr (GU);Steuersatz;Land;"
    "Abrechnungsreferenz;BVV-Position;EU-Land u. UStID (Ursprung);EU-Steuersatz (Ursprung);Abw. Skontokonto"
)


def test_the_buchungsstapel_columns_are_the_published_125():
    assert ";".join(BUCHUNGSSTAPEL_COLUMNS) == PUBLISHED_BUCHUNGSSTAPEL
    assert len(BUCHUNGSSTAPEL_COLUMNS) == 125


def test_the_debitoren_columns_follow_the_published_list():
    assert len(DEBITOREN_COLUMNS) == 254
    assert DEBITOREN_COLUMNS[:10] == (
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
    )
    assert DEBITOREN_COLUMNS[40:51] == (
        "Bankleitzahl 1",
        "Bankbezeichnung 1",
        "Bankkonto-Nummer 1",
        "Länderkennzeichen 1",
        "IBAN 1",
        "Leerfeld",
        "SWIFT-Code 1",
        "Abw. Kontoinhaber 1",
        "Kennz. Haupt-Bankverb. 1",
        "Bankverb. 1 Gültig von",
        "Bankverb. 1 Gültig bis",
    )
    assert DEBITOREN_COLUMNS[96:99] == ("Briefanrede", "Grußformel", "Kundennummer")
    assert DEBITOREN_COLUMNS[-3:] == ("Mahnfrist 2", "Mahnfrist 3", "Letzte Frist")


@pytest.fixture
def march(series, vat_de, settings):
    settings.DATEV = {"consultant_number": 29098, "client_number": 55003, "chart": "SKR03", "account_length": 4}
    ExchangeRate.objects.create(date=dt.date(2026, 3, 2), currency="USD", rate=D("1.08"))
    ExchangeRate.objects.create(date=dt.date(2026, 3, 20), currency="USD", rate=D("1.10"))
    mueller = CustomerFactory(name="Müller GmbH")
    acme = CustomerFactory(name="Acme Inc", currency="USD")
    first = InvoiceFactory(customer=mueller, lines=[{"unit_amount": D("100.00")}], finalized=dt.date(2026, 3, 2))
    InvoiceFactory(customer=acme, lines=[{"unit_amount": D("100.00")}], finalized=dt.date(2026, 3, 2))
    credit_note_issue(invoice=first, reason="Goodwill", amount=D("23.80"), issue_date=dt.date(2026, 3, 6))
    eur = record_payment(customer=mueller, amount="95.20", received_on=dt.date(2026, 3, 10))
    usd = record_payment(customer=acme, amount="119.00", received_on=dt.date(2026, 3, 20), currency="USD")
    return {"mueller": 10000 + mueller.pk, "acme": 10000 + acme.pk, "eur": f"PAY-{eur.pk}", "usd": f"PAY-{usd.pk}"}


def _row(first: str, service: str = "", due: str = "") -> str:
    """The first 14 fields as given, then the empty ones, Leistungsdatum (115th) and Fälligkeit (117th)."""
    return first + ";" * 101 + service + ";;" + due + ";" * 8


def test_a_small_period_gives_exactly_this_file(march, tmp_path):
    target = tmp_path / "EXTF_Buchungsstapel.csv"
    with time_machine.travel(dt.datetime(2026, 4, 1, 10, 0, tzinfo=dt.UTC), tick=False):
        call_command(
            "export_accounting", "--from", "2026-03-01", "--to", "2026-03-31", "--format", "datev",
            "--output", str(target),
        )  # fmt: skip
    mueller, acme, eur, usd = march["mueller"], march["acme"], march["eur"], march["usd"]
    expected = [
        '"EXTF";700;21;"Buchungsstapel";13;20260401120000000;;"RE";"manage.py";;29098;55003;20260101;4;20260301;'
        '20260331;"Buchungen 01.03.26-31.03.26";"";1;0;0;"EUR";;"";;;"03";;;;""',
        PUBLISHED_BUCHUNGSSTAPEL,
        _row(
            f'119,00;"S";"EUR";;;;{mueller};8400;"";0203;"INV-2026-000001";"";;"INV-2026-000001 Müller GmbH"',
            "02032026",
            "16032026",
        ),
        # 119 USD at 1 EUR = 1.08 USD: 110.19 EUR
        _row(
            f'119,00;"S";"USD";1,08;110,19;"EUR";{acme};8400;"";0203;"INV-2026-000002";"";;"INV-2026-000002 Acme Inc"',
            "02032026",
            "16032026",
        ),
        _row(
            f'23,80;"H";"EUR";;;;{mueller};8400;"";0603;"CN-2026-000001";"";;'
            '"CN-2026-000001 zu INV-2026-000001 Müller GmbH"',
            "06032026",
        ),
        _row(f'95,20;"S";"EUR";;;;1200;{mueller};"";1003;"INV-2026-000001";"{eur}";;"Zahlung {eur} Müller GmbH"'),
        # paid at 1.10: 108.18 EUR reach the bank, the debitor carries 110.19: 2.01 EUR exchange loss
        _row(
            f'119,00;"S";"USD";1,1;108,18;"EUR";1200;{acme};"";2003;"INV-2026-000002";"{usd}";;"Zahlung {usd} Acme Inc"'
        ),
        _row(f'2,01;"S";"EUR";;;;2150;{acme};"";2003;"INV-2026-000002";"{usd}";;"Kursdifferenz {usd} INV-2026-000002"'),
    ]
    assert target.read_bytes() == "".join(f"{line}\r\n" for line in expected).encode("cp1252")


def test_the_debitoren_file_lists_the_customers_of_the_period(march, tmp_path, settings):
    target = tmp_path / "EXTF_Debitoren.csv"
    with time_machine.travel(dt.datetime(2026, 4, 1, 10, 0, tzinfo=dt.UTC), tick=False):
        call_command(
            "export_accounting", "--from", "2026-03-01", "--to", "2026-03-31", "--format", "datev-debitors",
            "--output", str(target),
        )  # fmt: skip
    lines = target.read_bytes().decode("cp1252").split("\r\n")
    assert lines[0] == (
        '"EXTF";700;16;"Debitoren/Kreditoren";5;20260401120000000;;"RE";"manage.py";;29098;55003;20260101;4;;;'
        '"Debitoren 01.03.26-31.03.26";"";;;;"";;"";;;"03";;;;""'
    )
    assert lines[1] == ";".join(DEBITOREN_COLUMNS)
    rows = [line.split(";") for line in lines[2:] if line]
    assert len(rows) == 2 and all(len(row) == len(DEBITOREN_COLUMNS) for row in rows)
    mueller = dict(zip(DEBITOREN_COLUMNS, rows[0], strict=True))
    assert (mueller["Konto"], mueller["Name (Adressatentyp Unternehmen)"], mueller["Adressatentyp"]) == (
        str(march["mueller"]),
        '"Müller GmbH"',
        "2",
    )
    assert (mueller["Straße"], mueller["Postleitzahl"], mueller["Ort"], mueller["Land"]) == (
        '"Hauptstraße 1"',
        '"10115"',
        '"Berlin"',
        '"DE"',
    )


def test_bu_keys_and_reverse_charge_accounts_follow_the_settings(series, vat_de, settings):
    settings.DATEV = {"chart": "SKR04", "revenue_accounts": {"S19": "4200"}, "bu_keys": {"S19": "3"}}
    customer = CustomerFactory(name="Kunde")
    InvoiceFactory(customer=customer, lines=[{"unit_amount": D("10.00")}], finalized=dt.date(2026, 3, 2))
    text = _datev()
    row = text.split("\r\n")[2].split(";")
    assert row[:9] == ["11,90", '"S"', '"EUR"', "", "", "", str(10000 + customer.pk), "4200", '"3"']
    assert text.split("\r\n")[0].split(";")[26] == '"04"'


def test_a_tax_rate_without_an_account_is_refused_by_name(series, vat_at, settings):
    settings.DATEV = {}
    InvoiceFactory(customer=CustomerFactory(country="AT"), lines=[{"unit_amount": D("10.00")}], finalized=True)
    with pytest.raises(ExportError, match=r"INV-2026-000001: no DATEV revenue account for tax S20"):
        _datev()


def test_a_period_across_two_fiscal_years_is_refused(db, settings):
    settings.DATEV = {"fiscal_year_start_month": 7}
    with pytest.raises(ExportError, match="one fiscal year"):
        _datev(dt.date(2026, 6, 1), dt.date(2026, 7, 31))
    with pytest.raises(CommandError, match="one fiscal year"):
        call_command("export_accounting", "--from", "2026-06-01", "--to", "2026-07-31", "--format", "datev")


def test_the_admin_screen_downloads_the_datev_file_in_windows_1252(admin_client, march):
    response = admin_client.post(
        reverse("admin:invoicing_invoice_accounting_export"),
        {"date_from": "2026-03-01", "date_to": "2026-03-31", "format": "datev"},
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=windows-1252"
    assert 'filename="EXTF_Buchungsstapel_20260301_20260331.csv"' in response["Content-Disposition"]
    assert "Müller GmbH".encode("cp1252") in response.content


def _datev(date_from: dt.date = MARCH_1, date_to: dt.date = MARCH_31) -> str:
    import io

    out = io.StringIO()
    accounting_export_write(out=out, export_format="datev", date_from=date_from, date_to=date_to)
    return out.getvalue()
