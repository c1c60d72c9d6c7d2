from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"

    def ready(self) -> None:
        from invoicing import hooks
        from payments import services

        hooks.register_invoice_finalized(services.payments_on_invoice_finalized)
        hooks.register_credit_note_issued(services.customer_credit_from_credit_note)
