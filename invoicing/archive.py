"""The archive check: every archived PDF — each original (``DocumentPdf``) and each later version
(``DocumentPdfVersion``) — and every archived e-invoice XML (``EInvoiceFile``) still exists and still has the
SHA-256 recorded when it was written. One piece of code for ``manage.py verify_archive`` and the "pdfs" part of
the integrity check (reporting.integrity)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from django.core.files.storage import default_storage

from invoicing.models import DocumentPdf, DocumentPdfVersion, EInvoiceFile


@dataclass(frozen=True)
class ArchiveProblem:
    model: str  # "DocumentPdf" (an original), "DocumentPdfVersion" or "EInvoiceFile"
    pk: int
    file: str
    what: str  # "changed" or "cannot be read"
    expected: str
    found: str

    def line(self) -> str:
        return (
            f"{self.model} {self.pk}: the archived file {self.file} {self.what} "
            f"(expected {self.expected}, found {self.found})"
        )


def file_sha256(name: str) -> str:
    digest = hashlib.sha256()
    with default_storage.open(name, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _archived_files() -> Iterator[tuple[str, int, str, str]]:
    for model in (DocumentPdf, DocumentPdfVersion, EInvoiceFile):
        rows = model.objects.order_by("pk").values_list("pk", "file", "sha256")  # type: ignore[attr-defined]
        for pk, name, sha256 in rows.iterator(chunk_size=500):
            yield model.__name__, pk, name, sha256


def archive_verify() -> tuple[int, list[ArchiveProblem]]:
    """``(files checked, problems)``: a file that is gone or unreadable, or whose content changed."""
    checked = 0
    problems: list[ArchiveProblem] = []
    for model, pk, name, expected in _archived_files():
        checked += 1
        try:
            found = file_sha256(name)
        except (FileNotFoundError, OSError) as exc:
            problems.append(ArchiveProblem(model, pk, name, "cannot be read", f"sha256 {expected}", type(exc).__name__))
            continue
        if found != expected:
            problems.append(ArchiveProblem(model, pk, name, "changed", f"sha256 {expected}", f"sha256 {found}"))
    return checked, problems
