"""The seller profile (``SellerProfile``, one row): read here by every document, e-mail and tax decision, and
frozen into each issued document by ``seller_snapshot()``. Nothing seller-specific lives in settings or
templates; a fresh installation fills the profile in the admin (Customers › Seller profile)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.urls import reverse

from core.alerts import Alert
from customers.models import SellerProfile

# The keys of a document's ``seller_snapshot``. Older documents were snapshotted with the first eight of them
# (from the SELLER settings); every reader uses ``.get`` so that both read alike.
SNAPSHOT_KEYS = (
    "legal_name",
    "address",
    "country",
    "tax_id",
    "email",
    "bank_name",
    "iban",
    "bic",
    "logo",
    "tax_number",
    "register_court",
    "register_number",
    "managing_directors",
    "phone",
    "website",
    "invoice_footer",
)


def seller_profile() -> SellerProfile:
    """The seller profile (its row is created by the migration; an empty, unsaved one if it was removed)."""
    profile = SellerProfile.objects.filter(pk=SellerProfile.SINGLETON_PK).first()
    return profile if profile is not None else SellerProfile(pk=SellerProfile.SINGLETON_PK)


def seller_snapshot(profile: SellerProfile | None = None) -> dict[str, Any]:
    """What an issued document keeps of the seller (copied at issue, never updated afterwards)."""
    profile = profile if profile is not None else seller_profile()
    return {
        "legal_name": profile.legal_name,
        "address": profile.address,
        "country": str(profile.country or ""),
        "tax_id": profile.vat_id,
        "email": profile.email,
        "bank_name": profile.bank_name,
        "iban": profile.iban,
        "bic": profile.bic,
        "logo": profile.logo.name if profile.logo else "",
        "tax_number": profile.tax_number,
        "register_court": profile.register_court,
        "register_number": profile.register_number,
        "managing_directors": profile.managing_directors,
        "phone": profile.phone,
        "website": profile.website,
        "invoice_footer": dict(profile.invoice_footer or {}),
    }


def seller_country() -> str:
    return str(seller_profile().country or "").upper()


def dashboard_alerts(*, user: Any, as_of: Any) -> list[Alert]:
    """The dashboard's operations list: a seller profile without a country (a new installation's empty row) holds
    every taxed invoice for review (``invoicing.taxes.SellerCountryMissing``); one query, shown only then, to staff
    who may change the profile (with the way to it)."""
    if not user.has_perm("customers.change_sellerprofile") or seller_country():
        return []
    note = "every taxed invoice is held for review until it is filled in"
    return [Alert("Seller profile", "no country", reverse("admin:customers_sellerprofile_changelist"), note)]


SENDER_CACHE_KEY = "seller-profile:email-sender"


def seller_from_email() -> str:
    """The From address of customer e-mails: the profile's sender, else the ``BILLING_FROM_EMAIL`` setting.
    Cached for five minutes (a dunning run queues hundreds of e-mails; saving the profile clears the key, other
    processes of a per-process cache see an edit within the five minutes)."""
    sender = cache.get(SENDER_CACHE_KEY)
    if sender is None:
        sender = seller_profile().email_sender or settings.BILLING_FROM_EMAIL
        cache.set(SENDER_CACHE_KEY, sender, 300)
    return str(sender)
