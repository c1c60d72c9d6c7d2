"""/api/v1/: the public REST API (docs/API.md). Mounted by billing_project/urls.py."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import SimpleRouter

from api.views.customers import CustomerViewSet

app_name = "api"

router = SimpleRouter(trailing_slash=False)
router.register("customers", CustomerViewSet, basename="customer")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]), name="schema"),
    path("", include(router.urls)),
]
