"""Making and checking API keys. A key is ``ck_<prefix>_<secret>``: the prefix (8 hex characters) finds the row and
is shown to staff; the secret is 256 bits from ``secrets``. Only sha256(key) is stored — the key has enough
entropy that a slow password hash would add nothing but latency — and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, User
from django.db import transaction

from api.models import ApiKey, ApiScope
from core.errors import InvalidInput

KEY_PREFIX = "ck_"


@dataclass(frozen=True)
class NewApiKey:
    api_key: ApiKey
    key: str  # shown once; never stored


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    """The prefix of a well-formed key, or None."""
    if not key.startswith(KEY_PREFIX):
        return None
    prefix, _, secret = key[len(KEY_PREFIX) :].partition("_")
    if len(prefix) != 8 or not secret:
        return None
    return prefix, secret


def hash_matches(api_key: ApiKey, key: str) -> bool:
    return hmac.compare_digest(api_key.key_hash, key_hash(key))


def api_key_create(*, name: str, scope: str, actor: AbstractBaseUser | None = None) -> NewApiKey:
    """A new key; the returned ``key`` is the only time anyone sees it."""
    name = name.strip()
    if not name:
        raise InvalidInput("Give the key a name (who uses it).", field="name")
    if scope not in ApiScope.values:
        raise InvalidInput(f"{scope!r} is not a scope; use one of {', '.join(ApiScope.values)}.", field="scope")
    with transaction.atomic():
        while True:  # 2^32 prefixes: a collision is rare, and the unique constraint is the real guard
            prefix = secrets.token_hex(4)
            if not ApiKey.objects.filter(prefix=prefix).exists():
                break
        key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        api_key = ApiKey.objects.create(
            name=name, prefix=prefix, key_hash=key_hash(key), scope=scope, created_by=_user(actor)
        )
    return NewApiKey(api_key=api_key, key=key)


def api_key_revoke(*, api_key: ApiKey, actor: AbstractBaseUser | None = None) -> ApiKey:
    """Revoked keys are refused at once (401); the row stays for the audit trail. Revoking twice changes nothing."""
    from django.utils import timezone

    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_by=_user(actor)
    )
    api_key.refresh_from_db()
    return api_key


def _user(actor: AbstractBaseUser | None) -> User | None:
    return actor if isinstance(actor, User) and actor.pk is not None else None
