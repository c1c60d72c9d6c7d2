from __future__ import annotations

from tests.invoicing.conftest import series, vat_at, vat_de  # noqa: F401 - the invoicing fixtures, shared
