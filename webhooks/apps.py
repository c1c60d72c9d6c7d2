from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from core import alerts, events
        from webhooks.catalog import EVENT_TYPES

        # Notify phase (core.events): after money was settled and documents delivered, the event becomes one
        # delivery per subscribed endpoint — atomic, so the rows and the handler's run commit together.
        for event_type in EVENT_TYPES:
            events.handler_register(
                event_type=event_type,
                name="webhooks.create_deliveries",
                phase=events.NOTIFY,
                handler="webhooks.services.deliveries_create_for_event",
                # Without an endpoint for the type the event is processed at once, as before this app existed.
                applies="webhooks.selectors.endpoints_subscribe_to",
            )
        alerts.alert_register("webhooks.disabled_endpoints", "webhooks.selectors.dashboard_alerts")
