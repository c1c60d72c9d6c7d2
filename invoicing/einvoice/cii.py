"""UN/CEFACT Cross Industry Invoice (CII D16B) for XRechnung CII and Factur-X / ZUGFeRD (EN 16931 profile).

Element order follows the CII XSD (``rules/en16931/cii/xsd``), which ``validation`` checks on every document."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from lxml import etree

from invoicing.einvoice.model import CREDIT_NOTE, OUTSIDE_SCOPE, AllowanceCharge, Document, Line, Party, TaxSubtotal
from invoicing.einvoice.syntax import Profile, amount, cii_date, decimal

RSM = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
QDT = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
NSMAP = {"rsm": RSM, "ram": RAM, "udt": UDT, "qdt": QDT}


def _el(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    prefix, name = tag.split(":")
    element = etree.SubElement(parent, f"{{{NSMAP[prefix]}}}{name}", attrs)
    if text is not None:
        element.text = text
    return element


def _date(parent: etree._Element, tag: str, value: dt.date, *, qualified: bool = False) -> None:
    holder = _el(parent, tag)
    _el(holder, "qdt:DateTimeString" if qualified else "udt:DateTimeString", cii_date(value), format="102")


def _party(parent: etree._Element, tag: str, party: Party, *, seller: bool) -> None:
    node = _el(parent, tag)
    if party.identifier and not seller:
        _el(node, "ram:ID", party.identifier)
    _el(node, "ram:Name", party.name)
    if party.registration or party.trading_name:
        legal = _el(node, "ram:SpecifiedLegalOrganization")
        if party.registration:
            _el(legal, "ram:ID", party.registration)
        if party.trading_name:
            _el(legal, "ram:TradingBusinessName", party.trading_name)
    if party.contact_name or party.contact_phone or party.contact_email:
        contact = _el(node, "ram:DefinedTradeContact")
        if party.contact_name:
            _el(contact, "ram:PersonName", party.contact_name)
        if party.contact_phone:
            _el(_el(contact, "ram:TelephoneUniversalCommunication"), "ram:CompleteNumber", party.contact_phone)
        if party.contact_email:
            _el(_el(contact, "ram:EmailURIUniversalCommunication"), "ram:URIID", party.contact_email)
    address = _el(node, "ram:PostalTradeAddress")
    if party.postcode:
        _el(address, "ram:PostcodeCode", party.postcode)
    if party.street:
        _el(address, "ram:LineOne", party.street)
    if party.additional_street:
        _el(address, "ram:LineTwo", party.additional_street)
    if party.city:
        _el(address, "ram:CityName", party.city)
    _el(address, "ram:CountryID", party.country)
    if party.subdivision:
        _el(address, "ram:CountrySubDivisionName", party.subdivision)
    if party.electronic_address:
        _el(
            _el(node, "ram:URIUniversalCommunication"),
            "ram:URIID",
            party.electronic_address,
            schemeID=party.electronic_scheme,
        )
    if party.vat_id:
        _el(_el(node, "ram:SpecifiedTaxRegistration"), "ram:ID", party.vat_id, schemeID="VA")
    if seller and party.tax_number:
        _el(_el(node, "ram:SpecifiedTaxRegistration"), "ram:ID", party.tax_number, schemeID="FC")


def _tax(parent: etree._Element, category: str, rate: Decimal, tag: str = "ram:ApplicableTradeTax") -> None:
    tax = _el(parent, tag)
    _el(tax, "ram:TypeCode", "VAT")
    _el(tax, "ram:CategoryCode", category)
    if category != OUTSIDE_SCOPE:  # BR-O-05/06/10: "not subject to VAT" states no rate
        _el(tax, "ram:RateApplicablePercent", decimal(rate))


def _line(parent: etree._Element, line: Line, currency: str) -> None:
    item = _el(parent, "ram:IncludedSupplyChainTradeLineItem")
    _el(_el(item, "ram:AssociatedDocumentLineDocument"), "ram:LineID", line.id)
    product = _el(item, "ram:SpecifiedTradeProduct")
    if line.seller_item_id:
        _el(product, "ram:SellerAssignedID", line.seller_item_id)
    _el(product, "ram:Name", line.name)
    if line.description:
        _el(product, "ram:Description", line.description)
    agreement = _el(item, "ram:SpecifiedLineTradeAgreement")
    _el(_el(agreement, "ram:NetPriceProductTradePrice"), "ram:ChargeAmount", decimal(line.net_price))
    _el(
        _el(item, "ram:SpecifiedLineTradeDelivery"),
        "ram:BilledQuantity",
        decimal(line.quantity),
        unitCode=line.unit_code,
    )
    settlement = _el(item, "ram:SpecifiedLineTradeSettlement")
    _tax(settlement, line.category, line.rate)
    if line.period_start and line.period_end:
        period = _el(settlement, "ram:BillingSpecifiedPeriod")
        _date(period, "ram:StartDateTime", line.period_start)
        _date(period, "ram:EndDateTime", line.period_end)
    for allowance in line.allowances:
        node = _el(settlement, "ram:SpecifiedTradeAllowanceCharge")
        _el(_el(node, "ram:ChargeIndicator"), "udt:Indicator", "true" if allowance.charge else "false")
        _el(node, "ram:ActualAmount", amount(allowance.amount, currency))
        if allowance.reason_code:
            _el(node, "ram:ReasonCode", allowance.reason_code)
        _el(node, "ram:Reason", allowance.reason)
    summation = _el(settlement, "ram:SpecifiedTradeSettlementLineMonetarySummation")
    _el(summation, "ram:LineTotalAmount", amount(line.net_amount, currency))


def _breakdown(parent: etree._Element, row: TaxSubtotal, currency: str) -> None:
    tax = _el(parent, "ram:ApplicableTradeTax")
    _el(tax, "ram:CalculatedAmount", amount(row.tax, currency))
    _el(tax, "ram:TypeCode", "VAT")
    if row.exemption_reason:
        _el(tax, "ram:ExemptionReason", row.exemption_reason)
    _el(tax, "ram:BasisAmount", amount(row.taxable, currency))
    _el(tax, "ram:CategoryCode", row.category)
    if row.exemption_code:
        _el(tax, "ram:ExemptionReasonCode", row.exemption_code)
    _el(tax, "ram:RateApplicablePercent", decimal(row.rate))  # 0 for "not subject to VAT" (XRechnung BR-DE-14)


def _allowance(parent: etree._Element, item: AllowanceCharge, currency: str) -> None:
    node = _el(parent, "ram:SpecifiedTradeAllowanceCharge")
    _el(_el(node, "ram:ChargeIndicator"), "udt:Indicator", "true" if item.charge else "false")
    _el(node, "ram:ActualAmount", amount(item.amount, currency))
    if item.reason_code:
        _el(node, "ram:ReasonCode", item.reason_code)
    _el(node, "ram:Reason", item.reason)
    _tax(node, item.category, item.rate, "ram:CategoryTradeTax")


def build(document: Document, profile: Profile) -> bytes:
    currency = document.currency
    root = etree.Element(f"{{{RSM}}}CrossIndustryInvoice", nsmap=NSMAP)
    context = _el(root, "rsm:ExchangedDocumentContext")
    if profile.profile_id:
        _el(_el(context, "ram:BusinessProcessSpecifiedDocumentContextParameter"), "ram:ID", profile.profile_id)
    _el(_el(context, "ram:GuidelineSpecifiedDocumentContextParameter"), "ram:ID", profile.customization_id)

    header = _el(root, "rsm:ExchangedDocument")
    _el(header, "ram:ID", document.number)
    _el(header, "ram:TypeCode", document.type_code)
    _date(header, "ram:IssueDateTime", document.issue_date)
    for note in document.notes:
        _el(_el(header, "ram:IncludedNote"), "ram:Content", note)

    transaction = _el(root, "rsm:SupplyChainTradeTransaction")
    for line in document.lines:
        _line(transaction, line, currency)

    agreement = _el(transaction, "ram:ApplicableHeaderTradeAgreement")
    if document.buyer_reference:
        _el(agreement, "ram:BuyerReference", document.buyer_reference)
    _party(agreement, "ram:SellerTradeParty", document.seller, seller=True)
    _party(agreement, "ram:BuyerTradeParty", document.buyer, seller=False)
    if document.order_reference:
        _el(_el(agreement, "ram:BuyerOrderReferencedDocument"), "ram:IssuerAssignedID", document.order_reference)

    delivery = _el(transaction, "ram:ApplicableHeaderTradeDelivery")
    if (place := document.deliver_to) is not None:
        address = _el(_el(delivery, "ram:ShipToTradeParty"), "ram:PostalTradeAddress")
        for tag, value in (
            ("ram:PostcodeCode", place.postcode),
            ("ram:LineOne", place.street),
            ("ram:CityName", place.city),
        ):
            if value:
                _el(address, tag, value)
        _el(address, "ram:CountryID", place.country)
    if document.period_end and not document.period_start:
        event = _el(delivery, "ram:ActualDeliverySupplyChainEvent")
        _date(event, "ram:OccurrenceDateTime", document.period_end)

    settlement = _el(transaction, "ram:ApplicableHeaderTradeSettlement")
    payment = document.payment
    if payment and payment.creditor_id:
        _el(settlement, "ram:CreditorReferenceID", payment.creditor_id)
    if payment and payment.remittance:
        _el(settlement, "ram:PaymentReference", payment.remittance)
    _el(settlement, "ram:InvoiceCurrencyCode", currency)
    if payment:
        means = _el(settlement, "ram:SpecifiedTradeSettlementPaymentMeans")
        _el(means, "ram:TypeCode", payment.means_code)
        if payment.debited_account:
            _el(_el(means, "ram:PayerPartyDebtorFinancialAccount"), "ram:IBANID", payment.debited_account)
        if payment.iban:
            account = _el(means, "ram:PayeePartyCreditorFinancialAccount")
            _el(account, "ram:IBANID", payment.iban)
            if payment.account_name:
                _el(account, "ram:AccountName", payment.account_name)
        if payment.bic:
            _el(_el(means, "ram:PayeeSpecifiedCreditorFinancialInstitution"), "ram:BICID", payment.bic)
    for row in document.tax_subtotals:
        _breakdown(settlement, row, currency)
    if document.period_start and document.period_end:
        period = _el(settlement, "ram:BillingSpecifiedPeriod")
        _date(period, "ram:StartDateTime", document.period_start)
        _date(period, "ram:EndDateTime", document.period_end)
    for item in document.allowances:
        _allowance(settlement, item, currency)
    if document.payment_terms or document.due_date or (payment and payment.mandate_reference):
        terms = _el(settlement, "ram:SpecifiedTradePaymentTerms")
        if document.payment_terms:
            _el(terms, "ram:Description", document.payment_terms)
        if document.due_date:
            _date(terms, "ram:DueDateDateTime", document.due_date)
        if payment and payment.mandate_reference:
            _el(terms, "ram:DirectDebitMandateID", payment.mandate_reference)
    totals = _el(settlement, "ram:SpecifiedTradeSettlementHeaderMonetarySummation")
    _el(totals, "ram:LineTotalAmount", amount(document.line_total, currency))
    if document.charge_total:
        _el(totals, "ram:ChargeTotalAmount", amount(document.charge_total, currency))
    if document.allowance_total:
        _el(totals, "ram:AllowanceTotalAmount", amount(document.allowance_total, currency))
    _el(totals, "ram:TaxBasisTotalAmount", amount(document.tax_exclusive, currency))
    _el(totals, "ram:TaxTotalAmount", amount(document.tax_total, currency), currencyID=currency)
    _el(totals, "ram:GrandTotalAmount", amount(document.tax_inclusive, currency))
    if document.prepaid:
        _el(totals, "ram:TotalPrepaidAmount", amount(document.prepaid, currency))
    _el(totals, "ram:DuePayableAmount", amount(document.payable, currency))
    if document.kind == CREDIT_NOTE and document.preceding_number:
        reference = _el(settlement, "ram:InvoiceReferencedDocument")
        _el(reference, "ram:IssuerAssignedID", document.preceding_number)
        if document.preceding_date:
            _date(reference, "ram:FormattedIssueDateTime", document.preceding_date, qualified=True)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
