"""The demo's seller: a German GmbH with a complete legal identity (its VAT id, tax number and IBAN pass their
checksums, and no demo customer shares them), a logo and a footer per language. Filled in once; an edited
profile is left alone."""

from __future__ import annotations

from pathlib import Path

from django.core.files import File

from customers.models import SellerProfile

LOGO = Path(__file__).with_name("nordlicht-logo.png")

SELLER = {
    "legal_name": "Nordlicht Software GmbH",
    "address": "Speicherstadt, Am Sandtorkai 41\n20457 Hamburg",
    "country": "DE",
    "vat_id": "DE814527394",
    "tax_number": "22/815/04711",
    "register_court": "Amtsgericht Hamburg",
    "register_number": "HRB 178432",
    "managing_directors": "Katrin Albers, Dr. Malte Jessen",
    "email": "rechnung@nordlicht.example",
    "email_sender": "Nordlicht Software Billing <billing@nordlicht.example>",
    "phone": "+49 40 2846 1170",
    "website": "nordlicht.example",
    "bank_name": "Hamburger Sparkasse",
    "iban": "DE07200505500012345678",
    "bic": "HASPDEHHXXX",
    "invoice_footer": {
        "en": "Thank you for your business. Questions about this invoice: rechnung@nordlicht.example.",
        "de": "Vielen Dank für Ihren Auftrag. Fragen zur Rechnung: rechnung@nordlicht.example.",
        "fr": "Merci de votre confiance. Questions sur cette facture : rechnung@nordlicht.example.",
        "es": "Gracias por su confianza. Consultas sobre esta factura: rechnung@nordlicht.example.",
    },
}


def seed_seller() -> int:
    """Fill the seller profile when it is still empty (the migration creates the row blank)."""
    if SellerProfile.objects.filter(pk=SellerProfile.SINGLETON_PK).exclude(legal_name="").exists():
        return 0
    profile = SellerProfile(pk=SellerProfile.SINGLETON_PK, **SELLER)
    profile.full_clean(exclude=["logo"], validate_unique=False)  # the row exists (blank), we fill it
    with LOGO.open("rb") as handle:
        profile.logo.save("nordlicht-logo.png", File(handle), save=False)
    profile.save()
    return 1
