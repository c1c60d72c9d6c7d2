from __future__ import annotations

from tests.invoicing.conftest import series, vat_at, vat_de  # noqa: F401 - the invoicing fixtures, shared
from tests.invoicing.test_tax_per_line import rates_de  # noqa: F401 - the 19 % and 7 % German rates
