"""Dashboard alerts from apps above the dashboard (docs/ARCHITECTURE.md, "Extending a page from above").

The admin dashboard lives in ``reporting``; an app above it (webhooks) cannot be imported there, so it registers
a provider here in its ``AppConfig.ready()`` and the dashboard shows whatever the providers return. A provider
is a callable (or its dotted path) taking ``user`` and ``as_of`` and returning ``Alert`` rows; it runs a bounded
number of queries and links only to pages ``user`` may view."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.utils.module_loading import import_string


@dataclass(frozen=True)
class Alert:
    label: str
    value: str
    url: str | None = None
    note: str = ""


AlertProvider = Callable[..., list[Alert]]
_providers: dict[str, AlertProvider | str] = {}


def alert_register(name: str, provider: AlertProvider | str) -> None:
    """Register (or replace) a provider by name, once at start-up."""
    _providers[name] = provider


def alerts_for(*, user: Any, as_of: dt.date) -> list[Alert]:
    """Every registered provider's alerts, in registration order."""
    found: list[Alert] = []
    for provider in _providers.values():
        target = import_string(provider) if isinstance(provider, str) else provider
        found.extend(target(user=user, as_of=as_of))
    return found
