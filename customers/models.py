from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django_countries.fields import CountryField


class TaxStatus(models.TextChoices):
    TAXABLE = "taxable", "Taxable"
    EXEMPT = "exempt", "Exempt"
    REVERSE_CHARGE = "reverse_charge", "Reverse charge"


class Customer(models.Model):
    """A billing identity: who is invoiced, where, in which currency and language, on what terms."""

    name = models.CharField(max_length=200, help_text="How staff and the customer know it.")
    legal_name = models.CharField(max_length=200, blank=True, help_text="Printed on invoices if set.")
    email = models.EmailField("billing e-mail", max_length=254)
    cc_emails = models.TextField(
        "cc e-mails", blank=True, help_text="Further invoice recipients, one per line or comma-separated."
    )
    phone = models.CharField(max_length=40, blank=True)
    address_line1 = models.CharField("address line 1", max_length=200, blank=True)
    address_line2 = models.CharField("address line 2", max_length=200, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    city = models.CharField(max_length=100, blank=True)
    region = models.CharField("region / state", max_length=100, blank=True)
    country = CountryField()
    tax_id = models.CharField("tax id (VAT number)", max_length=40, blank=True)
    tax_status = models.CharField(max_length=20, choices=TaxStatus.choices, default=TaxStatus.TAXABLE)
    currency = models.CharField(max_length=3, choices=settings.CURRENCY_CHOICES, default=settings.DEFAULT_CURRENCY)
    payment_terms_days = models.PositiveSmallIntegerField(
        default=settings.DEFAULT_PAYMENT_TERMS_DAYS,
        validators=[MinValueValidator(0), MaxValueValidator(365)],
        help_text="Days from issue to due date.",
    )
    language = models.CharField(max_length=8, choices=settings.LANGUAGES, default="en")
    notes = models.TextField(blank=True)
    external_id = models.CharField(
        max_length=100, blank=True, help_text="The id in your CRM or shop; imports match on it."
    )
    metadata = models.JSONField(default=dict, blank=True)
    is_archived = models.BooleanField("archived", default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]
        indexes = [
            models.Index(Lower("email"), name="customer_email_lower_idx"),
            models.Index(fields=["country"], name="customer_country_idx"),
            models.Index(fields=["is_archived", "name"], name="customer_archived_name_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["external_id"], condition=~Q(external_id=""), name="customer_external_id_unique"
            ),
            models.CheckConstraint(condition=Q(tax_status__in=TaxStatus.values), name="customer_tax_status_valid"),
            models.CheckConstraint(
                condition=~Q(tax_status=TaxStatus.REVERSE_CHARGE) | ~Q(tax_id=""),
                name="customer_reverse_charge_needs_tax_id",
            ),
            models.CheckConstraint(condition=Q(payment_terms_days__lte=365), name="customer_payment_terms_max_365"),
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="customer_currency_iso"),
            models.CheckConstraint(condition=~Q(name=""), name="customer_name_not_empty"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError
        from django.core.validators import validate_email

        errors: dict[str, str] = {}
        if self.tax_id:
            try:
                self.tax_id = normalize_tax_id(self.tax_id, str(self.country))
            except ValidationError as exc:
                errors["tax_id"] = exc.messages[0]
        if self.tax_status == TaxStatus.REVERSE_CHARGE and not self.tax_id:
            errors["tax_id"] = "A reverse-charge customer needs a tax id (VAT number)."
        for address in self.cc_email_list:
            try:
                validate_email(address)
            except ValidationError:
                errors["cc_emails"] = f"'{address}' is not a valid e-mail address."
                break
        self.cc_emails = ", ".join(self.cc_email_list)
        if self.email:
            self.email = self.email.strip()
        if errors:
            raise ValidationError(errors)

    @property
    def display_legal_name(self) -> str:
        return self.legal_name or self.name

    @property
    def cc_email_list(self) -> list[str]:
        return split_email_list(self.cc_emails)

    @property
    def postal_address(self) -> str:
        city_line = " ".join(part for part in (self.postal_code, self.city) if part)
        lines = [self.address_line1, self.address_line2, city_line, self.region, self.country.name]
        return "\n".join(line for line in lines if line)


def split_email_list(value: str) -> list[str]:
    return [part.strip() for part in value.replace(";", ",").replace("\n", ",").split(",") if part.strip()]


EU_VAT_COUNTRIES = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "ES",
        "FI",
        "FR",
        "GR",
        "HR",
        "HU",
        "IE",
        "IT",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SE",
        "SI",
        "SK",
    ]
)


def normalize_tax_id(tax_id: str, country_code: str) -> str:
    """Validate a VAT number offline (format and check digits, python-stdnum) and return its compact form.

    EU numbers carry their country prefix (Greece: EL); elsewhere the national format is checked where
    python-stdnum knows one. Raises ``ValidationError`` naming the problem.
    """
    from django.core.exceptions import ValidationError
    from stdnum import get_cc_module
    from stdnum.eu import vat as eu_vat

    value = tax_id.strip()
    if not value:
        return ""
    country = (country_code or "").upper()
    if country in EU_VAT_COUNTRIES:
        compact = eu_vat.compact(value)
        expected_prefix = "EL" if country == "GR" else country
        if compact[:2].isdigit():
            compact = expected_prefix + compact
        if not eu_vat.is_valid(compact):
            raise ValidationError(f"'{tax_id}' is not a valid EU VAT number (format or check digit).")
        if compact[:2] != expected_prefix:
            raise ValidationError(
                f"'{tax_id}' is a VAT number of {compact[:2]}, but the customer's country is {country}."
            )
        return compact
    module = get_cc_module(country.lower(), "vat") if country else None
    if module is not None:
        if not module.is_valid(value):
            raise ValidationError(f"'{tax_id}' is not a valid tax id for {country}.")
        return str(module.compact(value))
    return value.upper()
