"""OAuth tokens at rest: Fernet (AES-128-CBC + HMAC-SHA256) with LEDGER_TOKEN_KEY. Several comma-separated keys
rotate: the first encrypts, every one decrypts (``MultiFernet``)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _fernet() -> MultiFernet:
    keys = [key.strip() for key in settings.LEDGER_TOKEN_KEY.split(",") if key.strip()]
    if not keys:
        raise ImproperlyConfigured(
            "LEDGER_TOKEN_KEY is not set: the ledger's OAuth tokens are stored encrypted with it. Generate one: "
            "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        )
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(f"LEDGER_TOKEN_KEY is not a Fernet key: {exc}") from exc


def token_encrypt(token: str) -> str:
    return _fernet().encrypt(token.encode()).decode("ascii")


def token_decrypt(stored: str) -> str:
    try:
        return _fernet().decrypt(stored.encode("ascii")).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "a ledger token does not decrypt with LEDGER_TOKEN_KEY (key changed without keeping the old one?): "
            "connect the ledger again"
        ) from exc
