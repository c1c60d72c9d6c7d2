"""The vendored rule sets: the committed XRechnung XSLT is what SchXslt makes of the vendored Schematron, and the
validator finds what an official example is known to break."""

from __future__ import annotations

from pathlib import Path

from invoicing.einvoice import validation

# EN 16931's CII example 1 (EUPL 1.2, ConnectingEurope/eInvoicing-EN16931, invoicing/einvoice/rules/SOURCES.md)
EXAMPLE = Path(__file__).parent / "example_cii_en16931.xml"


def test_the_committed_xrechnung_xslt_is_the_compiled_schematron(tmp_path, monkeypatch):
    committed = {syntax: path.read_bytes() for syntax, path in validation.XRECHNUNG_XSLT.items()}
    targets = {syntax: tmp_path / path.name for syntax, path in validation.XRECHNUNG_XSLT.items()}
    monkeypatch.setattr(validation, "XRECHNUNG_XSLT", targets)
    compiled = validation.compile_xrechnung()
    assert {syntax: path.read_bytes() for syntax, path in compiled.items()} == committed


def test_an_en16931_invoice_that_is_no_xrechnung_fails_exactly_the_xrechnung_rules():
    """It passes the CII XSD and EN 16931, and fails XRechnung's seller contact and buyer reference rules (and
    warns about its specification identifier) — as it should, being no XRechnung."""
    content = EXAMPLE.read_bytes()
    assert validation.validate(content, xrechnung=False).errors == ()
    report = validation.validate(content, xrechnung=True)
    assert {failure.rule for failure in report.errors} == {"BR-DE-2", "BR-DE-15"}
    assert "BR-DE-21" in {failure.rule for failure in report.warnings}  # a warning: it does not block


def test_a_broken_document_names_the_xsd_problem():
    content = EXAMPLE.read_bytes().replace(b"<ram:TypeCode>380</ram:TypeCode>", b"<ram:Bogus>380</ram:Bogus>", 1)
    failures = validation.validate(content, xrechnung=False).errors
    assert any(failure.rule == "XSD" and "Bogus" in failure.text for failure in failures)
