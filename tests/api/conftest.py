from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from api.keys import api_key_create
from tests.factories.invoicing import NumberSeriesFactory, TaxRateFactory


class ApiClient:
    """A test client that sends the key and JSON bodies; ``.json`` of each response is parsed."""

    def __init__(self, key: str | None) -> None:
        self.client = Client()
        self.key = key

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        return {**headers, **(extra or {})}

    def get(self, path: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Any:
        return self.client.get(path, params or {}, headers=self._headers(headers))

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None, raw: str | None = None) -> Any:
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(path, data, content_type="application/json", headers=self._headers(headers))

    def patch(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        return self.client.patch(
            path, json.dumps(body), content_type="application/json", headers=self._headers(headers)
        )


@pytest.fixture
def make_client(db: Any) -> Callable[[str], ApiClient]:
    def make(scope: str = "write") -> ApiClient:
        return ApiClient(api_key_create(name=f"test {scope}", scope=scope).key)

    return make


@pytest.fixture
def api(make_client: Callable[[str], ApiClient]) -> ApiClient:
    """A write-scoped client."""
    return make_client("write")


@pytest.fixture
def reader(make_client: Callable[[str], ApiClient]) -> ApiClient:
    return make_client("read")


@pytest.fixture
def series(db: Any) -> dict[str, Any]:
    return {
        "invoice": NumberSeriesFactory(default_invoices=True),
        "credit_note": NumberSeriesFactory(default_credit_notes=True),
    }


@pytest.fixture
def vat_de(db: Any) -> Any:
    return TaxRateFactory(country="DE", percentage=Decimal("19"))
