"""Signed deep links from e-mails (invoice, reminder, payment failed) into the customer portal.

A link carries one invoice id and what it may be used for, signed with SECRET_KEY (django.core.signing) and
timestamped, so it is scoped to that invoice and expires (``PORTAL_LINK_MAX_AGE_DAYS``). The portal verifies it
with ``invoice_link_verify`` and shows that one invoice (and lets the visitor pay it) without a login; it never
grants access to anything else of the customer.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core import signing

_SALT = "billing.portal.invoice-link"
PURPOSES = ("view", "pay")


class InvalidLink(Exception):
    """The link was tampered with, has expired, or is not for this purpose."""


@dataclass(frozen=True)
class InvoiceLink:
    invoice_id: int
    purpose: str


def invoice_link_token(*, invoice_id: int, purpose: str = "view") -> str:
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}")
    return signing.TimestampSigner(salt=_SALT).sign_object({"i": invoice_id, "p": purpose}, compress=True)


def invoice_link_url(*, invoice_id: int, purpose: str = "view") -> str:
    """Absolute portal URL: ``{PORTAL_BASE_URL}/portal/link/<token>/``."""
    token = invoice_link_token(invoice_id=invoice_id, purpose=purpose)
    return f"{settings.PORTAL_BASE_URL.rstrip('/')}/portal/link/{token}/"


def invoice_link_verify(token: str, *, max_age_days: int | None = None) -> InvoiceLink:
    max_age = 86400 * (max_age_days if max_age_days is not None else settings.PORTAL_LINK_MAX_AGE_DAYS)
    try:
        value = signing.TimestampSigner(salt=_SALT).unsign_object(token, max_age=max_age)
    except signing.SignatureExpired as exc:
        raise InvalidLink("this link has expired") from exc
    except signing.BadSignature as exc:
        raise InvalidLink("this link is not valid") from exc
    if not isinstance(value, dict) or not isinstance(value.get("i"), int) or value.get("p") not in PURPOSES:
        raise InvalidLink("this link is not valid")
    return InvoiceLink(invoice_id=value["i"], purpose=value["p"])
