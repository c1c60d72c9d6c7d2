from django.apps import AppConfig


class InvoicingConfig(AppConfig):
    name = "invoicing"

    def ready(self) -> None:
        from core import events
        from invoicing import delivery, documents
        from notifications.sending import register_attachment_provider

        # Deliver phase: after the payments app settled the new document (credit, collection), render its PDF
        # and e-mail the invoice, so both state the amount due after credit (docs/ARCHITECTURE.md).
        events.handler_register(
            event_type="invoice.issued",
            name="invoicing.render_invoice_pdf",
            phase=events.DELIVER,
            handler=delivery.on_invoice_issued_render_pdf,
            atomic=False,  # hands the render to a worker; render_missing_pdfs catches up
        )
        events.handler_register(
            event_type="invoice.issued",
            name="invoicing.email_invoice",
            phase=events.DELIVER,
            handler=delivery.on_invoice_issued_email,
        )
        events.handler_register(
            event_type="credit_note.issued",
            name="invoicing.render_credit_note_pdf",
            phase=events.DELIVER,
            handler=delivery.on_credit_note_issued_render_pdf,
            atomic=False,
        )
        events.handler_register(
            event_type="credit_note.issued",
            name="invoicing.email_credit_note",
            phase=events.DELIVER,
            handler=delivery.on_credit_note_issued_email,
        )
        # "Invoice now" prorations of a plan change made without issuing them (settle: money is owed now).
        events.handler_register(
            event_type="subscription.updated",
            name="invoicing.invoice_plan_change_now",
            phase=events.SETTLE,
            handler="invoicing.subscription_billing.on_subscription_updated_invoice_now",
        )
        # The outbox attaches an invoice's or credit note's PDF as it is at send time.
        register_attachment_provider(documents.email_attachment)
