"""Money, quantities, percentages, dates and country names as each customer language writes them
(core/formatting.py, docs/i18n.md): the currency decides the minor units (JPY 0, EUR and USD 2, BHD 3), the
language the symbol's place, the separators and the date style."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from decimal import InvalidOperation

import pytest

from core import formatting as fmt

NBSP, NNBSP = "\xa0", "\u202f"  # no-break space; narrow no-break space (French thousands separator)

MONEY = {
    # language: (USD 1234.5, EUR 874.060 as stored, JPY 3040, BHD 1234.5675 → 3 decimals, half up)
    "en": ("$1,234.50", "€874.06", "¥3,040", "BHD1,234.568"),
    "de": (f"1.234,50{NBSP}$", f"874,06{NBSP}€", f"3.040{NBSP}¥", f"1.234,568{NBSP}BHD"),
    "fr": (f"1{NNBSP}234,50{NBSP}$US", f"874,06{NBSP}€", f"3{NNBSP}040{NBSP}JPY", f"1{NNBSP}234,568{NBSP}BHD"),
    "es": (f"1.234,50{NBSP}US$", f"874,06{NBSP}€", f"3.040{NBSP}JPY", f"1.234,568{NBSP}BHD"),
}


@pytest.mark.parametrize("language", MONEY)
@pytest.mark.parametrize(
    ("index", "currency", "amount"),
    [(0, "USD", D("1234.5")), (1, "EUR", D("874.060")), (2, "JPY", D("3040")), (3, "BHD", D("1234.5675"))],
)
def test_money_per_currency_and_language(language, index, currency, amount):
    assert fmt.money(amount, currency, language) == MONEY[language][index]


def test_remembered_amounts_read_the_same_whatever_their_form():
    # the text of an amount is kept per (amount, currency, language): equal amounts written differently, in another
    # currency or language, and a rounding that differs per currency each get their own, correct text
    fmt._money.cache_clear()
    assert [fmt.money(amount, "EUR", "en") for amount in (D("1.5"), D("1.50"), D("1.500"), "1.5", 2)] == [
        "€1.50", "€1.50", "€1.50", "€1.50", "€2.00"
    ]  # fmt: skip
    assert fmt.money(D("1.5"), "JPY", "en") == "¥2" and fmt.money(D("1.5"), "EUR", "de") == f"1,50{NBSP}€"
    assert (fmt.money(D("-0.005"), "EUR", "en"), fmt.money(D("-0.005"), "BHD", "en")) == ("-€0.01", "-BHD0.005")
    assert fmt._money.cache_info().hits == 2  # 1.50 and 1.500 read 1.5's text
    with pytest.raises(InvalidOperation):
        fmt.money(D("sNaN"), "EUR", "en")  # refused, as before the cache


@pytest.mark.parametrize(
    ("language", "jpy", "eur_fraction", "eur_whole"),
    [
        ("en", "¥3,040", "€0.0125", "€31.00"),
        ("de", f"3.040{NBSP}¥", f"0,0125{NBSP}€", f"31,00{NBSP}€"),
        ("fr", f"3{NNBSP}040{NBSP}JPY", f"0,0125{NBSP}€", f"31,00{NBSP}€"),
        ("es", f"3.040{NBSP}JPY", f"0,0125{NBSP}€", f"31,00{NBSP}€"),
    ],
)
def test_unit_prices_keep_their_precision_but_never_invent_minor_units(language, jpy, eur_fraction, eur_whole):
    # Stored with six decimals: a JPY unit price printed "¥3,040.00" before.
    assert fmt.unit_price(D("3040.000000"), "JPY", language) == jpy
    assert fmt.unit_price(D("0.012500"), "EUR", language) == eur_fraction
    assert fmt.unit_price(D("31.000000"), "EUR", language) == eur_whole


@pytest.mark.parametrize(
    ("language", "whole", "fraction", "rate", "reduced"),
    [
        ("en", "1", "1,250.125", "20 %", "7.5 %"),
        ("de", "1", "1.250,125", "20 %", "7,5 %"),
        ("fr", "1", f"1{NNBSP}250,125", "20 %", "7,5 %"),
        ("es", "1", "1.250,125", "20 %", "7,5 %"),
    ],
)
def test_quantities_and_percentages_without_trailing_zeros_or_exponents(language, whole, fraction, rate, reduced):
    assert fmt.quantity(D("1.0000"), language) == whole
    assert fmt.quantity(D("1250.1250"), language) == fraction
    assert fmt.percentage(D("2E+1"), language) == rate  # how str(Decimal(20).normalize()) was stored
    assert fmt.percentage(D("7.5000"), language) == reduced


@pytest.mark.parametrize(
    ("language", "expected"),
    [("en", "Mar 2, 2026"), ("de", "02.03.2026"), ("fr", "2 mars 2026"), ("es", "2 mar 2026")],
)
def test_one_date_style_per_language(language, expected):
    assert fmt.date(dt.date(2026, 3, 2), language) == expected
    assert fmt.period(dt.date(2026, 3, 1), dt.date(2026, 4, 1), language).endswith(
        fmt.date(dt.date(2026, 3, 31), language)
    )  # the half-open period printed with its last day


@pytest.mark.parametrize(
    ("language", "germany", "belgium"),
    [
        ("en", "Germany", "Belgium"),
        ("de", "Deutschland", "Belgien"),
        ("fr", "Allemagne", "Belgique"),
        ("es", "Alemania", "Bélgica"),
    ],
)
def test_country_names_in_the_documents_language(language, germany, belgium):
    assert (fmt.country_name("DE", language), fmt.country_name("be", language)) == (germany, belgium)


def test_plain_decimal_never_writes_an_exponent():
    assert [fmt.plain_decimal(value) for value in (D("2E+1"), D("20.0000"), D("7.50"), D("0.0125"), D("-0"))] == [
        "20",
        "20",
        "7.5",
        "0.0125",
        "0",
    ]


def test_every_document_label_exists_in_every_language_and_is_translated():
    english = fmt.LABELS["en"]
    for language in fmt.SUPPORTED_LANGUAGES:
        assert set(fmt.LABELS[language]) == set(english), language
    # Labels that are the same word in English (IBAN, BIC, "Page", "Total", …) are allowed; the rest must differ.
    same_word = {
        "iban",
        "bic",
        "page_prefix",
        "total",
        "account_total",
        "subtotal",
        "bank",
        "tax_included",
        "phone",
        "number",
    }
    for language in ("de", "fr", "es"):
        untranslated = [
            key for key, text in fmt.LABELS[language].items() if text == english[key] and key not in same_word
        ]
        assert untranslated == [], (language, untranslated)


def test_an_unknown_language_falls_back_to_english():
    assert fmt.document_language("pt-BR") == "en"
    assert fmt.document_language("fr-CA") == "fr"
    assert fmt.money(D("5"), "EUR", "pt") == "€5.00"
