"""The shape of a usage event as senders write it — the API's ``POST /api/v1/events`` body and each line of a
``manage.py import_usage_events`` file — decoded and type-checked by msgspec (about a millisecond per 1,000
events; DRF serializers cost about 60). What the types cannot say (a known metric, customer and subscription, a
number in the metric's property) is checked by ``services.usage_events_ingest``.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Annotated, Any

import msgspec

MAX_EVENTS_PER_REQUEST = 1000

TransactionId = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
MetricCode = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
ExternalId = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
AwareDatetime = Annotated[dt.datetime, msgspec.Meta(tz=True)]
SubscriptionId = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


class UsageEventIn(msgspec.Struct, forbid_unknown_fields=True):
    """One event: who used what (the metric's ``code``) when, with its properties. Exactly one of
    ``external_customer_id`` and ``subscription_id`` names whose usage it is."""

    transaction_id: TransactionId
    code: MetricCode
    timestamp: AwareDatetime
    external_customer_id: ExternalId | None = None
    subscription_id: SubscriptionId | None = None
    properties: dict[str, Any] = msgspec.field(default_factory=dict)


class UsageEventsBody(msgspec.Struct, forbid_unknown_fields=True):
    """``{"event": {...}}`` or ``{"events": [{...}, ...]}`` (at most ``MAX_EVENTS_PER_REQUEST``)."""

    event: UsageEventIn | None = None
    events: Annotated[list[UsageEventIn], msgspec.Meta(max_length=MAX_EVENTS_PER_REQUEST)] | None = None


# Numbers in properties arrive as Decimal, never float (a usage value is as exact as money).
body_decoder = msgspec.json.Decoder(UsageEventsBody, float_hook=Decimal)
event_decoder = msgspec.json.Decoder(UsageEventIn, float_hook=Decimal)
events_decoder = msgspec.json.Decoder(list[UsageEventIn], float_hook=Decimal)  # the lines of an import file
properties_decoder = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)

_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_INDEX = re.compile(r"^\.events\[(?P<index>\d+)\](?P<rest>.*)$")


def describe_decode_error(error: msgspec.DecodeError) -> tuple[int | None, str, str]:
    """(event index or None, field path, message) of a msgspec error: ``$.events[3].timestamp`` → (3,
    "timestamp", "Expected `datetime`, got `int`")."""
    match = _PATH.match(str(error))
    message = match.group("message") if match else str(error)
    path = (match.group("path") if match else None) or ""
    index_match = _INDEX.match(path)
    if index_match:
        return int(index_match.group("index")), index_match.group("rest").lstrip("."), message
    if path.startswith(".event."):
        return 0, path.removeprefix(".event."), message
    return None, path.lstrip(".") or "(body)", message
