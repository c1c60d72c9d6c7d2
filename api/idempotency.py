"""``Idempotency-Key`` on POST requests, as Stripe does (docs/API.md "Idempotency").

The request runs in one transaction that first inserts the (API key, Idempotency-Key) row; the row is completed
with the response before the transaction commits. So:

- the same key with the same body (method, path and JSON body, key order and spacing aside) replays the first
  response — status and body — with ``Idempotent-Replayed: true``;
- the same key with another body is a 409 ``idempotency_key_reused``; nothing runs;
- a concurrent duplicate blocks on the unique index in its own INSERT until the first transaction ends: then it
  replays the committed response, or, if the first rolled back (a 5xx), runs itself;
- a 5xx is not recorded (the transaction rolls back), so the client may retry with the same key;
- records older than ``API_IDEMPOTENCY_HOURS`` (24) no longer count and are deleted by
  ``manage.py purge_idempotency_keys`` (a periodic job).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import timezone

from api.models import ApiKey, IdempotencyRecord
from api.problems import ApiProblem

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def request_fingerprint(request: HttpRequest) -> str:
    body = request.body
    try:
        canonical = json.dumps(json.loads(body or b"null"), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:  # not JSON: the bytes themselves (the parser will refuse it anyway)
        canonical = body
    digest = hashlib.sha256()
    for part in (request.method or "", request.path, ""):
        digest.update(part.encode() + b"\x00")
    digest.update(canonical)
    return digest.hexdigest()


def idempotency_key_of(request: HttpRequest) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ApiProblem(400, f"{HEADER} must be 1 to {MAX_KEY_LENGTH} characters.", code="invalid_input", field=HEADER)
    return key


def run_idempotent(
    request: HttpRequest, api_key: ApiKey, key: str, handle: Callable[[], HttpResponseBase]
) -> HttpResponseBase:
    """``handle()`` once per (api_key, key): it must return a rendered response."""
    fingerprint = request_fingerprint(request)
    now = timezone.now()
    with transaction.atomic():
        existing = _claim(request, api_key, key, fingerprint, now)
        if existing is not None:
            return _replay(existing, fingerprint)
        response = handle()
        if response.status_code >= 500:
            transaction.set_rollback(True)  # a failure of ours is not the answer to keep: a retry runs again
            return response
        IdempotencyRecord.objects.filter(api_key=api_key, key=key).update(
            status_code=response.status_code,
            response_body=bytes(getattr(response, "content", b"")),
            response_content_type=response.get("Content-Type", "application/json"),
        )
        return response


def _claim(
    request: HttpRequest, api_key: ApiKey, key: str, fingerprint: str, now: dt.datetime
) -> IdempotencyRecord | None:
    """Insert our row (→ None: we run), or the committed row of an earlier request with the key."""
    expired_before = now - dt.timedelta(hours=settings.API_IDEMPOTENCY_HOURS)
    for _attempt in range(2):
        try:
            with transaction.atomic():  # a savepoint: a duplicate waits here until the first transaction ends
                IdempotencyRecord.objects.create(
                    api_key=api_key,
                    key=key,
                    method=request.method or "",
                    path=request.path[:500],
                    request_hash=fingerprint,
                    created_at=now,
                )
            return None
        except IntegrityError:
            existing = IdempotencyRecord.objects.select_for_update().filter(api_key=api_key, key=key).first()
            if existing is None:  # deleted meanwhile (purged): try the insert once more
                continue
            if existing.created_at < expired_before:  # an old use of the key no longer counts
                existing.delete()
                continue
            return existing
    raise ApiProblem(
        409,
        "Another request with this Idempotency-Key is in progress; retry.",
        code="idempotency_key_in_use",
        field=HEADER,
    )


def _replay(record: IdempotencyRecord, fingerprint: str) -> HttpResponseBase:
    if record.request_hash != fingerprint:
        raise ApiProblem(
            409,
            f"This {HEADER} was used with a different request ({record.method} {record.path} with another body); "
            "use a new key for a new request.",
            code="idempotency_key_reused",
            field=HEADER,
        )
    if record.status_code is None:  # cannot be committed without a response; defensive
        raise ApiProblem(
            409,
            "The first request with this Idempotency-Key is still in progress; retry.",
            code="idempotency_key_in_use",
            field=HEADER,
        )
    response = HttpResponse(
        bytes(record.response_body or b""), status=record.status_code, content_type=record.response_content_type
    )
    response["Idempotent-Replayed"] = "true"
    return response


def idempotency_records_purge(*, now: dt.datetime | None = None) -> int:
    """Delete the records older than the retention; returns how many."""
    cutoff = (now or timezone.now()) - dt.timedelta(hours=settings.API_IDEMPOTENCY_HOURS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
