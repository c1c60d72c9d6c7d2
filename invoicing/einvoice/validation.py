"""Validate an e-invoice before it is issued: the CII XSD (CII documents), the EN 16931 business rules (UBL and
CII), and the XRechnung CIUS rules when the document claims XRechnung.

The rule sets are vendored under ``rules/`` (sources, versions and licences in ``rules/SOURCES.md``). The
EN 16931 rules come compiled to XSLT; the XRechnung Schematron is compiled to XSLT with SchXslt once, by
``manage.py compile_einvoice_rules``, and the result is committed — never compiled per invoice. Each stylesheet
is compiled by Saxon once per process and kept (``functools.cache``); one check costs tens of milliseconds.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

RULES = Path(__file__).resolve().parent / "rules"
CII_XSD = RULES / "en16931/cii/xsd/uncefact/data/standard/CrossIndustryInvoice_100pD16B.xsd"
EN16931_XSLT = {
    "ubl": RULES / "en16931/ubl/EN16931-UBL-validation.xslt",
    "cii": RULES / "en16931/cii/EN16931-CII-validation.xslt",
}
XRECHNUNG_SCH = {
    "ubl": RULES / "xrechnung/schematron/ubl/XRechnung-UBL-validation.sch",
    "cii": RULES / "xrechnung/schematron/cii/XRechnung-CII-validation.sch",
}
XRECHNUNG_XSLT = {
    "ubl": RULES / "xrechnung/compiled/XRechnung-UBL-validation.xsl",
    "cii": RULES / "xrechnung/compiled/XRechnung-CII-validation.xsl",
}
SCHXSLT_PIPELINE = RULES / "schxslt/2.0/pipeline-for-svrl.xsl"
SVRL = "http://purl.oclc.org/dsdl/svrl"
BLOCKING_FLAGS = frozenset({"fatal", "error", ""})

_saxon_lock = threading.Lock()


@dataclass(frozen=True)
class Failure:
    """One failed rule: ``rule`` is its id (BR-16, BR-DE-15, or "XSD"), ``location`` the XPath of the element,
    ``text`` the rule's own message."""

    rule: str
    flag: str
    location: str
    text: str

    @property
    def blocking(self) -> bool:
        return self.flag in BLOCKING_FLAGS


@dataclass(frozen=True)
class Report:
    syntax: str
    failures: tuple[Failure, ...]

    @property
    def errors(self) -> tuple[Failure, ...]:
        return tuple(f for f in self.failures if f.blocking)

    @property
    def warnings(self) -> tuple[Failure, ...]:
        return tuple(f for f in self.failures if not f.blocking)

    @property
    def valid(self) -> bool:
        return not self.errors


def syntax_of(xml: bytes) -> str:
    head = xml[:4000]
    if b"urn:oasis:names:specification:ubl" in head:
        return "ubl"
    if b"CrossIndustryInvoice" in head:
        return "cii"
    raise ValueError("neither a UBL nor a CII document")


@functools.cache
def _processor() -> Any:
    from saxonche import PySaxonProcessor

    return PySaxonProcessor(license=False)


@functools.cache
def _stylesheet(path: Path) -> Any:
    return _processor().new_xslt30_processor().compile_stylesheet(stylesheet_file=str(path))


@functools.cache
def _cii_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(CII_XSD)))


def _svrl_failures(svrl: str) -> list[Failure]:
    root = etree.fromstring(svrl.encode("utf-8"))
    failures = []
    for node in root.iter(f"{{{SVRL}}}failed-assert", f"{{{SVRL}}}successful-report"):
        text = " ".join("".join(node.itertext()).split())
        failures.append(
            Failure(
                rule=node.get("id") or "?",
                flag=(node.get("flag") or "").lower(),
                location=node.get("location") or "",
                text=text,
            )
        )
    return failures


def _run(path: Path, xml: bytes) -> list[Failure]:
    with _saxon_lock:  # one Saxon transform at a time per process: the compiled stylesheets are shared
        processor = _processor()
        source = processor.parse_xml(xml_text=xml.decode("utf-8"))
        svrl = _stylesheet(path).transform_to_string(xdm_node=source)
    return _svrl_failures(svrl or "")


def validate(xml: bytes, *, xrechnung: bool) -> Report:
    syntax = syntax_of(xml)
    failures: list[Failure] = []
    if syntax == "cii":
        schema = _cii_schema()
        document = etree.fromstring(xml)
        if not schema.validate(document):
            failures += [
                Failure(rule="XSD", flag="fatal", location=f"line {e.line}", text=e.message) for e in schema.error_log
            ]  # type: ignore[attr-defined]
    failures += _run(EN16931_XSLT[syntax], xml)
    if xrechnung:
        failures += _run(XRECHNUNG_XSLT[syntax], xml)
    return Report(syntax=syntax, failures=tuple(failures))


def compile_xrechnung() -> dict[str, Path]:
    """Compile the XRechnung Schematron (UBL and CII) to XSLT with SchXslt; writes ``XRECHNUNG_XSLT``."""
    from saxonche import PySaxonProcessor

    compiled = {}
    for syntax, source in XRECHNUNG_SCH.items():
        # A processor of its own per compilation: the names SchXslt generates count the documents a processor has
        # read, so only a fresh one gives the same file every time.
        processor = PySaxonProcessor(license=False)
        pipeline = processor.new_xslt30_processor().compile_stylesheet(stylesheet_file=str(SCHXSLT_PIPELINE))
        text = pipeline.transform_to_string(source_file=str(source))
        target = XRECHNUNG_XSLT[syntax]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_without_timestamp(text), encoding="utf-8")
        compiled[syntax] = target
    return compiled


def _without_timestamp(xslt: str) -> str:
    """SchXslt stamps its output with the compilation time; without it, compiling the same Schematron again gives
    the same file, so the committed one can be checked."""
    return re.sub(r"<dct:created>[^<]*</dct:created>", "", xslt)
