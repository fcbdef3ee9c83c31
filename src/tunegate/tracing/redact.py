"""What may leave the process in a span: message content only when enabled, PII redacted, keys never.

Regex redaction is deliberately simple and fast (it runs on the gateway's export thread): e-mail
addresses, phone numbers, card-like digit runs, US SSNs, IPv4 addresses and anything shaped like a
credential (``sk-...``, ``Bearer ...``, ``api_key=...``) become ``[REDACTED:<kind>]``. Attribute
*names* that denote a credential are dropped whatever their value (``scrub_attributes``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["redact_text", "scrub_attributes"]

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("secret", re.compile(r"(?i)\b(?:sk|pk|rk|xox[abp])-[A-Za-z0-9_\-]{8,}")),
    ("secret", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._\-~+/]{8,}=*")),
    ("secret", re.compile(r"(?i)\b(api[_-]?key|secret|password|token)\s*[:=]\s*\S+")),
    ("email", re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")),
    ("ssn", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("card", re.compile(r"\b(?:\d[ -]?){13,19}\b")),
    ("phone", re.compile(r"(?<![\w])\+?\d{1,3}[ .-]?\(?\d{2,4}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}\b")),
    ("ip", re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")),
]

#: Attribute names (lower-cased, any suffix) never exported.
_SECRET_NAMES = ("api_key", "apikey", "authorization", "password", "secret", "x-api-key", "cookie")


def redact_text(text: str) -> str:
    """``text`` with PII and credentials replaced by ``[REDACTED:<kind>]``."""
    for kind, pat in _PATTERNS:
        text = pat.sub(f"[REDACTED:{kind}]", text)
    return text


def scrub_attributes(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Drop attributes whose name denotes a credential; redact credential-shaped string values."""
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        low = k.lower()
        if any(low.endswith(s) or f".{s}" in low or f"{s}." in low for s in _SECRET_NAMES):
            continue
        if isinstance(v, str):
            for kind, pat in _PATTERNS[:3]:
                v = pat.sub(f"[REDACTED:{kind}]", v)
        out[k] = v
    return out
