"""Invoicing's staff screens, one module per model family; importing this package registers them."""

from invoicing.admin import billing_runs, credit_notes, customers, invoices, quotes, setup, subscriptions

__all__ = ["billing_runs", "credit_notes", "customers", "invoices", "quotes", "setup", "subscriptions"]
