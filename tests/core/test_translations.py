"""The gettext catalogues of the customer-facing texts (locale/<lang>/LC_MESSAGES, docs/i18n.md): complete for
every customer language, and the committed .mo files compiled from the current .po files (``make messages``)."""

from __future__ import annotations

import gettext
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from django.conf import settings

from core import formatting as fmt

LOCALE = Path(settings.BASE_DIR) / "locale"
TRANSLATED = [language for language in fmt.SUPPORTED_LANGUAGES if language != fmt.DEFAULT_LANGUAGE]


def _catalog(language: str):
    with open(LOCALE / language / "LC_MESSAGES" / "django.po", "rb") as po:
        return read_po(po, locale=language)


def test_every_customer_language_has_a_catalogue_and_is_a_django_language():
    assert [code for code, _name in settings.LANGUAGES] == list(fmt.SUPPORTED_LANGUAGES)
    for language in TRANSLATED:
        assert (LOCALE / language / "LC_MESSAGES" / "django.po").exists(), language


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_is_translated_and_none_is_fuzzy(language):
    catalog = _catalog(language)
    messages = [message for message in catalog if message.id]
    assert len(messages) > 150
    assert [message.id for message in messages if not message.string] == []
    assert [message.id for message in messages if message.fuzzy] == []


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_committed_mo_file_is_compiled_from_the_current_po_file(language):
    with open(LOCALE / language / "LC_MESSAGES" / "django.mo", "rb") as mo:
        compiled = gettext.GNUTranslations(mo)
    stale = [
        message.id for message in _catalog(language) if message.id and compiled.gettext(message.id) != message.string
    ]
    assert stale == [], f"run `make messages`: {stale[:3]}"


@pytest.mark.parametrize(
    ("language", "expected"),
    [("de", "Rechnungen"), ("fr", "Factures"), ("es", "Facturas")],
)
def test_django_reads_the_catalogues(language, expected):
    from django.utils import translation

    with translation.override(language):
        assert translation.gettext("Invoices") == expected
