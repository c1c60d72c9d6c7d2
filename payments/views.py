"""Gateway webhook endpoint: ``POST /webhooks/<gateway>/``. CSRF-exempt (the gateway signs the body instead)."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from payments.gateways import InvalidWebhook
from payments.webhooks import UnknownGateway, webhook_receive

logger = logging.getLogger(__name__)
MAX_WEBHOOK_BYTES = 1024 * 1024


@csrf_exempt
@require_POST
def payments_webhook(request: HttpRequest, gateway: str) -> HttpResponse:
    if len(request.body) > MAX_WEBHOOK_BYTES:
        return JsonResponse({"error": "payload too large"}, status=413)
    try:
        result = webhook_receive(gateway_name=gateway, payload=request.body, headers=request.headers)
    except UnknownGateway as exc:
        return JsonResponse({"error": str(exc)}, status=404)
    except InvalidWebhook as exc:
        logger.warning("rejected %s webhook: %s", gateway, exc)
        return JsonResponse({"error": "invalid signature or payload"}, status=400)
    except Exception:
        # Not processed: answer 500 so the gateway delivers it again.
        logger.exception("%s webhook could not be processed", gateway)
        return JsonResponse({"error": "processing failed"}, status=500)
    return JsonResponse({"received": True, "duplicate": result.duplicate, "outcome": result.outcome})
