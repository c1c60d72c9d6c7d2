"""The e-invoice samples in docs/samples stay valid under the vendored rules (they are refreshed by running the
scenario tests with ``EINVOICE_SAMPLES=docs/samples``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from invoicing.einvoice import facturx, validation

SAMPLES = Path(__file__).resolve().parents[3] / "docs" / "samples"
XML = sorted(SAMPLES.glob("einvoice-*.xml"))


def test_there_is_a_sample_of_every_format():
    names = " ".join(path.name for path in XML)
    for suffix in ("xrechnung-ubl", "xrechnung-cii", "factur-x", "peppol-bis"):
        assert f"-{suffix}.xml" in names
    assert (SAMPLES / "einvoice-factur-x.pdf").exists()


@pytest.mark.parametrize("path", XML, ids=[path.name for path in XML])
def test_each_sample_is_valid(path):
    assert validation.validate(path.read_bytes(), xrechnung="xrechnung" in path.name).errors == ()


def test_the_facturx_sample_carries_its_xml():
    xml = facturx.embedded_xml((SAMPLES / "einvoice-factur-x.pdf").read_bytes())
    assert validation.validate(xml, xrechnung=False).errors == ()
