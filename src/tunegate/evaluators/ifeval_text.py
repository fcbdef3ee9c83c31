"""Text measurements for the IFEval checks, without NLTK data downloads.

The official IFEval checker counts sentences with NLTK's pre-trained Punkt English model and
tokenizes words for ``capital_word_frequency`` with ``nltk.word_tokenize``; both need the ``punkt``
data package, which is fetched from the network at run time. These are deterministic, dependency-free
stand-ins, written to agree with those tools on the texts IFEval labels (agreement is measured in
``bench/agreement_ifeval.py``):

* :func:`split_sentences` follows Punkt's decision rules: a candidate boundary is ``.``/``?``/``!``
  ending a whitespace-delimited token (trailing quotes, brackets and asterisks allowed); ``?``/``!``
  always split; a word ending in ``.`` splits unless it is in the English model's learned
  abbreviation list (which has neither ``e.g`` nor ``etc``, so those *do* split, as in NLTK); a
  number, initial or ellipsis followed by a lower-case word does not split. Newlines alone never
  split (Punkt ignores layout), so a bullet list without full stops is one sentence.
* :func:`word_tokens` imitates the Treebank rules that matter for "is this token upper case":
  punctuation is split off, contractions become their own tokens (``DON'T`` → ``DO``, ``N'T``),
  hyphenated words and ``U.S.`` stay whole.
* :func:`detect_language` wraps ``langdetect`` with its own seeded factory (the official checker
  calls it unseeded, so a few borderline labels are not reproducible even with the real code).
"""

from __future__ import annotations

import random
import re
import threading
from typing import Any

from tunegate.errors import EvaluatorError

__all__ = ["count_sentences", "count_words", "detect_language", "split_sentences", "word_tokens"]

_WORD = re.compile(r"\w+")


def count_words(text: str) -> int:
    """Runs of word characters (what IFEval's ``RegexpTokenizer(r"\\w+")`` counts)."""
    return len(_WORD.findall(text))


# -- sentences ------------------------------------------------------------------------------------
def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Abbreviations learned by NLTK's Punkt English model (its ``abbrev_types``, as listed publicly in
#: nltk/nltk issue #2500); a token ``<abbrev>.`` is not a sentence end there.
_ABBREVIATIONS = _wordset("""
ore d e.f dec f.g n.d mg n.j sen n g.d v h.f mrs d.h a.c m.b.a wed s.a prof vt e c.o.m.b u.n c.v ave p.m
feb wis e.l st d.c va calif w h fla dr l r colo a.h ms u.s.s.r l.a m r.j b.f n.m aug mich tues a.a j.p
a.g rep s.c n.y r.a r.h sw chg okla g.k ariz ok vs ft a.t s.g bros u.s.a ky i.m.s gen t reps e.h ala
messrs s.a.y fri u.k jr inc ga ph.d sept ill n.v c.i.t lt e.m j.c wash m.d.c kan r.t tenn k d.w jan
w.w w.r r.i s.s l.f s.p.a pa b.v c w.c f r.k s g.f j.r w.va mr corp f.j conn h.c a.m cos a.d j.j j.b
yr col nov u.s a.m.e p.a.m cie n.h sep ct a.s m.j t.j h.m n.c adm l.p co minn ltd p oct nev sr maj g j.k
""")
#: Capitalised words that begin sentences often enough that Punkt's orthographic evidence lets an
#: abbreviation or initial before them end the sentence (a stand-in for the model's ortho context).
_SENT_STARTERS = _wordset("""
the this that these those it its he she they we i you our their his her my your there here in on at
for but and so if when while after before as a an however also then thus therefore finally first
second third next lastly overall additionally moreover furthermore what why how who where which
one some many most all each every no not yes please let do does did is are was were be can could
would should will may might must to from with by of about during since because although though
""")
_CLOSERS = "\"'”’)]}*:;"
_OPENERS = "\"'“‘([{*_`"
_NUMBER = re.compile(r"^-?[.,]?\d[\d,.\-]*\.?$")
_INITIAL = re.compile(r"^[^\W\d]\.$")
_TOKEN = re.compile(r"\S+")
_REALIGN = re.compile(r"[\"')\]}”’]+(?=\s|$)")


def _next_word(tokens: list[re.Match[str]], i: int) -> str:
    return tokens[i + 1].group().lstrip(_OPENERS) if i + 1 < len(tokens) else ""


def _starter(word: str) -> bool | None:
    """Punkt's orthographic heuristic, approximated: True (starts a sentence), False (does not),
    None (unknown: a capitalised word we cannot tell from a proper noun)."""
    if not word or word[0] in ";:,.!?":
        return False
    if word[0].islower():
        return False
    if word[0].isupper():
        head = re.match(r"[^\W\d_]+", word)
        return True if head and head.group().lower() in _SENT_STARTERS else None
    return None


def _ends_sentence(core: str, nxt: str) -> bool:
    """Does a token whose trailing closers were stripped (``core``) end a sentence before ``nxt``?"""
    if core[-1] in "?!":
        return True
    if core.endswith(".."):  # ellipsis: Punkt splits only when the next word starts a sentence
        return _starter(nxt) is True
    word = core[:-1].lower().lstrip(_OPENERS)
    is_initial = bool(_INITIAL.match(word + "."))
    if word in _ABBREVIATIONS or word.split("-")[-1] in _ABBREVIATIONS:
        # a known abbreviation splits only before a clear sentence starter (not for initials)
        return not is_initial and _starter(nxt) is True
    if is_initial:
        return _starter(nxt) is True
    if _NUMBER.match(word + "."):
        return _starter(nxt) is not False
    return True


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences the way NLTK's Punkt English model would (see module doc)."""
    tokens = list(_TOKEN.finditer(text))
    breaks: list[int] = []
    for i, m in enumerate(tokens):
        tok = m.group()
        core = tok.rstrip(_CLOSERS)
        if not core or core[-1] not in ".?!":
            continue
        if core.strip(".?!") == "" and core[-1] == "." and len(core) == 1:
            continue  # a lone full stop carries no sentence
        if _ends_sentence(core, _next_word(tokens, i)):
            breaks.append(m.start() + len(core))
    out: list[str] = []
    start = 0
    for b in [*breaks, len(text)]:
        piece = text[start:b]
        moved = _REALIGN.match(piece.lstrip()) if out else None
        if moved and piece.strip():  # closing quotes/brackets belong to the previous sentence
            out[-1] += moved.group()
            piece = piece.lstrip()[moved.end():]
        if piece.strip():
            out.append(piece.strip())
        start = b
    return out


def count_sentences(text: str) -> int:
    """Number of sentences per :func:`split_sentences`."""
    return len(split_sentences(text))


# -- words (Treebank-like) -------------------------------------------------------------------------
_CONTRACTION = re.compile(r"(?i)^(.+?)(n't|'s|'m|'d|'re|'ve|'ll|’s|’m|’d|’re|’ve|’ll|n’t)$")
_SPLIT_CHARS = re.compile(r"([;@#$%&?!,\"“”()\[\]{}<>]|--|\.\.\.|^'|'$|^‘|’$)")


def word_tokens(text: str) -> list[str]:
    """Treebank-style word tokens (what ``nltk.word_tokenize`` yields, for upper-case counting)."""
    out: list[str] = []
    for chunk in text.split():
        for piece in _SPLIT_CHARS.split(chunk):
            if not piece:
                continue
            stop = piece.endswith(".") and len(piece) > 1 and not re.search(r"\.\w", piece)
            if stop:
                piece = piece[:-1]  # a final full stop is its own token
            m = _CONTRACTION.match(piece)
            out.extend([m.group(1), m.group(2)] if m else [piece])
            if stop:
                out.append(".")
    return out


# -- language -------------------------------------------------------------------------------------
_LANG_LOCK = threading.Lock()
_FACTORY: list[Any] = []  # the loaded langdetect profiles (loaded once per process, on first use)

#: Seed of the language detector: langdetect samples n-grams at random, so a fixed seed makes the
#: same text always get the same language.
LANGDETECT_SEED = 0


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of ``text`` per ``langdetect`` (seeded), or None when it has no letters.

    langdetect seeds the process-global ``random`` module; the global state is saved and
    restored around the call so other users of ``random`` are unaffected.
    """
    try:
        from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
        from langdetect.lang_detect_exception import LangDetectException
    except ImportError:
        raise EvaluatorError("language checks need the 'langdetect' package (pip install langdetect)") from None
    with _LANG_LOCK:
        if not _FACTORY:
            factory = DetectorFactory()
            factory.load_profile(PROFILES_DIRECTORY)
            factory.set_seed(LANGDETECT_SEED)
            _FACTORY.append(factory)
        state = random.getstate()
        try:
            detector = _FACTORY[0].create()
            detector.append(text)
            return str(detector.detect())
        except LangDetectException:
            return None
        finally:
            random.setstate(state)
