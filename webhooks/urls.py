"""``/api/v1/webhook_endpoints`` (mounted by billing_project/urls.py beside api.urls)."""

from rest_framework.routers import SimpleRouter

from webhooks.api import WebhookEndpointViewSet

app_name = "webhooks_api"

router = SimpleRouter(trailing_slash=False)
router.register("webhook_endpoints", WebhookEndpointViewSet, basename="webhook_endpoint")

urlpatterns = router.urls
