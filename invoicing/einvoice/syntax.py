"""Shared by the UBL and CII builders: profiles (which specification a document claims) and how values are
written. Money is written as the document states it, at the currency's minor units; never recomputed here."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from core.money import quantum

EN16931 = "urn:cen.eu:en16931:2017"
XRECHNUNG = "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0"
PEPPOL_BIS = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
PEPPOL_PROFILE = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"


@dataclass(frozen=True)
class Profile:
    """What the document claims to follow: the specification identifier (BT-24) and, for Peppol, the business
    process (BT-23)."""

    customization_id: str
    profile_id: str = ""

    @property
    def xrechnung(self) -> bool:
        return self.customization_id == XRECHNUNG


def amount(value: Decimal, currency: str) -> str:
    """A money amount at the currency's minor units, plain decimal notation: JPY 3040, EUR 12.50."""
    return f"{value.quantize(quantum(currency)):f}"


def decimal(value: Decimal) -> str:
    """A quantity, price or percentage without trailing zeros or exponent: 1, 7.5, 0.0125."""
    text = f"{value.normalize():f}"
    return text if text != "-0" else "0"


def iso_date(value: dt.date) -> str:
    return value.isoformat()


def cii_date(value: dt.date) -> str:
    return value.strftime("%Y%m%d")
