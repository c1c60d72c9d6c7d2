"""``Idempotency-Key`` on POST requests, as Stripe does (docs/API.md "Idempotency").

Per (API key, Idempotency-Key) one ``IdempotencyRecord`` row (unique) holds the first response. A request with a
key takes a PostgreSQL advisory lock on the pair for its whole run, so:

- the same key with the same body (method, path and JSON body, key order and spacing aside) replays the first
  response — status and body — with ``Idempotent-Replayed: true``;
- the same key with another body is a 409 ``idempotency_key_reused``; nothing runs;
- a concurrent duplicate waits on the lock until the first has finished, then replays its response;
- a 5xx is not recorded, so the client may retry with the same key;
- records older than ``API_IDEMPOTENCY_HOURS`` (24) no longer count and are deleted by
  ``manage.py purge_idempotency_keys`` (a periodic job).

Most endpoints run their handler and the record's insert in one transaction (``atomic=True``): the effect and the
stored response commit together, or neither does. Endpoints that call a payment gateway must not hold a
transaction open over the network (docs/STYLE.md): they run ``atomic=False`` — the service commits its own
"processing" marker before the call (payments.services.invoice_collect) — and the record is written after.
SQLite (the demo) has no advisory locks; there the unique row is the guard (a duplicate racing the first gets
the replay once the first has committed, or a 409 ``idempotency_key_in_use`` while it runs).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator

from django.conf import settings
from django.db import IntegrityError, connection, transaction
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
    request: HttpRequest,
    api_key: ApiKey,
    key: str,
    handle: Callable[[], HttpResponseBase],
    *,
    atomic: bool = True,
) -> HttpResponseBase:
    """``handle()`` once per (api_key, key); it returns a rendered response."""
    fingerprint = request_fingerprint(request)
    with _advisory_lock(api_key.pk, key):
        existing = _fresh_record(api_key, key)
        if existing is not None:
            return _replay(existing, fingerprint)
        if not atomic:
            response = handle()
            if response.status_code < 500:
                _store(request, api_key, key, fingerprint, response)
            return response
        with transaction.atomic():
            response = handle()
            if response.status_code >= 500:
                transaction.set_rollback(True)  # a failure of ours is not the answer to keep: a retry runs again
                return response
            _store(request, api_key, key, fingerprint, response)
        return response


@contextlib.contextmanager
def _advisory_lock(api_key_id: int, key: str) -> Iterator[None]:
    """A session-level lock on (key, Idempotency-Key): held across the handler's own transactions."""
    if connection.vendor != "postgresql":
        yield
        return
    digest = hashlib.sha256(f"api-idempotency:{api_key_id}:{key}".encode()).digest()
    lock_id = int.from_bytes(digest[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [lock_id])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_id])


def _fresh_record(api_key: ApiKey, key: str) -> IdempotencyRecord | None:
    record = IdempotencyRecord.objects.filter(api_key=api_key, key=key).first()
    if record is None:
        return None
    expired_before = timezone.now() - dt.timedelta(hours=settings.API_IDEMPOTENCY_HOURS)
    if record.created_at < expired_before:  # an old use of the key no longer counts
        IdempotencyRecord.objects.filter(pk=record.pk).delete()
        return None
    return record


def _store(request: HttpRequest, api_key: ApiKey, key: str, fingerprint: str, response: HttpResponseBase) -> None:
    try:
        with transaction.atomic():  # a savepoint: on SQLite a racing duplicate may have stored first
            IdempotencyRecord.objects.create(
                api_key=api_key,
                key=key,
                method=request.method or "",
                path=request.path[:500],
                request_hash=fingerprint,
                status_code=response.status_code,
                response_body=bytes(getattr(response, "content", b"")),
                response_content_type=response.get("Content-Type", "application/json"),
                created_at=timezone.now(),
            )
    except IntegrityError:
        raise ApiProblem(
            409,
            "Another request with this Idempotency-Key was running at the same time; retry to get its response.",
            code="idempotency_key_in_use",
            field=HEADER,
        ) from None


def _replay(record: IdempotencyRecord, fingerprint: str) -> HttpResponseBase:
    if record.request_hash != fingerprint:
        raise ApiProblem(
            409,
            f"This {HEADER} was used with a different request ({record.method} {record.path} with another body); "
            "use a new key for a new request.",
            code="idempotency_key_reused",
            field=HEADER,
        )
    response = HttpResponse(
        bytes(record.response_body or b""), status=record.status_code or 200, content_type=record.response_content_type
    )
    response["Idempotent-Replayed"] = "true"
    return response


def idempotency_records_purge(*, now: dt.datetime | None = None) -> int:
    """Delete the records older than the retention; returns how many."""
    cutoff = (now or timezone.now()) - dt.timedelta(hours=settings.API_IDEMPOTENCY_HOURS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
