"""API keys and the idempotency records of POST requests (docs/API.md)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.audit import audited


class ApiScope(models.TextChoices):
    READ = "read", "read"  # GET only
    WRITE = "write", "read and write"  # every method


@audited(exclude=["key_hash", "last_used_at"])  # the hash is a secret; last use is a counter
class ApiKey(models.Model):
    """A key is shown once, when created; only its sha256 is stored. ``prefix`` is the key's visible part
    (``ck_<prefix>_…``): it finds the row, and staff recognise a key by it."""

    name = models.CharField(max_length=100, help_text="Who uses it, e.g. 'CRM sync'.")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False, help_text="sha256 hex of the key.")
    scope = models.CharField(max_length=5, choices=ApiScope.choices, default=ApiScope.READ)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    last_used_at = models.DateTimeField("last used", null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(scope__in=ApiScope.values), name="api_key_scope_valid"),
            models.CheckConstraint(condition=~Q(name=""), name="api_key_name_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.name} (ck_{self.prefix}_…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        return scope == ApiScope.READ or self.scope == ApiScope.WRITE


class IdempotencyRecord(models.Model):
    """The first response to a POST with an ``Idempotency-Key``: the same key and body replay it, another body is
    a 409. The unique (api key, key) row is taken before the request runs, so a concurrent duplicate waits on its
    lock until the first commits (api/idempotency.py). Rows older than 24 hours are deleted by
    ``manage.py purge_idempotency_keys``."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    request_hash = models.CharField(max_length=64, help_text="sha256 of method, path and body.")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Empty while the first runs.")
    response_body = models.BinaryField(null=True, blank=True)
    response_content_type = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "key"], name="api_idempotency_key_once")]
        indexes = [models.Index(fields=["created_at"], name="api_idempotency_created")]

    def __str__(self) -> str:
        return f"{self.key} ({self.method} {self.path})"
