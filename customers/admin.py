from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from core import formatting as fmt
from core.admin_lists import QuickActionCheckbox, badge
from core.admin_pages import ObjectTool, object_action_page
from core.audit import AuditTrailMixin
from core.imports import ImportAdminMixin, ImportReport, ImportUploadForm
from customers.models import Customer, PortalUser, SellerProfile, VatCheck, VatStatus
from customers.selectors import customer_has_billing_history
from customers.services import (
    IMPORT_COLUMNS,
    REQUIRED_COLUMNS,
    customer_archive,
    customer_unarchive,
    customers_import_csv,
)


def _logged(value: Any, limit: int = 100) -> str:
    text = "—" if value in (None, "") else str(value)
    return f"“{text[:limit]}{'…' if len(text) > limit else ''}”"


class CustomerImportUploadForm(ImportUploadForm):
    file = forms.FileField(label="CSV file", help_text="UTF-8, with a header row. See the column list below.")


class CustomerAdminForm(forms.ModelForm):
    """The admin builds the model form from this base. PostgreSQL's jsonb cannot store a NUL character
    (``\u0000``), so a metadata value holding one is a form error here instead of a database error on save."""

    def clean_metadata(self) -> Any:
        metadata = self.cleaned_data.get("metadata")
        if _contains_nul(metadata):
            raise forms.ValidationError("Metadata cannot contain NUL characters (\\u0000).")
        return metadata


def _contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(key) or _contains_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_contains_nul(item) for item in value)
    return False


class PortalUserInline(admin.TabularInline):
    model = PortalUser
    extra = 0
    fields = ("email", "is_active", "invited_at", "last_login_at")
    readonly_fields = ("invited_at", "last_login_at")
    verbose_name_plural = "portal users (sign in with an e-mailed link; use the “Invite to portal” action)"


class AccountTypeFilter(admin.SimpleListFilter):
    """Parent accounts, child accounts (per billing mode) and accounts that are neither."""

    title = "parent account"
    parameter_name = "account"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("parent", "Parents (with child accounts)"), ("child", "Child accounts"), ("single", "Neither")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Customer]) -> QuerySet[Customer]:
        children = Customer.objects.filter(parent_id=OuterRef("pk"))
        if self.value() == "parent":
            return queryset.filter(Exists(children))
        if self.value() == "child":
            return queryset.filter(parent__isnull=False)
        if self.value() == "single":
            return queryset.filter(parent__isnull=True).exclude(Exists(children))
        return queryset


CHILDREN_SHOWN = 50


@admin.register(Customer)
class CustomerAdmin(QuickActionCheckbox, AuditTrailMixin, ImportAdminMixin, admin.ModelAdmin):
    form = CustomerAdminForm
    # Columns that fit 1280 px beside the filter; an archived customer's name carries an "Archived" badge.
    list_display = ("name_display", "email_display", "country_display", "currency", "tax_status", "terms_display")
    list_display_links = ("name_display",)
    list_filter = (
        "is_archived",
        "tax_status",
        "vat_status",
        "currency",
        "country",
        "language",
        AccountTypeFilter,
        "billing_mode",
    )
    autocomplete_fields = ("parent",)
    search_fields = ("name", "legal_name", "email", "tax_id", "external_id")
    show_full_result_count = False
    list_per_page = 50
    readonly_fields = ("created_at", "updated_at", "vat_check_display", "children_display")
    actions = ("archive_customers", "unarchive_customers", "invite_to_portal")
    inlines: ClassVar[list[Any]] = [PortalUserInline]
    fieldsets = (
        (None, {"fields": ("name", "legal_name", "external_id", "is_archived")}),
        ("Contact", {"fields": ("email", "cc_emails", "phone", "language")}),
        (
            "Billing address",
            {"fields": ("address_line1", "address_line2", ("postal_code", "city"), "region", "country")},
        ),
        (
            "Tax and terms",
            {
                "fields": (
                    "tax_id",
                    "vat_check_display",
                    "tax_status",
                    "currency",
                    "payment_terms_days",
                    "review_invoices",
                )
            },
        ),
        (
            "Parent account",
            {
                "description": "A child account is billed on its own invoices, on the parent's consolidated invoice "
                "(lines grouped per child, taxed per child), or on its own invoices addressed to and payable by the "
                "parent (docs/decisions/parent-accounts.md).",
                "fields": (("parent", "billing_mode"), "children_display"),
            },
        ),
        (
            "Where a consumer is (EU OSS evidence)",
            {
                "classes": ("collapse",),
                "description": "With the billing address, two of these pieces must agree for a consumer taxed in "
                "another EU country (docs/decisions/vat-validation.md).",
                "fields": (("ip_country", "bank_country"),),
            },
        ),
        (
            "E-invoicing",
            {
                "fields": (
                    "einvoice_format",
                    ("buyer_reference", "purchase_order"),
                    ("einvoice_address", "einvoice_address_scheme"),
                )
            },
        ),
        ("Other", {"classes": ("collapse",), "fields": ("notes", "metadata", "created_at", "updated_at")}),
    )

    @admin.display(description="country", ordering="country")
    def country_display(self, obj: Customer) -> str:
        # The country's name straight from django-countries; the default cell looked it up in the field's 249
        # flattened choices on every row (half of the list's time, docs/PERFORMANCE.md "Load").
        name = obj.country.name if obj.country else "-"
        return format_html('<span class="cell-text narrow" title="{}">{}</span>', name, name)

    @admin.display(description="name", ordering="name")
    def name_display(self, obj: Customer) -> str:
        name = format_html('<span class="cell-text" title="{}">{}</span>', obj.name, obj.name)
        return format_html("{} {}", name, badge("Archived", "muted")) if obj.is_archived else name

    @admin.display(description="billing e-mail", ordering="email")
    def email_display(self, obj: Customer) -> str:
        return format_html('<span class="cell-text" title="{}">{}</span>', obj.email, obj.email)

    @admin.display(description="VAT number check")
    def vat_check_display(self, obj: Customer) -> str:
        """The VIES verdict on the number and the latest check's evidence (date, consultation number)."""
        if obj.pk is None or not obj.tax_id:
            return "—"
        tone = {
            VatStatus.VALID: "success",
            VatStatus.INVALID: "danger",
            VatStatus.UNAVAILABLE: "warning",
        }.get(VatStatus(obj.vat_status), "muted")
        status = badge(obj.get_vat_status_display(), tone)
        check = obj.vat_checks.filter(vat_number=obj.tax_id).first()
        if check is None:
            return status
        if check.checked_at is None:
            detail = f"asked {check.requested_at:%Y-%m-%d %H:%M}, {check.attempts} attempt(s)"
            if check.error:
                detail += f": {check.error}"
        else:
            detail = f"VIES answer of {check.request_date or check.checked_at.date():%Y-%m-%d}"
            if check.consultation_number:
                detail += f", consultation number {check.consultation_number}"
            if check.trader_name:
                detail += f", registered to {check.trader_name}"
        return format_html('{} <span class="help">{}</span>', status, detail)

    @admin.display(description="child accounts")
    def children_display(self, obj: Customer) -> str:
        """The first children with links and billing mode; the rest behind a link to the filtered list."""
        if obj.pk is None:
            return "—"
        children = list(obj.children.order_by("name", "pk")[: CHILDREN_SHOWN + 1])
        if not children:
            return "—"
        rows = format_html_join(
            "",
            '<div class="child-account"><a href="{}">{}</a> · {}</div>',
            (
                (
                    reverse("admin:customers_customer_change", args=[child.pk]),
                    child.name,
                    child.get_billing_mode_display(),
                )
                for child in children[:CHILDREN_SHOWN]
            ),
        )
        more = ""
        if len(children) > CHILDREN_SHOWN:
            url = reverse("admin:customers_customer_changelist") + f"?parent__id__exact={obj.pk}"
            more = format_html('<div><a href="{}">All child accounts</a></div>', url)
        return format_html("{}{}", rows, more)

    @admin.display(description="terms", ordering="payment_terms_days")
    def terms_display(self, obj: Customer) -> str:
        return f"{obj.payment_terms_days} days"

    # --- the customer page as the account's home ---
    # Apps above add the account's blocks (balance, invoices, subscriptions, payments, e-mails …) as read-only
    # fields of the "Account" section, and their quick actions as buttons (``get_object_tools``); see
    # invoicing/admin/customers.py, payments/admin_pages.py, reporting/admin.py. Each block reads a bounded number
    # of rows (the newest ``ACCOUNT_ROWS``, with a "see all" link to the filtered list).
    account_fields: tuple[str, ...] = ()
    # TIMELINE (issue 18, audit18's part): a read-only field named ``timeline_display``, defined by the audit
    # timeline's owner on this admin, is shown in its own "Timeline" section below the account. Not built here.
    timeline_field = "timeline_display"

    def get_readonly_fields(self, request: HttpRequest, obj: Customer | None = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))
        if obj is None:
            return fields
        timeline = (self.timeline_field,) if hasattr(self, self.timeline_field) else ()
        return (*fields, *(name for name in (*self.account_fields, *timeline) if name not in fields))

    def get_fieldsets(self, request: HttpRequest, obj: Customer | None = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is None:
            return fieldsets
        if self.account_fields:
            # first: the balance and what is open is what staff come to this page for
            fieldsets.insert(0, ("Account", {"classes": ("account",), "fields": self.account_fields}))
        if hasattr(self, self.timeline_field):
            at = next((i for i, (name, _) in enumerate(fieldsets) if name == "Audit trail"), len(fieldsets))
            fieldsets.insert(at, ("Timeline", {"fields": (self.timeline_field,)}))
        return fieldsets

    def get_object_tools(self, request: HttpRequest, customer: Customer) -> list[ObjectTool]:
        """The quick actions on the customer's page (apps above add theirs), in ``ObjectTool.order``."""
        tools = []
        if request.user.has_perm("customers.change_customer"):
            url = reverse("admin:customers_customer_invite_portal", args=[customer.pk])
            tools.append(ObjectTool("invite_portal", "Invite to portal", url, order=90))
            if customer.tax_id:
                url = reverse("admin:customers_customer_check_vat", args=[customer.pk])
                tools.append(ObjectTool("check_vat", "Check VAT number", url, order=95))
        return tools

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        customer = Customer.objects.filter(pk=object_id).first() if object_id.isdigit() else None
        tools = self.get_object_tools(request, customer) if customer is not None else []
        extra_context = {**(extra_context or {}), "object_tools": sorted(tools, key=lambda tool: tool.order)}
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:customer_id>/invite-to-portal/",
                self.admin_site.admin_view(self.invite_portal_view),
                name="customers_customer_invite_portal",
            ),
            path(
                "<int:customer_id>/check-vat-number/",
                self.admin_site.admin_view(self.check_vat_view),
                name="customers_customer_check_vat",
            ),
            *super().get_urls(),
        ]

    def check_vat_view(self, request: HttpRequest, customer_id: int) -> HttpResponse:
        """Ask VIES about the customer's number now (the daily job does it for numbers due)."""
        if not request.user.has_perm("customers.change_customer"):
            raise PermissionDenied
        customer = get_object_or_404(Customer, pk=customer_id)
        if request.method == "POST":
            from customers.vat import vat_check_now

            check = vat_check_now(customer=customer)
            if check is None:
                self.message_user(
                    request, f"{customer.tax_id or 'No number'} is not an EU VAT number VIES can check.", messages.INFO
                )
            else:
                level = {"valid": messages.SUCCESS, "invalid": messages.WARNING}.get(check.status, messages.ERROR)
                text = {
                    "valid": f"VIES: {check.vat_number} is valid.",
                    "invalid": f"VIES: {check.vat_number} is not registered. Reverse charge no longer applies to "
                    "this customer's new invoices; correct the number or the tax status.",
                }.get(check.status, f"VIES did not answer ({check.error}); the daily job will ask again.")
                self.log_change(request, customer, f"Checked the VAT number {check.vat_number}: {check.status}.")
                self.message_user(request, text, level)
            return HttpResponseRedirect(reverse("admin:customers_customer_change", args=[customer.pk]))
        checks = list(customer.vat_checks.all()[:5])
        return object_action_page(
            self,
            request,
            original=customer,
            title=f"Check the VAT number of {customer}",
            intro="Asks the EU's VIES whether the number is registered, now. The answer is kept as evidence (date "
            "and consultation number). A number VIES finds invalid is no longer used for the reverse charge.",
            subject_rows=[
                ("VAT number", customer.tax_id or "— (none)"),
                ("Status", customer.get_vat_status_display()),
                *(
                    (
                        f"Check of {check.requested_at:%Y-%m-%d %H:%M}",
                        f"{check.vat_number}: {check.get_status_display()}"
                        + (f", consultation number {check.consultation_number}" if check.consultation_number else "")
                        + (f" ({check.error})" if check.error else ""),
                    )
                    for check in checks
                ),
            ],
            submit_label="Check now",
        )

    def invite_portal_view(self, request: HttpRequest, customer_id: int) -> HttpResponse:
        if not request.user.has_perm("customers.change_customer"):
            raise PermissionDenied
        customer = get_object_or_404(Customer, pk=customer_id)
        if request.method == "POST":
            from customers.login_email import send_login_email
            from customers.portal_services import portal_user_invite

            link = portal_user_invite(customer=customer)
            send_login_email(link, invite=True)
            text = (
                f"Sent a portal invitation to {link.portal_user.email} "
                f"(the link is valid until {link.expires_at:%Y-%m-%d %H:%M})."
            )
            self.log_change(request, customer, f"Invited {link.portal_user.email} to the portal.")
            self.message_user(request, text, messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:customers_customer_change", args=[customer.pk]))
        users = list(customer.portal_users.order_by("email"))
        return object_action_page(
            self,
            request,
            original=customer,
            title=f"Invite {customer} to the portal",
            intro="E-mails a sign-in link to the billing address. The customer then sees their invoices, credit notes, "
            "payments and subscriptions, and can pay open invoices. No password is involved.",
            subject_rows=[
                ("Billing e-mail", customer.email or "— (none: add one first)"),
                (
                    "Portal users now",
                    ", ".join(f"{u.email}{'' if u.is_active else ' (inactive)'}" for u in users) or "none",
                ),
            ],
            submit_label="Send invitation",
        )

    def construct_change_message(
        self, request: HttpRequest, form: Any, formsets: Any, add: bool = False
    ) -> list[dict[str, Any]]:
        """The admin log of a customer names each changed field with its old and new value (billing identity
        changes are what an auditor asks about); the page's "Audit trail" block shows it."""
        message: list[dict[str, Any]] = super().construct_change_message(request, form, formsets, add)
        if add or not form.changed_data:
            return message
        changes = [
            f"{form.fields[name].label or name}: {_logged(form.initial.get(name))} → "
            f"{_logged(form.cleaned_data.get(name))}"
            for name in form.changed_data
        ]
        return [{"changed": {"fields": changes}}, *message[1:]]

    def has_delete_permission(self, request: HttpRequest, obj: Customer | None = None) -> bool:
        if obj is not None and customer_has_billing_history(customer=obj):
            return False
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
        kept = [c for c in queryset if customer_has_billing_history(customer=c)]
        if kept:
            names = ", ".join(str(c) for c in kept[:5])
            self.message_user(
                request,
                f"Not deleted, archive instead — these have billing history: {names}",
                messages.WARNING,
            )
        queryset.exclude(pk__in=[c.pk for c in kept]).delete()

    @admin.action(description="Archive selected customers", permissions=["change"])
    def archive_customers(self, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
        for customer in queryset:
            customer_archive(customer=customer)
            self.log_change(request, customer, "Archived.")
        self.message_user(request, f"Archived {queryset.count()} customer(s).", messages.SUCCESS)

    @admin.action(description="Unarchive selected customers", permissions=["change"])
    def unarchive_customers(self, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
        for customer in queryset:
            customer_unarchive(customer=customer)
            self.log_change(request, customer, "Unarchived.")
        self.message_user(request, f"Unarchived {queryset.count()} customer(s).", messages.SUCCESS)

    @admin.action(description="Invite to portal (e-mail a sign-in link to the billing e-mail)", permissions=["change"])
    def invite_to_portal(self, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
        from customers.login_email import send_login_email
        from customers.portal_services import PortalInviteError, portal_user_invite

        invited, problems = 0, []
        for customer in queryset:
            try:
                link = portal_user_invite(customer=customer)
            except PortalInviteError as exc:
                problems.append(str(exc))
                continue
            send_login_email(link, invite=True)
            invited += 1
        if invited:
            self.message_user(request, f"Sent {invited} portal invitation(s).", messages.SUCCESS)
        if problems:
            self.message_user(request, "Not invited: " + "; ".join(problems[:5]), messages.WARNING)

    # --- CSV import (core.imports) ---

    import_title = "Import customers from CSV"
    import_template = "admin/customers/customer/import.html"
    import_form_class = CustomerImportUploadForm

    def has_import_permission(self, request: HttpRequest) -> bool:
        return self.has_add_permission(request) and self.has_change_permission(request)

    def run_import(self, request: HttpRequest, form: ImportUploadForm) -> ImportReport:
        return customers_import_csv(stream=form.cleaned_data["file"], dry_run=form.cleaned_data["dry_run"])

    def import_context(self, request: HttpRequest) -> dict[str, Any]:
        return {"columns": IMPORT_COLUMNS, "required_columns": REQUIRED_COLUMNS}


class SellerProfileForm(forms.ModelForm):
    """The footer is stored per language (``invoice_footer``: {"en": …, "de": …}); the form shows one text box
    per document language."""

    class Meta:
        model = SellerProfile
        fields = (
            "legal_name", "address", "country", "vat_id", "tax_number", "register_court", "register_number",
            "managing_directors", "email", "email_sender", "phone", "website", "logo", "bank_name", "iban", "bic",
        )  # fmt: skip
        widgets: ClassVar[dict[str, Any]] = {
            "address": forms.Textarea(attrs={"rows": 3, "cols": 60}),
            **{
                name: forms.TextInput(attrs={"size": 60})
                for name in ("legal_name", "managing_directors", "email_sender", "register_court")
            },
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        footers = self.instance.invoice_footer if isinstance(self.instance.invoice_footer, dict) else {}
        for code in fmt.SUPPORTED_LANGUAGES:
            self.fields[f"footer_{code}"].initial = footers.get(code, "")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        self.instance.invoice_footer = {
            code: text.strip() for code in fmt.SUPPORTED_LANGUAGES if (text := cleaned.get(f"footer_{code}") or "")
        }
        return cleaned


# One box per document language, declared on the class so that the admin's form factory knows the fields.
for _code in fmt.SUPPORTED_LANGUAGES:
    SellerProfileForm.base_fields[f"footer_{_code}"] = SellerProfileForm.declared_fields[f"footer_{_code}"] = (
        forms.CharField(
            label=f"Invoice footer ({_code})",
            required=False,
            widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
            help_text="Printed under every invoice and credit note in this language, e.g. a thank-you line.",
        )
    )


@admin.register(SellerProfile)
class SellerProfileAdmin(AuditTrailMixin, admin.ModelAdmin):
    """One row, created by the migration that made the model: it is edited, never added or deleted. Issued
    documents keep their own copy (``seller_snapshot``), so an edit here affects the next document only."""

    form = SellerProfileForm
    list_display = ("__str__", "vat_id", "register_number", "updated_at")
    fieldsets = (
        ("Legal identity", {"fields": ("legal_name", "address", "country", "vat_id", "tax_number")}),
        ("Commercial register", {"fields": ("register_court", "register_number", "managing_directors")}),
        ("Contact", {"fields": ("email", "email_sender", "phone", "website", "logo")}),
        ("Bank account (printed with the payment terms)", {"fields": ("bank_name", "iban", "bic")}),
        ("Invoice footer", {"fields": tuple(f"footer_{code}" for code in fmt.SUPPORTED_LANGUAGES)}),
    )

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and not self.has_change_permission(request, obj):
            # read-only staff see the stored footers; the per-language boxes exist only in the edit form
            return [(name, {**options, "fields": _read_only_footer(options["fields"])}) for name, options in fieldsets]
        return fieldsets

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # one row, created by the migration (customers 0005): it is edited, never added

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: SellerProfile, form: Any, change: bool) -> None:
        obj.pk = SellerProfile.SINGLETON_PK
        super().save_model(request, obj, form, change)
        messages.info(request, "Saved. Documents issued from now on print these details; issued ones keep theirs.")


def _read_only_footer(fields: Any) -> tuple[str, ...]:
    names = [name for name in fields if not str(name).startswith("footer_")]
    return (*names, "invoice_footer") if len(names) < len(fields) else tuple(names)


@admin.register(VatCheck)
class VatCheckAdmin(admin.ModelAdmin):
    """The VIES answers kept as evidence: read-only (a check is made from the customer's page or by the job)."""

    list_display = ("customer", "vat_number", "status_display", "request_date", "consultation_number", "attempts")
    list_filter = ("status", "request_date")
    search_fields = ("vat_number", "consultation_number", "customer__name")
    list_select_related = ("customer",)
    show_full_result_count = False
    list_per_page = 50
    readonly_fields = (
        "customer",
        "vat_number",
        "status",
        "requested_at",
        "checked_at",
        "request_date",
        "consultation_number",
        "trader_name",
        "trader_address",
        "error",
        "attempts",
    )

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: VatCheck) -> str:
        tone = {"valid": "success", "invalid": "danger", "unavailable": "warning"}.get(obj.status, "neutral")
        return badge(obj.get_status_display(), tone)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: VatCheck | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: VatCheck | None = None) -> bool:
        return False
