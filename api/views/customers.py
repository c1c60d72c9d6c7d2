"""Customers and their balance. Writes go through the admin's customer form (api/forms.py)."""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from api.forms import CUSTOMER_FIELDS, CustomerApiForm, form_data, validated
from api.serializers import CustomerOut, amount_text
from api.views.base import AS_OF_PARAMETER, IDEMPOTENCY_PARAMETER, ApiViewSet
from core.dates import billing_today
from customers.models import Customer
from payments.selectors import customer_balances


class CustomerIn(serializers.Serializer):
    """Types only; the customer rules are the admin form's."""

    name = serializers.CharField(max_length=200)
    legal_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    email = serializers.EmailField(max_length=254)
    cc_emails = serializers.CharField(required=False, allow_blank=True)
    phone = serializers.CharField(max_length=40, required=False, allow_blank=True)
    address_line1 = serializers.CharField(max_length=200, required=False, allow_blank=True)
    address_line2 = serializers.CharField(max_length=200, required=False, allow_blank=True)
    postal_code = serializers.CharField(max_length=20, required=False, allow_blank=True)
    city = serializers.CharField(max_length=100, required=False, allow_blank=True)
    region = serializers.CharField(max_length=100, required=False, allow_blank=True)
    country = serializers.CharField(max_length=2, help_text="ISO 3166 alpha-2, e.g. DE.")
    tax_id = serializers.CharField(max_length=40, required=False, allow_blank=True)
    tax_status = serializers.CharField(required=False, help_text="taxable, exempt or reverse_charge.")
    currency = serializers.CharField(max_length=3, required=False)
    payment_terms_days = serializers.IntegerField(min_value=0, max_value=365, required=False)
    language = serializers.CharField(max_length=8, required=False)
    notes = serializers.CharField(required=False, allow_blank=True)
    external_id = serializers.CharField(max_length=100, required=False, allow_blank=True)
    metadata = serializers.DictField(required=False)
    review_invoices = serializers.BooleanField(required=False)
    parent = serializers.IntegerField(
        required=False, allow_null=True, help_text="The parent account's id: same currency, one level deep."
    )
    billing_mode = serializers.CharField(
        required=False,
        help_text="own (default), consolidated (on the parent's invoice, grouped per child) or parent_pays (own "
        "invoices addressed to the parent); not own needs a parent.",
    )


BalanceOut = inline_serializer(
    "CustomerBalance",
    {
        "object": serializers.CharField(),
        "customer": serializers.IntegerField(),
        "as_of": serializers.DateField(),
        "balances": inline_serializer(
            "CustomerBalanceInCurrency",
            {
                "currency": serializers.CharField(),
                "amount_due": serializers.CharField(help_text="Open and uncollectible invoices' amount due."),
                "overdue": serializers.CharField(help_text="The part of amount_due past its due date."),
                "credit": serializers.CharField(help_text="Customer credit, applied to the next invoices."),
                "net": serializers.CharField(help_text="amount_due − credit: positive means the customer owes."),
                "open_invoices": serializers.IntegerField(),
                "overdue_invoices": serializers.IntegerField(),
            },
            many=True,
        ),
    },
)


class CustomerViewSet(ApiViewSet):
    queryset = Customer.objects.all()

    @extend_schema(responses=CustomerOut(many=True))
    def list(self, request: Request) -> Response:
        queryset = Customer.objects.all()
        external_id = self.query_param("external_id")
        if external_id is not None:
            queryset = queryset.filter(external_id=external_id)
        email = self.query_param("email")
        if email is not None:
            queryset = queryset.filter(email__iexact=email)
        return self.list_response(queryset)

    @extend_schema(responses=CustomerOut)
    def retrieve(self, request: Request, pk: str) -> Response:
        return self.represented(self.object_or_404(Customer.objects.all(), pk, what="customer"))

    @extend_schema(request=CustomerIn, responses={201: CustomerOut}, parameters=[IDEMPOTENCY_PARAMETER])
    def create(self, request: Request) -> Response:
        given = self.typed(CustomerIn)
        form = validated(CustomerApiForm(data=form_data(Customer(), CUSTOMER_FIELDS, given)))  # model defaults
        with transaction.atomic():
            customer = form.save()
        return self.represented(customer, status=201)

    @extend_schema(request=CustomerIn(partial=True), responses=CustomerOut)
    def partial_update(self, request: Request, pk: str) -> Response:
        customer = self.object_or_404(Customer.objects.all(), pk, what="customer")
        given = self.typed(CustomerIn, partial=True)
        form = validated(CustomerApiForm(data=form_data(customer, CUSTOMER_FIELDS, given), instance=customer))
        with transaction.atomic():
            customer = form.save()
        return self.represented(customer)

    @extend_schema(responses=BalanceOut, parameters=[AS_OF_PARAMETER])
    @action(detail=True, methods=["get"])
    def balance(self, request: Request, pk: str) -> Response:
        """What the customer owes and their credit, per currency (the customer page's account block)."""
        customer = self.object_or_404(Customer.objects.all(), pk, what="customer")
        as_of = self.query_date("as_of") or billing_today()
        balances = customer_balances(customer=customer, as_of=as_of)
        return Response(
            {
                "object": "customer_balance",
                "customer": customer.pk,
                "as_of": as_of.isoformat(),
                "balances": [
                    {
                        "currency": currency,
                        "amount_due": amount_text(row.due, currency),
                        "overdue": amount_text(row.overdue, currency),
                        "credit": amount_text(row.credit, currency),
                        "net": amount_text(row.net, currency),
                        "open_invoices": row.open_count,
                        "overdue_invoices": row.overdue_count,
                    }
                    for currency, row in sorted(balances.items())
                ],
            }
        )
