"""Customer-controlled text on its way into documents."""

from __future__ import annotations

import re
from typing import Any

# Unicode bidirectional controls: embeddings and overrides (U+202A–U+202E), isolates (U+2066–U+2069) and the
# implicit marks (LRM, RLM, ALM). A right-to-left override (U+202E) in an address makes a viewer print what follows
# backwards ("Trojan Source" in a PDF: an IBAN or amount that reads differently from what is stored). Right-to-left
# *letters* (Arabic, Hebrew) are not controls and are kept.
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
_BIDI = re.compile(f"[{BIDI_CONTROLS}]")


def strip_bidi_controls(text: str) -> str:
    return _BIDI.sub("", text)


def without_bidi_controls(value: Any) -> Any:
    """``value`` with bidi controls removed from every string inside it (dicts, lists and tuples are walked)."""
    if isinstance(value, str):
        return strip_bidi_controls(value)
    if isinstance(value, dict):
        return {key: without_bidi_controls(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_bidi_controls(item) for item in value]
    if isinstance(value, tuple):
        return tuple(without_bidi_controls(item) for item in value)
    return value
