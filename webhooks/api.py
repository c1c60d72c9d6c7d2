"""``/api/v1/webhook_endpoints``: the webhook endpoints through the API (docs/WEBHOOKS.md, docs/API.md).

The same services as the admin (``webhooks.services``). Reading needs a read key, every change a write key. The
signing secret is in the response of ``create`` and ``rotate_secret`` only; afterwards only its first characters
(``secret_hint``). Mounted by billing_project/urls.py (the api app sits below this one and cannot import it)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from api.problems import ApiProblem
from api.serializers import ApiSerializer
from api.views.base import IDEMPOTENCY_PARAMETER, ApiViewSet
from webhooks import services
from webhooks.catalog import EVENT_TYPES
from webhooks.models import WebhookEndpoint


class WebhookEndpointOut(ApiSerializer):
    object_name = "webhook_endpoint"
    url = serializers.CharField()
    description = serializers.CharField()
    event_types = serializers.ListField(
        child=serializers.CharField(), help_text="The types sent to this endpoint; empty: every type."
    )
    enabled = serializers.BooleanField()
    secret_hint = serializers.CharField(help_text="The first characters of the signing secret.")
    failing_since = serializers.DateTimeField(allow_null=True)
    disabled_at = serializers.DateTimeField(allow_null=True, help_text="Set when the sender disabled it.")
    disabled_reason = serializers.CharField()
    created_at = serializers.DateTimeField()


class WebhookEndpointWithSecretOut(WebhookEndpointOut):
    secret = serializers.CharField(help_text="The signing secret (whsec_…). Shown in this response only.")


class WebhookEndpointIn(serializers.Serializer):
    url = serializers.CharField(max_length=2000, help_text="http(s) URL on a public address.")
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=list(EVENT_TYPES)),
        required=False,
        help_text="Types to send; empty or left out: every type.",
    )
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)


def _typed(data: Any, *, partial: bool) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ApiProblem(400, "The body must be a JSON object.", code="invalid_input")
    unknown = sorted(set(data) - set(WebhookEndpointIn().fields))
    if unknown:
        raise ApiProblem(
            400, f"{unknown[0]}: not a field of a webhook endpoint.", code="invalid_input", field=unknown[0]
        )
    serializer = WebhookEndpointIn(data=data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _with_secret(endpoint: WebhookEndpoint, secret: str) -> dict[str, Any]:
    return {**WebhookEndpointOut(endpoint).data, "secret": secret}


class WebhookEndpointViewSet(ApiViewSet):
    queryset = WebhookEndpoint.objects.all()

    @extend_schema(responses=WebhookEndpointOut(many=True))
    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(WebhookEndpoint.objects.all())
        assert page is not None
        return self.get_paginated_response(WebhookEndpointOut(page, many=True).data)

    @extend_schema(responses=WebhookEndpointOut)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(WebhookEndpointOut(self._endpoint(pk)).data)

    @extend_schema(
        request=WebhookEndpointIn, responses={201: WebhookEndpointWithSecretOut}, parameters=[IDEMPOTENCY_PARAMETER]
    )
    def create(self, request: Request) -> Response:
        given = _typed(request.data, partial=False)
        with transaction.atomic():
            created = services.endpoint_create(
                url=given["url"],
                event_types=given.get("event_types", []),
                description=given.get("description", ""),
                enabled=given.get("enabled", True),
            )
        return Response(_with_secret(created.endpoint, created.secret), status=201)

    @extend_schema(request=WebhookEndpointIn(partial=True), responses=WebhookEndpointOut)
    def partial_update(self, request: Request, pk: str) -> Response:
        endpoint = self._endpoint(pk)
        given = _typed(request.data, partial=True)
        updated = services.endpoint_update(
            endpoint=endpoint,
            url=given.get("url"),
            event_types=given.get("event_types"),
            description=given.get("description"),
            enabled=given.get("enabled"),
        )
        return Response(WebhookEndpointOut(updated).data)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: str) -> Response:
        """Delete the endpoint and its delivery log. Nothing more is sent to it."""
        self._endpoint(pk).delete()
        return Response(status=204)

    @extend_schema(
        request=None,
        responses=inline_serializer(
            "WebhookEndpointRotated", {"object": serializers.CharField(), "secret": serializers.CharField()}
        ),
        parameters=[IDEMPOTENCY_PARAMETER],
    )
    @action(detail=True, methods=["post"], url_path="rotate_secret")
    def rotate_secret(self, request: Request, pk: str) -> Response:
        """A new signing secret (in this response only); the previous one signs beside it for 24 hours."""
        endpoint = self._endpoint(pk)
        secret = services.endpoint_rotate_secret(endpoint=endpoint)
        endpoint.refresh_from_db()
        return Response(_with_secret(endpoint, secret))

    def _endpoint(self, pk: str) -> WebhookEndpoint:
        endpoint: WebhookEndpoint = self.object_or_404(WebhookEndpoint.objects.all(), pk, what="webhook endpoint")
        return endpoint
