"""The portal serves the archived PDF: the newest version by default, the original on request, with the invoice's
current status beside it (the badge), never inside the file."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse

from invoicing import documents
from invoicing.models import DocumentPdf
from tests.portal.conftest import Account

pytestmark = pytest.mark.django_db


def test_the_portal_downloads_the_newest_version_and_still_offers_the_original(
    client_a: Client, account_a: Account
) -> None:
    invoice = account_a.open_invoice
    first = client_a.get(reverse("portal:invoice_pdf", args=[invoice.number]))
    original = DocumentPdf.objects.get(invoice=invoice)
    with default_storage.open(original.file.name, "rb") as handle:
        assert first.content == handle.read()
    page = client_a.get(reverse("portal:invoice_detail", args=[invoice.number])).content.decode()
    assert "Earlier versions of this PDF" not in page

    version = documents.document_pdf_render_version(invoice_id=invoice.pk, reason="Template fix")
    newest = client_a.get(reverse("portal:invoice_pdf", args=[invoice.number]))
    again = client_a.get(reverse("portal:invoice_pdf", args=[invoice.number]), {"version": "1"})
    with default_storage.open(version.file.name, "rb") as handle:
        assert newest.content == handle.read()
    assert again.content == first.content
    assert again["Content-Disposition"] == f'attachment; filename="{invoice.number}.pdf"'
    assert newest["Content-Disposition"] == f'attachment; filename="{invoice.number}-v2.pdf"'
    page = client_a.get(reverse("portal:invoice_detail", args=[invoice.number])).content.decode()
    assert "Earlier versions of this PDF" in page and "?version=1" in page
    assert client_a.get(reverse("portal:invoice_pdf", args=[invoice.number]), {"version": "x"}).status_code == 400
    assert client_a.get(reverse("portal:invoice_pdf", args=[invoice.number]), {"version": "7"}).status_code == 404
