"""A webhook receiver on 127.0.0.1 (a threading HTTP server) for the sending tests, and the billing basics."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.factories.invoicing import NumberSeriesFactory, TaxRateFactory


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    # the status codes to answer, in order; the last one repeats
    statuses: list[int] = field(default_factory=lambda: [200])
    response_body: bytes = b'{"ok": true}'

    def types(self) -> list[str]:
        import json

        return [json.loads(request.body)["type"] for request in self.requests]


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    """Answers each POST with the next of ``statuses``; loopback needs ``WEBHOOKS_ALLOW_PRIVATE_URLS``."""
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = True
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            receiver = state["receiver"]
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            receiver.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            index = min(len(receiver.requests), len(receiver.statuses)) - 1
            self.send_response(receiver.statuses[index])
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(receiver.response_body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["receiver"] = Receiver(url=f"http://127.0.0.1:{server.server_port}/hooks/cadence")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["receiver"]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def billing(db: Any) -> None:
    """Default number series and German VAT 19 % (the customers' default country)."""
    NumberSeriesFactory(default_invoices=True)
    NumberSeriesFactory(default_credit_notes=True)
    TaxRateFactory(country="DE", percentage=Decimal("19"))
