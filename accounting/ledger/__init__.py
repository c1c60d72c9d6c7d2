"""Ledger sync: customers, invoices, credit notes and payments pushed to Xero and QuickBooks Online through their
APIs (docs/decisions/ledger-sync.md). ``oauth`` connects, ``clients`` speaks each provider's API, ``sync`` is the
engine (idempotent by external id, resumable, rate-limit aware)."""
