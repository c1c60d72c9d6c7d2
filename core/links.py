"""Signed deep links from e-mails (invoice, reminder, payment failed) into the customer portal.

A link carries one invoice id and what it may be used for, signed with SECRET_KEY (django.core.signing) and
timestamped, so it is scoped to that invoice and expires (``PORTAL_LINK_MAX_AGE_DAYS``). The portal verifies it
with ``invoice_link_verify`` and shows that one invoice (and lets the visitor pay it) without a login; it never
grants access to anything else of the customer.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import signing

from core.errors import NotFound

_SALT = "billing.portal.invoice-link"
PURPOSES = ("view", "pay", "authenticate")  # authenticate: complete 3-D Secure of the invoice's pending charge


class InvalidLink(NotFound):
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
    except ValueError as exc:  # signed with our key but without a timestamp (a plain Signer): not one of ours
        raise InvalidLink("this link is not valid") from exc
    if not isinstance(value, dict) or not isinstance(value.get("i"), int) or value.get("p") not in PURPOSES:
        raise InvalidLink("this link is not valid")
    return InvoiceLink(invoice_id=value["i"], purpose=value["p"])


# --- add-a-payment-method links (staff's "send add-card link") -----------------------------------------

_METHOD_SALT = "billing.portal.method-link"


def method_link_token(*, customer_id: int) -> str:
    """A signed, timestamped link to one customer's add-a-payment-method page; nothing else of the customer."""
    return signing.TimestampSigner(salt=_METHOD_SALT).sign_object({"c": customer_id}, compress=True)


def method_link_url(*, customer_id: int) -> str:
    token = method_link_token(customer_id=customer_id)
    return f"{settings.PORTAL_BASE_URL.rstrip('/')}/portal/method-link/{token}/"


def method_link_verify(token: str) -> int:
    """The customer id of a valid link; ``InvalidLink`` when tampered with or older than
    ``PAYMENTS_METHOD_LINK_MAX_AGE_DAYS``."""
    max_age = 86400 * settings.PAYMENTS_METHOD_LINK_MAX_AGE_DAYS
    try:
        value = signing.TimestampSigner(salt=_METHOD_SALT).unsign_object(token, max_age=max_age)
    except signing.SignatureExpired as exc:
        raise InvalidLink("this link has expired") from exc
    except (signing.BadSignature, ValueError) as exc:
        raise InvalidLink("this link is not valid") from exc
    if not isinstance(value, dict) or not isinstance(value.get("c"), int):
        raise InvalidLink("this link is not valid")
    return int(value["c"])


# --- keeping link secrets out of the logs ---------------------------------------------------------------

# The secret of a sign-in link or a deep link is a path segment. Django logs the path of every 4xx/5xx answer
# (django.request) and of every CSRF refusal (django.security.csrf) — e.g. a sign-in link whose confirmation was
# POSTed without the CSRF cookie, while the link is still valid. The filter replaces the segment before any handler
# sees the record (configured on those loggers in settings.LOGGING).
_TOKEN_IN_PATH = re.compile(r"(/portal/(?:login|link|method-link)/)(?!sent/)[^/\s'\"]+")
REDACTED = "[redacted]"


def redact_link_tokens(text: str) -> str:
    return _TOKEN_IN_PATH.sub(lambda match: match.group(1) + REDACTED, text)


class RedactLinkTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_link_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact_link_tokens(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif isinstance(record.args, dict):
            args: dict[str, Any] = dict(record.args)
            record.args = {key: redact_link_tokens(v) if isinstance(v, str) else v for key, v in args.items()}
        return True
