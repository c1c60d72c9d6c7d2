"""OAuth 2 authorization-code flow with Xero and QuickBooks Online, and the tokens' refresh.

"Connect" in the admin stores a random ``state`` in the staff member's session and redirects to the provider;
the callback accepts only that state (CSRF: a callback link forged for someone else's session is refused),
exchanges the code, and stores both tokens encrypted. An access token is refreshed shortly before it expires
(Xero: 30 minutes, QuickBooks: 60); the refresh token rotates, so the new one is stored at once.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping, MutableMapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounting.ledger.clients import LedgerAuthExpired, LedgerError, TokenSet, client_for, provider_settings
from accounting.ledger.crypto import token_decrypt, token_encrypt
from accounting.ledger.models import LedgerConnection, LedgerProvider

STATE_SESSION_KEY = "ledger_oauth_state"
# Refresh this long before the access token's expiry, so a request never starts with a token about to lapse.
REFRESH_MARGIN = dt.timedelta(seconds=120)


class OAuthStateError(LedgerError):
    """The callback's state is missing or is not the one this session started with."""


def oauth_start(*, session: MutableMapping[str, Any], provider: str) -> str:
    """The provider's authorize URL for this session (a fresh state, kept in the session)."""
    provider = LedgerProvider(provider).value
    config = provider_settings(provider)
    missing = [name for name in ("client_id", "client_secret", "redirect_uri") if not config.get(name)]
    if missing:
        names = ", ".join(f"LEDGER_{provider.upper()}_{name.upper()}" for name in missing)
        raise LedgerError(f"{LedgerProvider(provider).label} is not configured: set {names}")
    token_encrypt("")  # LEDGER_TOKEN_KEY is usable: refuse before the user authorizes anything
    state = secrets.token_urlsafe(32)
    session[STATE_SESSION_KEY] = {"provider": provider, "state": state}
    return client_for(provider).authorize_url(state=state)


def oauth_complete(
    *, session: MutableMapping[str, Any], provider: str, params: Mapping[str, str], actor: Any = None
) -> LedgerConnection:
    """The callback: check the state, exchange the code, find the organisation, store the tokens encrypted."""
    provider = LedgerProvider(provider).value
    expected = session.pop(STATE_SESSION_KEY, None) or {}
    state = params.get("state", "")
    if (
        not state
        or expected.get("provider") != provider
        or not secrets.compare_digest(str(expected.get("state", "")), state)
    ):
        raise OAuthStateError("the authorization's state does not match this session: start again with Connect")
    if params.get("error"):
        raise LedgerError(f"{LedgerProvider(provider).label} refused the authorization: {params['error']}")
    code = params.get("code", "")
    if not code:
        raise LedgerError("the callback carries no authorization code")
    client = client_for(provider)
    tokens = client.exchange_code(code=code)
    if provider == LedgerProvider.XERO:
        client.access_token = tokens.access_token
        tenants = client.tenants()  # type: ignore[union-attr]
        if not tenants:
            raise LedgerError("Xero: the authorization grants no organisation")
        tenant_id, tenant_name = str(tenants[0]["tenantId"]), str(tenants[0].get("tenantName", ""))
    else:
        tenant_id, tenant_name = params.get("realmId", ""), ""
        if not tenant_id:
            raise LedgerError("QuickBooks: the callback carries no realmId (company id)")
    now = timezone.now()
    connection, _created = LedgerConnection.objects.update_or_create(
        provider=provider,
        defaults={
            "tenant_id": tenant_id,
            "tenant_name": tenant_name,
            **_token_fields(tokens, now=now),
            "is_active": True,
            "connected_at": now,
            "connected_by": actor if getattr(actor, "pk", None) else None,
        },
    )
    return connection


def _token_fields(tokens: TokenSet, *, now: dt.datetime) -> dict[str, Any]:
    return {
        "access_token_encrypted": token_encrypt(tokens.access_token),
        "refresh_token_encrypted": token_encrypt(tokens.refresh_token),
        "access_token_expires_at": now + dt.timedelta(seconds=tokens.expires_in),
    }


def access_token(connection: LedgerConnection, *, force_refresh: bool = False) -> str:
    """A usable access token: the stored one, or a refreshed one when it expires within REFRESH_MARGIN."""
    if not force_refresh and connection.access_token_expires_at > timezone.now() + REFRESH_MARGIN:
        return token_decrypt(connection.access_token_encrypted)
    return token_refresh(connection, force=force_refresh)


def token_refresh(connection: LedgerConnection, *, force: bool = False) -> str:
    """Refresh under a row lock. The call to the provider happens inside the transaction on purpose: the refresh
    token rotates, so two workers refreshing at once would leave one of them holding a spent token; the second
    waits on the lock and then finds the fresh token stored."""
    with transaction.atomic():
        locked = LedgerConnection.objects.select_for_update().get(pk=connection.pk)
        now = timezone.now()
        unchanged = locked.access_token_encrypted == connection.access_token_encrypted
        if locked.access_token_expires_at > now + REFRESH_MARGIN and not (force and unchanged):
            token = token_decrypt(locked.access_token_encrypted)  # another worker refreshed meanwhile
        else:
            try:
                tokens = client_for(locked.provider).refresh(
                    refresh_token=token_decrypt(locked.refresh_token_encrypted)
                )
            except LedgerError as exc:  # invalid_grant: the refresh token expired or the app was disconnected
                raise LedgerAuthExpired(f"the refresh token was refused: connect the ledger again ({exc})") from exc
            for field, value in _token_fields(tokens, now=now).items():
                setattr(locked, field, value)
            locked.save(update_fields=["access_token_encrypted", "refresh_token_encrypted", "access_token_expires_at"])
            token = tokens.access_token
    connection.access_token_encrypted = locked.access_token_encrypted
    connection.refresh_token_encrypted = locked.refresh_token_encrypted
    connection.access_token_expires_at = locked.access_token_expires_at
    return token
