"""Usage events: ``POST /api/v1/events`` and ``GET /api/v1/customers/{id}/usage`` (docs/API.md "Usage events").

The ingestion view is a lean Django view, not DRF: msgspec decodes and type-checks a batch of 1,000 events in
about a millisecond (DRF serializers cost about 60), the service writes it in one ``INSERT … ON CONFLICT
(transaction_id) DO NOTHING``. Every refusal is problem JSON naming the event's index and field; nothing of a
refused request is written.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import cast

import msgspec
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from api.auth import api_key_required
from api.idempotency import idempotency_key_of, run_idempotent
from api.problems import ApiProblem, from_application_error
from core.asof import parse_as_of
from core.errors import ApplicationError
from customers.models import Customer
from subscriptions.selectors import usage_current
from subscriptions.services import UsageEventsRejected, usage_events_ingest
from subscriptions.usage_schema import MAX_EVENTS_PER_REQUEST, body_decoder, describe_decode_error

# A batch of 1,000 events with generous properties is well below this; a larger body is refused unread (413).
MAX_BODY_BYTES = 2 * 1024 * 1024

_encoder = msgspec.json.Encoder(decimal_format="string")


def _problem_of_rejection(exc: UsageEventsRejected) -> ApiProblem:
    errors = [
        {"field": f"events[{index}].{field_name}", "index": str(index), "detail": message, "code": "invalid"}
        for index, field_name, message in exc.errors
    ]
    return ApiProblem(422, exc.message, code="invalid_events", field=errors[0]["field"], errors=errors)


def _ingest(request: HttpRequest) -> HttpResponse:
    body = request.body
    if len(body) > MAX_BODY_BYTES:
        raise ApiProblem(
            413,
            f"The body is {len(body)} bytes; at most {MAX_BODY_BYTES} (send at most {MAX_EVENTS_PER_REQUEST} events).",
            code="payload_too_large",
        )
    try:
        decoded = body_decoder.decode(body)
    except msgspec.DecodeError as exc:
        index, field_name, message = describe_decode_error(exc)
        if field_name == "events" and "length <=" in message:
            raise ApiProblem(
                413,
                f"At most {MAX_EVENTS_PER_REQUEST} events per request; split the batch.",
                code="too_many_events",
                field="events",
            ) from exc
        name = f"events[{index}].{field_name}" if index is not None else field_name
        raise ApiProblem(422, f"{name}: {message}", code="invalid_events", field=name) from exc
    if (decoded.event is None) == (decoded.events is None):
        raise ApiProblem(422, "Send either 'event' (one) or 'events' (a batch).", code="invalid_events", field="events")
    events = decoded.events if decoded.events is not None else [decoded.event]  # type: ignore[list-item]
    try:
        result = usage_events_ingest(events=events)
    except UsageEventsRejected as exc:
        raise _problem_of_rejection(exc) from exc
    except ApplicationError as exc:
        raise from_application_error(exc) from exc
    content = _encoder.encode(
        {"object": "event_batch", "received": len(events), "accepted": result.accepted, "duplicates": result.duplicates}
    )
    return HttpResponse(content, status=202 if result.accepted else 200, content_type="application/json")


def _ingest_or_problem(request: HttpRequest) -> HttpResponse:
    try:
        return _ingest(request)
    except ApiProblem as problem:
        return problem.response()


@require_POST
@api_key_required("write")
def events_create(request: HttpRequest) -> HttpResponse:
    """``{"event": {...}}`` or ``{"events": [...]}`` → ``{"received", "accepted", "duplicates"}``. An
    ``Idempotency-Key`` replays the first answer, as on every POST; the events' transaction ids make a re-sent
    batch harmless without one."""

    def handle() -> HttpResponseBase:
        return _ingest_or_problem(request)

    key = idempotency_key_of(request)
    if key is None:
        return _ingest_or_problem(request)
    return cast(HttpResponse, run_idempotent(request, request.api_key, key, handle))  # type: ignore[attr-defined]


def _number(value: Decimal) -> str:
    return f"{value.normalize():f}"


@require_GET
@api_key_required("read")
def customer_usage(request: HttpRequest, customer_id: int) -> HttpResponse:
    """The customer's usage so far in each metered item's open period, as the next invoice will bill it
    (``?as_of=YYYY-MM-DD``, default today)."""
    try:
        as_of: dt.date = parse_as_of(request.GET.get("as_of"), option="as_of")
    except ApplicationError as exc:
        raise ApiProblem(400, exc.message, code="invalid_input", field="as_of") from exc
    if not Customer.objects.filter(pk=customer_id).exists():
        raise ApiProblem(404, f"No customer {customer_id}.", code="not_found")
    rows = usage_current(customer_id=customer_id, as_of=as_of)
    return JsonResponse(
        {
            "object": "customer_usage",
            "customer": customer_id,
            "as_of": as_of.isoformat(),
            "data": [
                {
                    "subscription": row.subscription_id,
                    "subscription_item": row.item_id,
                    "price": row.price.pk,
                    "metric": row.metric_code or None,
                    "metric_name": row.metric_name,
                    "aggregation": row.aggregation,
                    "period_start": row.period_start.isoformat(),
                    "period_end": row.period_end.isoformat(),
                    "quantity": _number(row.quantity),
                    "events": row.events,
                }
                for row in rows
            ],
        }
    )
