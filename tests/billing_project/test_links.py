import pytest
import time_machine

from core.links import InvalidLink, invoice_link_token, invoice_link_url, invoice_link_verify


def test_link_is_scoped_to_one_invoice_and_purpose(settings):
    settings.PORTAL_BASE_URL = "https://billing.example.com"
    url = invoice_link_url(invoice_id=42, purpose="pay")
    assert url.startswith("https://billing.example.com/portal/link/")
    link = invoice_link_verify(url.rstrip("/").rsplit("/", 1)[1])
    assert (link.invoice_id, link.purpose) == (42, "pay")


def test_tampered_link_is_refused():
    token = invoice_link_token(invoice_id=42)
    forged = invoice_link_token(invoice_id=43).split(":")[0] + ":" + token.split(":", 1)[1]
    with pytest.raises(InvalidLink, match="not valid"):
        invoice_link_verify(forged)
    with pytest.raises(InvalidLink, match="not valid"):
        invoice_link_verify(token[:-2] + "xx")


def test_link_expires(settings):
    settings.PORTAL_LINK_MAX_AGE_DAYS = 30
    with time_machine.travel("2026-01-01 12:00Z", tick=False):
        token = invoice_link_token(invoice_id=7)
    with time_machine.travel("2026-01-30 12:00Z", tick=False):
        assert invoice_link_verify(token).invoice_id == 7
    with time_machine.travel("2026-02-01 12:00Z", tick=False), pytest.raises(InvalidLink, match="expired"):
        invoice_link_verify(token)


def test_a_link_signed_with_our_key_but_without_a_timestamp_is_refused_not_a_crash():
    from django.core import signing

    from core import links

    untimed = signing.Signer(salt=links._SALT).sign_object({"i": 1, "p": "view"})
    with pytest.raises(InvalidLink):
        invoice_link_verify(untimed)
