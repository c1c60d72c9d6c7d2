"""Admin search that stays fast on a million documents.

Django's admin search ORs every search field into one WHERE over a join (``number = q OR customer.name ILIKE
'%q%' OR customer.email ILIKE '%q%'``), which PostgreSQL can only answer by scanning every invoice. Here the
customers are searched on their own (a table a tenth the size, scanned in milliseconds), and the documents are
then found by number OR by those customer ids — two index scans.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.http import HttpRequest

from customers.models import Customer

# Above this many matching customers, filter by subquery instead of an id list (still correct, slower).
_MAX_CUSTOMER_IDS = 2000


def customer_ids_matching(term: str) -> list[int] | QuerySet[Customer, int]:
    if "@" in term:
        condition = Q(email__icontains=term)
    else:
        condition = Q(name__icontains=term) | Q(legal_name__icontains=term) | Q(tax_id__iexact=term.replace(" ", ""))
        condition |= Q(external_id=term)
    matching = Customer.objects.filter(condition).values_list("pk", flat=True)
    ids = list(matching[: _MAX_CUSTOMER_IDS + 1])
    return matching if len(ids) > _MAX_CUSTOMER_IDS else ids


class NumberOrCustomerSearchMixin:
    """For admins of documents with a ``number`` and a ``customer``: search by exact number (as typed or in
    capitals) or by customer name, legal name, e-mail, tax id or external id."""

    search_number_field = "number"
    search_customer_field = "customer"

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any], search_term: str) -> Any:
        term = search_term.strip()
        if not term:
            return queryset, False
        numbers = {term, term.upper()}
        condition = Q(**{f"{self.search_number_field}__in": numbers}) | Q(
            **{f"{self.search_customer_field}__in": customer_ids_matching(term)}
        )
        return queryset.filter(condition), False
