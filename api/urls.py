"""/api/v1/: the public REST API (docs/API.md). Mounted by billing_project/urls.py."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import SimpleRouter

from api.views.customers import CustomerViewSet
from api.views.events import customer_usage, events_create

app_name = "api"

router = SimpleRouter(trailing_slash=False)
router.register("customers", CustomerViewSet, basename="customer")

urlpatterns = [
    # Usage events: lean views outside DRF (api/views/events.py), before the router's customer routes.
    path("events", events_create, name="events"),
    path("customers/<int:customer_id>/usage", customer_usage, name="customer-usage"),
    path("schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]), name="schema"),
    path("", include(router.urls)),
]
