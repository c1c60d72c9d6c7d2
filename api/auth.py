"""Who is calling: ``authenticate(request, scope)`` → the ``ApiKey``, or an ``ApiProblem``.

- 401 ``not_authenticated``: no ``Authorization: Bearer ck_…`` header, an unknown, malformed or revoked key;
- 403 ``insufficient_scope``: a read key on a writing method;
- 429 ``rate_limited`` with ``Retry-After`` (seconds): the key made more than ``API_RATE_LIMIT_PER_MINUTE`` requests
  in the current minute. Counted in Django's cache (``CACHE_URL``: Redis, shared by every web process), a fixed
  one-minute window per key.

DRF views use ``ApiKeyAuthentication`` + ``HasApiScope`` (set as defaults in settings); a plain Django view (the
lean usage-event ingestion) wraps itself in ``api_key_required("write")``, which also names the key as the actor
of the audited writes and answers problems as problem JSON.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from api.keys import hash_matches, split_key
from api.models import ApiKey, ApiScope
from api.problems import ApiProblem
from core.audit import ACTOR_SYSTEM, audit_actor

# last_used_at is written at most this often per key, not on every request
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
RATE_WINDOW_SECONDS = 60
CHALLENGE = 'Bearer realm="api"'


def scope_for_method(method: str) -> str:
    return ApiScope.READ if method in SAFE_METHODS else ApiScope.WRITE


def authenticate(request: HttpRequest, scope: str) -> ApiKey:
    """The key of the request if it may use ``scope`` and is within its rate limit; else raises ``ApiProblem``."""
    api_key = verify_key(request)
    check_scope(api_key, scope)
    check_rate_limit(api_key)
    return api_key


def verify_key(request: HttpRequest) -> ApiKey:
    header = request.headers.get("Authorization", "")
    kind, _, key = header.partition(" ")
    if kind.lower() != "bearer" or not key.strip():
        raise _unauthenticated("Send the API key as 'Authorization: Bearer ck_…'.")
    key = key.strip()
    parts = split_key(key)
    api_key = ApiKey.objects.filter(prefix=parts[0]).first() if parts else None
    # compare even without a row (against a dummy), so timing does not tell which prefixes exist
    if api_key is None or not hash_matches(api_key, key):
        hash_matches(_DUMMY, key)
        raise _unauthenticated("The API key is not valid.")
    if not api_key.is_active:
        raise _unauthenticated("The API key has been revoked.")
    _touch(api_key)
    return api_key


def check_scope(api_key: ApiKey, scope: str) -> None:
    if not api_key.allows(scope):
        raise ApiProblem(
            403,
            f"This API key has the '{api_key.scope}' scope; this request needs '{scope}'.",
            code="insufficient_scope",
        )


def check_rate_limit(api_key: ApiKey) -> None:
    limit = settings.API_RATE_LIMIT_PER_MINUTE
    if limit <= 0:
        return
    now = time.time()
    window = int(now // RATE_WINDOW_SECONDS)
    cache_key = f"api:rate:{api_key.pk}:{window}"
    # add() is atomic (Redis SET NX): the first request of the window creates the counter, incr() counts on it
    cache.add(cache_key, 0, timeout=RATE_WINDOW_SECONDS + 5)
    try:
        count = cache.incr(cache_key)
    except ValueError:  # expired between add and incr
        cache.set(cache_key, 1, timeout=RATE_WINDOW_SECONDS + 5)
        count = 1
    if count > limit:
        retry_after = max(1, math.ceil((window + 1) * RATE_WINDOW_SECONDS - now))
        raise ApiProblem(
            429,
            f"Rate limit of {limit} requests per minute reached for this API key; retry in {retry_after} s.",
            code="rate_limited",
            headers={"Retry-After": str(retry_after)},
        )


def api_actor(api_key: ApiKey) -> Any:
    """The audit actor of an API request's writes: the key, by name and prefix."""
    return audit_actor(ACTOR_SYSTEM, f"API key {api_key.name} (ck_{api_key.prefix})", api_key=api_key.pk)


def _touch(api_key: ApiKey) -> None:
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now


def _unauthenticated(detail: str) -> ApiProblem:
    return ApiProblem(401, detail, code="not_authenticated", headers={"WWW-Authenticate": CHALLENGE})


_DUMMY = ApiKey(key_hash="0" * 64)


# --- DRF -------------------------------------------------------------------------------------------------


class ApiKeyAuthentication(BaseAuthentication):
    """``request.auth`` is the ``ApiKey``; ``request.user`` stays anonymous (a key is not a staff member)."""

    def authenticate(self, request: Request) -> tuple[AnonymousUser, ApiKey]:
        return AnonymousUser(), verify_key(request._request)

    def authenticate_header(self, request: Request) -> str:
        return CHALLENGE


class HasApiScope(BasePermission):
    """Reading methods need the read scope, the others write; then the key's rate limit."""

    def has_permission(self, request: Request, view: Any) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            raise _unauthenticated("Send the API key as 'Authorization: Bearer ck_…'.")
        check_scope(api_key, scope_for_method(request.method or "GET"))
        check_rate_limit(api_key)
        return True


# --- plain Django views ----------------------------------------------------------------------------------


def api_key_required(scope: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """For a view outside DRF: authenticates (``request.api_key``), answers problems as problem JSON and names the
    key as the actor of the view's audited writes. CSRF does not apply: the key is not a cookie."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                api_key = authenticate(request, scope)
                request.api_key = api_key  # type: ignore[attr-defined]
                with api_actor(api_key):
                    return view(request, *args, **kwargs)
            except ApiProblem as problem:
                return problem.response()

        return wrapper

    return decorate
