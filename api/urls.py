"""/api/v1/: the public REST API (docs/API.md). Mounted by billing_project/urls.py."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import SimpleRouter

from api.views.billing import CreditNoteViewSet, DomainEventViewSet, InvoiceViewSet, PaymentViewSet
from api.views.catalog import CouponViewSet, PriceViewSet, ProductViewSet
from api.views.customers import CustomerViewSet
from api.views.events import customer_usage, events_create
from api.views.forecast import ForecastViewSet
from api.views.reference import ApiReferenceView
from api.views.subscriptions import SubscriptionViewSet
from api.views.wallets import WalletViewSet

app_name = "api"

router = SimpleRouter(trailing_slash=False)
router.register("customers", CustomerViewSet, basename="customer")
router.register("products", ProductViewSet, basename="product")
router.register("prices", PriceViewSet, basename="price")
router.register("coupons", CouponViewSet, basename="coupon")
router.register("subscriptions", SubscriptionViewSet, basename="subscription")
router.register("invoices", InvoiceViewSet, basename="invoice")
router.register("credit_notes", CreditNoteViewSet, basename="credit-note")
router.register("payments", PaymentViewSet, basename="payment")
# /api/v1/events is the usage-event ingestion (usage app); the business events are domain_events
router.register("domain_events", DomainEventViewSet, basename="domain-event")
router.register("forecast", ForecastViewSet, basename="forecast")

urlpatterns = [
    # The schema and its reference page are public: they describe the API, they hold no data.
    # Usage events: lean views outside DRF (api/views/events.py), before the router's customer routes.
    path("events", events_create, name="events"),
    path("customers/<int:customer_id>/usage", customer_usage, name="customer-usage"),
    # Wallets (prepaid credits) of a customer: docs/decisions/wallets.md
    path("customers/<int:customer_id>/wallet", WalletViewSet.as_view({"get": "retrieve"}), name="customer-wallet"),
    path(
        "customers/<int:customer_id>/wallet/ledger",
        WalletViewSet.as_view({"get": "ledger"}),
        name="customer-wallet-ledger",
    ),
    path(
        "customers/<int:customer_id>/wallet/grants",
        WalletViewSet.as_view({"post": "grant"}),
        name="customer-wallet-grants",
    ),
    path(
        "customers/<int:customer_id>/wallet/top_ups",
        WalletViewSet.as_view({"post": "top_up"}),
        name="customer-wallet-top-ups",
    ),
    path("schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]), name="schema"),
    path("docs/", ApiReferenceView.as_view(), name="docs"),
    path("", include(router.urls)),
]
