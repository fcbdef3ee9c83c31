"""Planted contamination for testing the overlap detectors on real text (tests and bench).

From real train rows we derive eval rows whose ground truth we know:

* near-duplicates of one train row (``source`` = that row's id):
  ``case_punct`` (case, punctuation and whitespace changed only), ``word_edits`` (3 words replaced),
  ``reorder`` (sentences shuffled), ``passage`` (a 30-word passage of the train row inside new text);
  ``dense_edits`` (a filler word after every 10th word: breaks every 13-gram) is a *hard* kind that
  surface overlap is not expected to catch fully — reported, not counted as a near-duplicate;
* clean distractors (``source`` = None) that share only topic words with a train row.

Everything is deterministic for a given seed.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["DISTRACTOR_KINDS", "HARD_KINDS", "NEAR_DUP_KINDS", "Planted", "plant"]

NEAR_DUP_KINDS = ("case_punct", "word_edits", "reorder", "passage")
HARD_KINDS = ("dense_edits",)
DISTRACTOR_KINDS = ("topic_words", "same_entities")

_REPLACEMENTS = ["blue", "seven", "garden", "river", "lantern", "quickly", "copper", "winter", "ticket", "meadow"]
_FILLERS = ["really", "also", "then", "just", "quite", "indeed"]
_OPENERS = ["Consider the following situation carefully before answering.",
            "Here is something a colleague sent me this morning, please read it.",
            "I found this in an old notebook and I am not sure it is right."]
_STOP_TEXT = ("the a an and or of to in on for with at by from is are was were be been it this that these those he "
              "she they we you i his her their our your its how many much what which who when where does do did "
              "has have had each every per if then than so as but not into out up down more less total")
_STOP = frozenset(_STOP_TEXT.split())


@dataclass(frozen=True)
class Planted:
    """One eval row with its ground truth: ``source`` is the train id it copies, or None (clean)."""

    row: dict[str, Any]
    kind: str
    source: str | None


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.?!])\s+|\n+", text) if s.strip()]


def _case_punct(text: str, rng: random.Random) -> str:
    t = text.upper() if rng.random() < 0.5 else text.lower()
    t = re.sub(r"[,;:]", "", t)
    t = t.replace(". ", " .  ").replace("?", " ?")
    return "  ".join(t.split(" "))


def _word_edits(text: str, rng: random.Random, n: int = 3) -> str:
    words = text.split()
    for i in rng.sample(range(len(words)), min(n, len(words))):
        words[i] = rng.choice(_REPLACEMENTS)
    return " ".join(words)


def _reorder(text: str, rng: random.Random) -> str:
    sents = _sentences(text)
    if len(sents) < 2:
        words = text.split()
        half = len(words) // 2
        return " ".join(words[half:] + words[:half])
    for _ in range(10):
        shuffled = sents[:]
        rng.shuffle(shuffled)
        if shuffled != sents:
            break
    return " ".join(shuffled)


def _dense_edits(text: str, rng: random.Random, every: int = 10) -> str:
    out: list[str] = []
    for i, w in enumerate(text.split()):
        out.append(w)
        if i % every == every - 1:
            out.append(rng.choice(_FILLERS))
    return " ".join(out)


def _content_words(text: str) -> list[str]:
    words = re.findall(r"[A-Za-z]{4,}", text)
    return list(dict.fromkeys(w.lower() for w in words if w.lower() not in _STOP))


def _distractor(kind: str, text: str, rng: random.Random) -> str:
    words = _content_words(text)
    pick = rng.sample(words, min(4, len(words))) or ["things"]
    if kind == "topic_words":
        return (f"Write a short poem that mentions {', '.join(pick)}. Keep it cheerful and under eight lines, "
                f"and give it a title that uses the word {pick[0]}.")
    names = re.findall(r"\b[A-Z][a-z]{2,}\b", text)
    who = names[0] if names else "Sam"
    return (f"{who} keeps a diary. Yesterday the entry was only about {pick[-1]}; today it is about "
            f"{' and '.join(pick[:2])}. Which entry sounds more fun to read, and why?")


def plant(train: list[dict[str, Any]], *, text_key: str, answer_key: str, per_kind: int, seed: int = 0,
          passage_words: int = 30) -> list[Planted]:
    """Planted eval rows (near-duplicates, hard edits and distractors) from ``train`` rows.

    Each kind draws its own ``per_kind`` train rows; ids are ``<kind>-<n>``.
    """
    rng = random.Random(seed)
    out: list[Planted] = []
    for kind in NEAR_DUP_KINDS + HARD_KINDS + DISTRACTOR_KINDS:
        for j, src in enumerate(rng.sample(train, per_kind)):
            q, a = str(src[text_key]), str(src[answer_key])
            if kind == "case_punct":
                row = {text_key: _case_punct(q, rng), answer_key: _case_punct(a, rng)}
            elif kind == "word_edits":
                row = {text_key: _word_edits(q, rng, 2), answer_key: _word_edits(a, rng, 1)}
            elif kind == "reorder":
                row = {text_key: _reorder(q, rng), answer_key: _reorder(a, rng)}
            elif kind == "passage":
                words = (q + " " + a).split()
                start = rng.randrange(0, max(1, len(words) - passage_words))
                passage = " ".join(words[start:start + passage_words])
                row = {text_key: f"{rng.choice(_OPENERS)} \"{passage}\" What is wrong with it, if anything?",
                       answer_key: "The text reads as a worked example; check each step before relying on it."}
            elif kind == "dense_edits":
                row = {text_key: _dense_edits(q, rng), answer_key: _dense_edits(a, rng)}
            else:
                row = {text_key: _distractor(kind, q, rng), answer_key: _distractor(kind, a, rng)}
            row["id"] = f"{kind}-{j:03d}"
            out.append(Planted(row, kind, None if kind in DISTRACTOR_KINDS else str(src["id"])))
    return out
