"""The ledger connections and the per-record sync log (docs/decisions/ledger-sync.md). Imported by
accounting/models.py, so the models belong to the ``accounting`` app."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class LedgerProvider(models.TextChoices):
    XERO = "xero", "Xero"
    QUICKBOOKS = "quickbooks", "QuickBooks Online"


class LedgerConnection(models.Model):
    """The OAuth 2 connection to one provider's organisation (Xero tenant, QuickBooks realm). The tokens are
    stored encrypted (Fernet, LEDGER_TOKEN_KEY: accounting/ledger/crypto.py), never in clear text."""

    provider = models.CharField(max_length=20, choices=LedgerProvider.choices, unique=True)
    tenant_id = models.CharField(
        "tenant / realm id", max_length=100, help_text="Xero tenant id or QuickBooks realm (company) id."
    )
    tenant_name = models.CharField(max_length=200, blank=True)
    access_token_encrypted = models.TextField(editable=False)
    refresh_token_encrypted = models.TextField(editable=False)
    access_token_expires_at = models.DateTimeField(editable=False)
    is_active = models.BooleanField(
        "active", default=True, help_text="Inactive: the beat job and the command leave this ledger alone."
    )
    sync_from = models.DateField(
        null=True,
        blank=True,
        help_text="Documents dated before this day are not pushed (the ledger has them already). Empty: all.",
    )
    connected_at = models.DateTimeField()
    connected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # A run claims the connection (UPDATE … WHERE unclaimed or stale): two runs never push the same record at once.
    sync_claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_sync_at = models.DateTimeField(null=True, blank=True)
    last_sync_summary = models.CharField(max_length=300, blank=True)

    class Meta:
        verbose_name = "ledger connection"
        ordering = ["provider"]
        permissions = [("connect_ledgerconnection", "Can connect a ledger (Xero, QuickBooks) and run its sync")]
        constraints = [
            models.CheckConstraint(
                condition=Q(provider__in=LedgerProvider.values), name="ledger_connection_provider_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_provider_display()} ({self.tenant_name or self.tenant_id})"


class SyncObjectType(models.TextChoices):
    CUSTOMER = "customer", "Customer"
    INVOICE = "invoice", "Invoice"
    CREDIT_NOTE = "credit_note", "Credit note"
    PAYMENT = "payment", "Payment"  # one payment allocation: the part of a payment that settled one invoice


class SyncStatus(models.TextChoices):
    SYNCED = "synced", "Synced"
    FAILED = "failed", "Failed"


class SyncRecord(models.Model):
    """One local record in one ledger: written after the provider answered (the sync log). Unique per connection,
    object type and local id, so nothing is pushed twice; a crash between the provider's answer and this row is
    caught by looking the record up by ``reference`` (and by idempotency keys) before creating it again."""

    connection = models.ForeignKey(LedgerConnection, on_delete=models.PROTECT, related_name="records")
    object_type = models.CharField(max_length=20, choices=SyncObjectType.choices)
    local_id = models.BigIntegerField(help_text="Primary key of the customer, invoice, credit note or allocation.")
    reference = models.CharField(
        max_length=100, help_text="Our number in the ledger: ContactNumber / DisplayName, InvoiceNumber / DocNumber…"
    )
    external_id = models.CharField(max_length=100, blank=True, help_text="The ledger's id of the object.")
    content_hash = models.CharField(max_length=64, blank=True, help_text="sha256 of what was sent.")
    status = models.CharField(max_length=10, choices=SyncStatus.choices)
    attempts = models.PositiveIntegerField(default=1)
    last_error = models.TextField(blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "ledger sync record"
        ordering = ["-updated_at", "-pk"]
        permissions = [("retry_syncrecord", "Can retry failed ledger sync records")]
        indexes = [models.Index(fields=["connection", "status", "object_type"], name="sync_record_status_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "object_type", "local_id"], name="sync_record_once_per_object"
            ),
            models.CheckConstraint(
                condition=Q(object_type__in=SyncObjectType.values), name="sync_record_object_type_valid"
            ),
            models.CheckConstraint(condition=Q(status__in=SyncStatus.values), name="sync_record_status_valid"),
            models.CheckConstraint(
                condition=~Q(status=SyncStatus.SYNCED) | ~Q(external_id=""), name="sync_record_synced_has_id"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_object_type_display()} {self.reference}"
