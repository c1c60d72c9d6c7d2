"""OASIS UBL 2.1 Invoice / CreditNote for XRechnung UBL and Peppol BIS Billing 3.0.

Element order follows the UBL 2.1 schemas (not vendored: OASIS publishes them; the EN 16931 rules check the
content, and tests check the order of the elements they read)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from lxml import etree

from invoicing.einvoice.model import CREDIT_NOTE, OUTSIDE_SCOPE, AllowanceCharge, Document, Line, Party, TaxSubtotal
from invoicing.einvoice.syntax import Profile, amount, decimal, iso_date

CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
ROOT_NS = {
    "Invoice": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    "CreditNote": "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2",
}
PREFIXES: dict[str | None, str] = {"cac": CAC, "cbc": CBC}


def _el(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    prefix, name = tag.split(":")
    element = etree.SubElement(parent, f"{{{PREFIXES[prefix]}}}{name}", attrs)
    if text is not None:
        element.text = text
    return element


def _money(parent: etree._Element, tag: str, value: Decimal, currency: str) -> None:
    _el(parent, tag, amount(value, currency), currencyID=currency)


def _period(parent: etree._Element, start: dt.date | None, end: dt.date | None) -> None:
    if start and end:
        period = _el(parent, "cac:InvoicePeriod")
        _el(period, "cbc:StartDate", iso_date(start))
        _el(period, "cbc:EndDate", iso_date(end))


def _category(
    parent: etree._Element,
    tag: str,
    category: str,
    rate: Decimal,
    *,
    reason: str = "",
    code: str = "",
    breakdown: bool = False,
) -> None:
    node = _el(parent, tag)
    _el(node, "cbc:ID", category)
    if category != OUTSIDE_SCOPE or breakdown:  # BR-O-05/06/07: no rate on "not subject to VAT" lines; the
        _el(node, "cbc:Percent", decimal(rate))  # breakdown keeps its 0 (XRechnung BR-DE-14)
    if code:
        _el(node, "cbc:TaxExemptionReasonCode", code)
    if reason:
        _el(node, "cbc:TaxExemptionReason", reason)
    _el(_el(node, "cac:TaxScheme"), "cbc:ID", "VAT")


def _party(parent: etree._Element, tag: str, party: Party, *, seller: bool) -> None:
    node = _el(_el(parent, tag), "cac:Party")
    if party.electronic_address:
        _el(node, "cbc:EndpointID", party.electronic_address, schemeID=party.electronic_scheme)
    if party.identifier and not seller:
        _el(_el(node, "cac:PartyIdentification"), "cbc:ID", party.identifier)
    if party.trading_name:
        _el(_el(node, "cac:PartyName"), "cbc:Name", party.trading_name)
    address = _el(node, "cac:PostalAddress")
    if party.street:
        _el(address, "cbc:StreetName", party.street)
    if party.additional_street:
        _el(address, "cbc:AdditionalStreetName", party.additional_street)
    if party.city:
        _el(address, "cbc:CityName", party.city)
    if party.postcode:
        _el(address, "cbc:PostalZone", party.postcode)
    if party.subdivision:
        _el(address, "cbc:CountrySubentity", party.subdivision)
    _el(_el(address, "cac:Country"), "cbc:IdentificationCode", party.country)
    if party.vat_id:
        scheme = _el(node, "cac:PartyTaxScheme")
        _el(scheme, "cbc:CompanyID", party.vat_id)
        _el(_el(scheme, "cac:TaxScheme"), "cbc:ID", "VAT")
    if seller and party.tax_number:
        scheme = _el(node, "cac:PartyTaxScheme")
        _el(scheme, "cbc:CompanyID", party.tax_number)
        _el(_el(scheme, "cac:TaxScheme"), "cbc:ID", "FC")
    legal = _el(node, "cac:PartyLegalEntity")
    _el(legal, "cbc:RegistrationName", party.name)
    if party.registration:
        _el(legal, "cbc:CompanyID", party.registration)
    if party.contact_name or party.contact_phone or party.contact_email:
        contact = _el(node, "cac:Contact")
        if party.contact_name:
            _el(contact, "cbc:Name", party.contact_name)
        if party.contact_phone:
            _el(contact, "cbc:Telephone", party.contact_phone)
        if party.contact_email:
            _el(contact, "cbc:ElectronicMail", party.contact_email)


def _allowance(parent: etree._Element, item: AllowanceCharge, currency: str) -> None:
    node = _el(parent, "cac:AllowanceCharge")
    _el(node, "cbc:ChargeIndicator", "true" if item.charge else "false")
    if item.reason_code:
        _el(node, "cbc:AllowanceChargeReasonCode", item.reason_code)
    _el(node, "cbc:AllowanceChargeReason", item.reason)
    _money(node, "cbc:Amount", item.amount, currency)
    _category(node, "cac:TaxCategory", item.category, item.rate)


def _subtotal(parent: etree._Element, row: TaxSubtotal, currency: str) -> None:
    node = _el(parent, "cac:TaxSubtotal")
    _money(node, "cbc:TaxableAmount", row.taxable, currency)
    _money(node, "cbc:TaxAmount", row.tax, currency)
    _category(
        node,
        "cac:TaxCategory",
        row.category,
        row.rate,
        reason=row.exemption_reason,
        code=row.exemption_code,
        breakdown=True,
    )


def _line(parent: etree._Element, line: Line, currency: str, *, credit: bool) -> None:
    node = _el(parent, "cac:CreditNoteLine" if credit else "cac:InvoiceLine")
    _el(node, "cbc:ID", line.id)
    _el(
        node,
        "cbc:CreditedQuantity" if credit else "cbc:InvoicedQuantity",
        decimal(line.quantity),
        unitCode=line.unit_code,
    )
    _money(node, "cbc:LineExtensionAmount", line.net_amount, currency)
    _period(node, line.period_start, line.period_end)
    for allowance in line.allowances:
        charge = _el(node, "cac:AllowanceCharge")
        _el(charge, "cbc:ChargeIndicator", "true" if allowance.charge else "false")
        if allowance.reason_code:
            _el(charge, "cbc:AllowanceChargeReasonCode", allowance.reason_code)
        _el(charge, "cbc:AllowanceChargeReason", allowance.reason)
        _money(charge, "cbc:Amount", allowance.amount, currency)
    item = _el(node, "cac:Item")
    if line.description:
        _el(item, "cbc:Description", line.description)
    _el(item, "cbc:Name", line.name)
    if line.seller_item_id:
        _el(_el(item, "cac:SellersItemIdentification"), "cbc:ID", line.seller_item_id)
    _category(item, "cac:ClassifiedTaxCategory", line.category, line.rate)
    price = _el(node, "cac:Price")
    _el(price, "cbc:PriceAmount", decimal(line.net_price), currencyID=currency)


def build(document: Document, profile: Profile) -> bytes:
    credit = document.kind == CREDIT_NOTE
    root_name = "CreditNote" if credit else "Invoice"
    currency = document.currency
    nsmap: dict[str | None, str] = {None: ROOT_NS[root_name], **PREFIXES}
    root = etree.Element(f"{{{ROOT_NS[root_name]}}}{root_name}", nsmap=nsmap)
    _el(root, "cbc:CustomizationID", profile.customization_id)
    if profile.profile_id:
        _el(root, "cbc:ProfileID", profile.profile_id)
    _el(root, "cbc:ID", document.number)
    _el(root, "cbc:IssueDate", iso_date(document.issue_date))
    if document.due_date and not credit:
        _el(root, "cbc:DueDate", iso_date(document.due_date))
    _el(root, "cbc:CreditNoteTypeCode" if credit else "cbc:InvoiceTypeCode", document.type_code)
    for note in document.notes:
        _el(root, "cbc:Note", note)
    _el(root, "cbc:DocumentCurrencyCode", currency)
    if document.buyer_reference:
        _el(root, "cbc:BuyerReference", document.buyer_reference)
    _period(root, document.period_start, document.period_end)
    if document.order_reference:
        _el(_el(root, "cac:OrderReference"), "cbc:ID", document.order_reference)
    if document.preceding_number:
        reference = _el(_el(root, "cac:BillingReference"), "cac:InvoiceDocumentReference")
        _el(reference, "cbc:ID", document.preceding_number)
        if document.preceding_date:
            _el(reference, "cbc:IssueDate", iso_date(document.preceding_date))
    _party(root, "cac:AccountingSupplierParty", document.seller, seller=True)
    _party(root, "cac:AccountingCustomerParty", document.buyer, seller=False)
    if (document.period_end and not document.period_start) or document.deliver_to:
        delivery = _el(root, "cac:Delivery")
        if document.period_end and not document.period_start:
            _el(delivery, "cbc:ActualDeliveryDate", iso_date(document.period_end))
        if (place := document.deliver_to) is not None:
            address = _el(_el(delivery, "cac:DeliveryLocation"), "cac:Address")
            for tag, value in (
                ("cbc:StreetName", place.street),
                ("cbc:CityName", place.city),
                ("cbc:PostalZone", place.postcode),
            ):
                if value:
                    _el(address, tag, value)
            _el(_el(address, "cac:Country"), "cbc:IdentificationCode", place.country)
    payment = document.payment
    if payment:
        means = _el(root, "cac:PaymentMeans")
        _el(means, "cbc:PaymentMeansCode", payment.means_code)
        if credit and document.due_date:
            _el(means, "cbc:PaymentDueDate", iso_date(document.due_date))
        if payment.remittance:
            _el(means, "cbc:PaymentID", payment.remittance)
        if payment.iban:
            account = _el(means, "cac:PayeeFinancialAccount")
            _el(account, "cbc:ID", payment.iban)
            if payment.account_name:
                _el(account, "cbc:Name", payment.account_name)
            if payment.bic:
                _el(_el(account, "cac:FinancialInstitutionBranch"), "cbc:ID", payment.bic)
        if payment.mandate_reference:
            mandate = _el(means, "cac:PaymentMandate")
            _el(mandate, "cbc:ID", payment.mandate_reference)
            if payment.debited_account:
                _el(_el(mandate, "cac:PayerFinancialAccount"), "cbc:ID", payment.debited_account)
    if document.payment_terms:
        _el(_el(root, "cac:PaymentTerms"), "cbc:Note", document.payment_terms)
    for item in document.allowances:
        _allowance(root, item, currency)
    tax_total = _el(root, "cac:TaxTotal")
    _money(tax_total, "cbc:TaxAmount", document.tax_total, currency)
    for row in document.tax_subtotals:
        _subtotal(tax_total, row, currency)
    totals = _el(root, "cac:LegalMonetaryTotal")
    _money(totals, "cbc:LineExtensionAmount", document.line_total, currency)
    _money(totals, "cbc:TaxExclusiveAmount", document.tax_exclusive, currency)
    _money(totals, "cbc:TaxInclusiveAmount", document.tax_inclusive, currency)
    if document.allowance_total:
        _money(totals, "cbc:AllowanceTotalAmount", document.allowance_total, currency)
    if document.charge_total:
        _money(totals, "cbc:ChargeTotalAmount", document.charge_total, currency)
    if document.prepaid:
        _money(totals, "cbc:PrepaidAmount", document.prepaid, currency)
    _money(totals, "cbc:PayableAmount", document.payable, currency)
    for line in document.lines:
        _line(root, line, currency, credit=credit)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
