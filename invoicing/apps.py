from django.apps import AppConfig


class InvoicingConfig(AppConfig):
    name = "invoicing"

    def ready(self) -> None:
        from invoicing import delivery, documents, hooks
        from notifications.sending import register_attachment_provider

        # After an invoice or credit note is committed: render its PDF, e-mail the invoice (invoicing.delivery).
        hooks.register_invoice_finalized(delivery.on_invoice_finalized)
        hooks.register_credit_note_issued(delivery.on_credit_note_issued)
        # The outbox attaches an invoice's or credit note's PDF as it is at send time.
        register_attachment_provider(documents.email_attachment)
