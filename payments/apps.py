from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"

    def ready(self) -> None:
        from core import alerts, events
        from invoicing.portal import invoice_note_register
        from payments import notifications, services, tasks, wallets
        from payments.portal_methods import invoice_debit_notes

        alerts.alert_register("payments.open_disputes", "payments.selectors.dashboard_dispute_alerts")
        invoice_note_register(invoice_debit_notes)

        # Settle phase: money first, before invoicing's deliver phase renders and e-mails the document. Wallet
        # credits before the customer's credit balance (they may expire; docs/decisions/wallets.md).
        events.handler_register(
            event_type="invoice.issued",
            name="payments.consume_wallet",
            phase=events.SETTLE,
            handler=wallets.on_invoice_issued_consume_wallet,
            applies=wallets.wallets_in_use,
        )
        events.handler_register(
            event_type="invoice.paid",
            name="payments.activate_wallet_top_up",
            phase=events.SETTLE,
            handler=wallets.on_invoice_paid_activate_top_up,
            applies=wallets.wallets_in_use,
        )
        events.handler_register(
            event_type="invoice.voided",
            name="payments.cancel_wallet_top_up",
            phase=events.SETTLE,
            handler=wallets.on_invoice_voided_cancel_top_up,
            applies=wallets.wallets_in_use,
        )
        events.handler_register(
            event_type="invoice.issued",
            name="payments.apply_customer_credit",
            phase=events.SETTLE,
            handler=services.on_invoice_issued_apply_credit,
        )
        events.handler_register(
            event_type="invoice.issued",
            name="payments.collect_automatically",
            phase=events.SETTLE,
            handler=tasks.on_invoice_issued_collect,
            atomic=False,  # enqueues the charge; invoice_collect charges an invoice automatically once
        )
        events.handler_register(
            event_type="subscription.updated",
            name="payments.collect_after_resume",
            phase=events.SETTLE,
            handler=tasks.on_subscription_resumed_collect,
            atomic=False,  # enqueues the charges; invoice_collect charges an invoice automatically once
        )
        events.handler_register(
            event_type="credit_note.issued",
            name="payments.book_credit_note_credit",
            phase=events.SETTLE,
            handler=services.on_credit_note_issued_book_credit,
        )
        # Deliver phase: the customer's e-mails about money that moved (once per payment / refund).
        events.handler_register(
            event_type="payment.succeeded",
            name="payments.email_receipt",
            phase=events.DELIVER,
            handler=notifications.on_payment_succeeded_receipt,
        )
        events.handler_register(
            event_type="payment.refunded",
            name="payments.email_refund",
            phase=events.DELIVER,
            handler=notifications.on_payment_refunded_email,
        )
