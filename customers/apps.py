from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "customers"

    def ready(self) -> None:
        from customers.seller import seller_from_email
        from customers.vat import connect_signals
        from notifications.services import register_sender_provider

        # Customer e-mails are sent as the seller (the profile's e-mail sender), whichever app queues them.
        register_sender_provider(seller_from_email)
        # A changed EU VAT number queues its VIES check (customers/vat.py).
        connect_signals()
        from core import alerts

        alerts.alert_register("customers.vat_rejected", "customers.vat.dashboard_alerts")
        alerts.alert_register("customers.seller_country", "customers.seller.dashboard_alerts")
