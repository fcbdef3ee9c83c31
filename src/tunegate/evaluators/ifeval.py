"""Verifiable-instruction checks in the IFEval style (Zhou et al. 2023, arXiv:2311.07911).

Each instruction is ``{"id": "<group>:<name>", "kwargs": {...}}`` with the ids and keyword
arguments of the IFEval paper, so IFEval's ``instruction_id_list`` + ``kwargs`` convert 1:1
(:func:`from_ifeval`). The semantics follow the official checker (google-research
``instruction_following_eval/instructions.py``), re-implemented here, because the point of the
labels is that two tools agree on them: keywords are case-insensitive substrings, ``number_words``
counts ``\\w+`` runs, "highlights" count ``*x*`` and ``**x**`` spans, and so on — including the
quirks (a postscript marker may appear anywhere on a line). Two pieces needed NLTK data that cannot
be downloaded here, so they are our own deterministic approximations, measured against the
official labels in ``bench/agreement_ifeval.py``: the sentence splitter (:mod:`.ifeval_text`
imitates Punkt's English model: its learned abbreviation list, numbers/initials followed by a
lower-case word, ``e.g.`` splitting) and the Treebank word tokenizer used by
``capital_word_frequency``. Language checks use ``langdetect`` with a fixed seed.

Every check returns whether it was followed plus a plain-words ``detail`` ("wrote 312 words; the
limit is fewer than 300") and the instruction as an imperative (``ask``) for feedback.
"""

from __future__ import annotations

import json
import operator
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tunegate.errors import EvaluatorError
from tunegate.evaluators.ifeval_text import count_sentences, count_words, detect_language, word_tokens

__all__ = [
    "FREE_FORM",
    "INSTRUCTION_IDS",
    "Check",
    "check",
    "from_ifeval",
    "ifeval_row_to_example",
    "loose_variants",
    "normalize_instruction",
]

#: Instruction id of a free-form (judge-scored) instruction: ``{"id": "free_form", "text": ...}``.
FREE_FORM = "free_form"


@dataclass(frozen=True)
class Check:
    """The outcome of one instruction on one response."""

    id: str
    followed: bool
    detail: str  #: what was observed, in plain words
    ask: str  #: the instruction as an imperative sentence (used in feedback)


_Fn = Callable[[str, dict[str, Any], str], tuple[bool, str]]


@dataclass(frozen=True)
class _Spec:
    kwargs: dict[str, type | tuple[type, ...]]  #: required keyword arguments and their types
    fn: _Fn  #: (response, kwargs, prompt) -> (followed, detail)
    ask: Callable[[dict[str, Any]], str]


_SPECS: dict[str, _Spec] = {}


def _instruction(iid: str, ask: Callable[[dict[str, Any]], str],
                 **kwargs: type | tuple[type, ...]) -> Callable[[_Fn], _Fn]:
    def deco(fn: _Fn) -> _Fn:
        _SPECS[iid] = _Spec(dict(kwargs), fn, ask)
        return fn
    return deco


# -- comparisons ---------------------------------------------------------------------------------
_RELATIONS: dict[str, tuple[Callable[[int, int], bool], str]] = {
    "less than": (operator.lt, "fewer than"),
    "at most": (operator.le, "at most"),
    "at least": (operator.ge, "at least"),
    "more than": (operator.gt, "more than"),
    "exactly": (operator.eq, "exactly"),
}


def _compare(n: int, relation: str, k: int) -> bool:
    return _RELATIONS[relation][0](n, k)


def _need(relation: str, k: int, noun: str) -> str:
    """'the limit is fewer than 300 words' / 'at least 300 words are required'."""
    words = _RELATIONS[relation][1]
    if relation in ("less than", "at most"):
        return f"the limit is {words} {k} {noun}"
    return f"{words} {k} {noun} {'is' if k == 1 and relation == 'exactly' else 'are'} required"


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def _counted(n: int, relation: str, k: int, noun: str, verb: str) -> tuple[bool, str]:
    ok = _compare(n, relation, k)
    shown = noun if n == 1 else noun + "s"
    return ok, f"{verb} {n} {shown}" + ("" if ok else f"; {_need(relation, k, noun + 's')}")


# -- punctuation / case ---------------------------------------------------------------------------
@_instruction("punctuation:no_comma", lambda kw: "Do not use any commas.")
def _no_comma(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    n = text.count(",")
    return n == 0, "used no commas" if n == 0 else f"used {_plural(n, 'comma')}; no commas were allowed"


def _is_english(text: str) -> tuple[bool, str]:
    lang = detect_language(text)
    return lang in (None, "en"), f"language detected as {lang or 'undetectable'}"


@_instruction("change_case:english_capital", lambda kw: "Write the whole reply in English, in capital letters.")
def _english_capital(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    if not text.isupper():
        lower = sum(1 for c in text if c.islower())
        return False, f"{_plural(lower, 'lower-case letter')} found; the reply must be all capitals"
    ok, lang = _is_english(text)
    return ok, "all capitals" + ("" if ok else f", but {lang}; English is required")


@_instruction("change_case:english_lowercase", lambda kw: "Write the whole reply in English, in lower-case letters.")
def _english_lowercase(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    if not text.islower():
        upper = sum(1 for c in text if c.isupper())
        return False, f"{_plural(upper, 'capital letter')} found; the reply must be all lower case"
    ok, lang = _is_english(text)
    return ok, "all lower case" + ("" if ok else f", but {lang}; English is required")


@_instruction("change_case:capital_word_frequency",
              lambda kw: f"Use {_RELATIONS[kw['capital_relation']][1]} {kw['capital_frequency']} "
                         "words written in all capital letters.",
              capital_frequency=int, capital_relation=str)
def _capital_words(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    n = sum(1 for w in word_tokens(text) if w.isupper())
    return _counted(n, kw["capital_relation"], kw["capital_frequency"], "all-capital word", "wrote")


# -- formats --------------------------------------------------------------------------------------
_BULLET_STAR = re.compile(r"^\s*\*[^\*].*$", re.M)
_BULLET_DASH = re.compile(r"^\s*-.*$", re.M)


@_instruction("detectable_format:number_bullet_lists",
              lambda kw: f"Use exactly {kw['num_bullets']} markdown bullet points ('* ' or '- ').",
              num_bullets=int)
def _bullets(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    n = len(_BULLET_STAR.findall(text)) + len(_BULLET_DASH.findall(text))
    return _counted(n, "exactly", kw["num_bullets"], "bullet point", "wrote")


_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


@_instruction("detectable_format:constrained_response",
              lambda kw: "Answer with one of: " + " / ".join(repr(o) for o in _OPTIONS))
def _constrained(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    found = [o for o in _OPTIONS if o in text.strip()]
    return bool(found), f"contains {found[0]!r}" if found else "contains none of the allowed answers"


_HIGHLIGHT = re.compile(r"\*[^\n\*]*\*")
_DOUBLE_HIGHLIGHT = re.compile(r"\*\*[^\n\*]*\*\*")


@_instruction("detectable_format:number_highlighted_sections",
              lambda kw: f"Highlight at least {kw['num_highlights']} sections with markdown, "
                         "e.g. *highlighted section*.",
              num_highlights=int)
def _highlights(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    n = sum(1 for h in _HIGHLIGHT.findall(text) if h.strip("*").strip())
    n += sum(1 for h in _DOUBLE_HIGHLIGHT.findall(text) if h[2:-2].strip())
    return _counted(n, "at least", kw["num_highlights"], "highlighted section", "has")


@_instruction("detectable_format:multiple_sections",
              lambda kw: f"Write {kw['num_sections']} sections, each starting with "
                         f"'{kw['section_spliter']} X'.",
              section_spliter=str, num_sections=int)
def _sections(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    splitter = kw["section_spliter"].strip()
    n = len(re.split(r"\s?" + re.escape(splitter) + r"\s?\d+\s?", text)) - 1
    return _counted(n, "at least", kw["num_sections"], f"'{splitter} N' section", "has")


@_instruction("detectable_format:json_format", lambda kw: "Wrap the entire reply in JSON (``` fences allowed).")
def _json_format(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    body = text.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):
        if body.startswith(fence):
            body = body[len(fence):]
            break
    body = body.removesuffix("```").strip()
    try:
        json.loads(body)
    except ValueError as e:
        return False, f"the reply is not valid JSON ({str(e).split(':')[0]})"
    return True, "the reply is valid JSON"


@_instruction("detectable_format:title", lambda kw: "Include a title wrapped in double angular brackets, "
                                                   "such as <<poem of joy>>.")
def _title(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    titles = [t for t in re.findall(r"<<[^\n]+>>", text) if t.lstrip("<").rstrip(">").strip()]
    return bool(titles), f"has the title {titles[0]}" if titles else "has no <<title>>"


# -- length ----------------------------------------------------------------------------------------
@_instruction("length_constraints:number_words",
              lambda kw: f"Answer with {_RELATIONS[kw['relation']][1]} {kw['num_words']} words.",
              num_words=int, relation=str)
def _words(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    return _counted(count_words(text), kw["relation"], kw["num_words"], "word", "wrote")


@_instruction("length_constraints:number_sentences",
              lambda kw: f"Answer with {_RELATIONS[kw['relation']][1]} {kw['num_sentences']} sentences.",
              num_sentences=int, relation=str)
def _sentences(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    return _counted(count_sentences(text), kw["relation"], kw["num_sentences"], "sentence", "wrote")


@_instruction("length_constraints:number_paragraphs",
              lambda kw: f"Write exactly {kw['num_paragraphs']} paragraphs separated by the markdown "
                         "divider ***.",
              num_paragraphs=int)
def _paragraphs(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    parts = re.split(r"\s?\*\*\*\s?", text)
    inner_empty = [i for i, p in enumerate(parts) if not p.strip() and 0 < i < len(parts) - 1]
    if inner_empty:
        return False, "has an empty paragraph between two *** dividers"
    n = sum(1 for p in parts if p.strip())
    return _counted(n, "exactly", kw["num_paragraphs"], "***-separated paragraph", "wrote")


_FIRST_WORD_STOP = frozenset(".,?!'\"")


@_instruction("length_constraints:nth_paragraph_first_word",
              lambda kw: f"Write exactly {kw['num_paragraphs']} paragraphs separated by blank lines; "
                         f"paragraph {kw['nth_paragraph']} must start with the word "
                         f"'{kw['first_word']}'.",
              num_paragraphs=int, nth_paragraph=int, first_word=str)
def _nth_first_word(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    parts = text.split("\n\n")
    n = sum(1 for p in parts if p.strip())
    nth, want = kw["nth_paragraph"], kw["first_word"].lower()
    if nth > n or nth < 1 or not parts[nth - 1].strip():
        return False, f"wrote {_plural(n, 'paragraph')}, so there is no non-empty paragraph {nth}"
    word = parts[nth - 1].strip().split()[0].lstrip("'").lstrip('"')
    first = ""
    for ch in word:
        if ch in _FIRST_WORD_STOP:
            break
        first += ch.lower()
    problems = []
    if n != kw["num_paragraphs"]:
        problems.append(f"wrote {_plural(n, 'paragraph')}; exactly {kw['num_paragraphs']} are required")
    if first != want:
        problems.append(f"paragraph {nth} starts with {first!r}, not {want!r}")
    if problems:
        return False, "; ".join(problems)
    return True, f"{_plural(n, 'paragraph')}; paragraph {nth} starts with {want!r}"


# -- content --------------------------------------------------------------------------------------
@_instruction("detectable_content:postscript",
              lambda kw: f"End with a postscript starting with {kw['postscript_marker']}.",
              postscript_marker=str)
def _postscript(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    marker = kw["postscript_marker"].strip()
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + re.escape(marker.lower()) + r".*$"
    ok = re.search(pattern, text.lower(), flags=re.M) is not None
    return ok, f"has a {marker} postscript" if ok else f"has no postscript starting with {marker}"


@_instruction("detectable_content:number_placeholders",
              lambda kw: f"Include at least {kw['num_placeholders']} placeholders in square brackets, "
                         "such as [address].",
              num_placeholders=int)
def _placeholders(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    return _counted(len(re.findall(r"\[.*?\]", text)), "at least", kw["num_placeholders"],
                    "[placeholder]", "has")


# -- start / end ----------------------------------------------------------------------------------
@_instruction("startend:end_checker",
              lambda kw: f"End the reply with the exact phrase {kw['end_phrase']!r}, with nothing after it.",
              end_phrase=str)
def _end_checker(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    phrase = kw["end_phrase"].strip().lower()
    tail = text.strip().strip('"').lower()
    if tail.endswith(phrase):
        return True, "ends with the required phrase"
    return False, f"ends with {text.strip()[-40:]!r}, not {kw['end_phrase'].strip()!r}"


@_instruction("startend:quotation", lambda kw: "Wrap the entire reply in double quotation marks.")
def _quotation(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    body = text.strip()
    ok = len(body) > 1 and body[0] == '"' and body[-1] == '"'
    return ok, "is wrapped in double quotes" if ok else "is not wrapped in double quotation marks"


# -- keywords -------------------------------------------------------------------------------------
@_instruction("keywords:existence", lambda kw: "Include the keywords " + ", ".join(map(repr, kw["keywords"])) + ".",
              keywords=list)
def _existence(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    lost = [k for k in kw["keywords"] if not re.search(re.escape(k), text, flags=re.I)]
    if lost:
        return False, "does not mention " + ", ".join(map(repr, lost))
    return True, "mentions every keyword"


@_instruction("keywords:frequency",
              lambda kw: f"Use the word {kw['keyword']!r} {_RELATIONS[kw['relation']][1]} "
                         f"{kw['frequency']} times.",
              keyword=str, frequency=int, relation=str)
def _frequency(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    word = kw["keyword"].strip()
    n = len(re.findall(re.escape(word), text, flags=re.I))
    ok = _compare(n, kw["relation"], kw["frequency"])
    detail = f"used {word!r} {_plural(n, 'time')}"
    return ok, detail if ok else f"{detail}; {_need(kw['relation'], kw['frequency'], 'times')}"


@_instruction("keywords:forbidden_words",
              lambda kw: "Do not use the words " + ", ".join(map(repr, kw["forbidden_words"])) + ".",
              forbidden_words=list)
def _forbidden(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    used = [w for w in sorted(set(kw["forbidden_words"]))
            if re.search(r"\b" + re.escape(w) + r"\b", text, flags=re.I)]
    return (False, "used the forbidden " + ", ".join(map(repr, used))) if used else (True, "used no forbidden word")


@_instruction("keywords:letter_frequency",
              lambda kw: f"Use the letter {kw['letter']!r} {_RELATIONS[kw['let_relation']][1]} "
                         f"{kw['let_frequency']} times.",
              letter=str, let_frequency=int, let_relation=str)
def _letters(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    letter = kw["letter"].strip().lower()
    n = Counter(text.lower())[letter]
    ok = _compare(n, kw["let_relation"], kw["let_frequency"])
    detail = f"used the letter {letter!r} {_plural(n, 'time')}"
    return ok, detail if ok else f"{detail}; {_need(kw['let_relation'], kw['let_frequency'], 'times')}"


# -- combination / language -----------------------------------------------------------------------
@_instruction("combination:repeat_prompt",
              lambda kw: "First repeat the request word for word, then answer.")
def _repeat(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    want = (kw.get("prompt_to_repeat") or prompt).strip()
    if not want:
        raise EvaluatorError("combination:repeat_prompt needs kwargs.prompt_to_repeat (or a row prompt)")
    if text.strip().lower().startswith(want.lower()):
        return True, "starts by repeating the request"
    return False, f"does not start with the request {want[:60]!r}"


@_instruction("combination:two_responses",
              lambda kw: "Give two different responses separated by six asterisks: ******.")
def _two_responses(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    parts = text.split("******")
    if any(not p.strip() for p in parts[1:-1]):
        return False, "has an empty response between ****** separators"
    valid = [p.strip() for p in parts if p.strip()]
    if len(valid) != 2:
        return False, f"has {_plural(len(valid), 'response')} separated by ******; exactly 2 are required"
    if valid[0] == valid[1]:
        return False, "the two responses are identical"
    return True, "has two different responses"


@_instruction("language:response_language",
              lambda kw: f"Write the entire reply in the language with code {kw['language']!r}.",
              language=str)
def _language(text: str, kw: dict[str, Any], prompt: str) -> tuple[bool, str]:
    lang = detect_language(text)
    if lang is None:  # the official checker counts undetectable text as followed
        return True, "language undetectable (counted as followed, as IFEval does)"
    ok = lang == kw["language"]
    return ok, f"written in {lang}" + ("" if ok else f"; {kw['language']} is required")


#: Every verifiable instruction id, sorted.
INSTRUCTION_IDS: tuple[str, ...] = tuple(sorted(_SPECS))
_OPTIONAL = {"combination:repeat_prompt": {"prompt_to_repeat": str}}


# -- validation, conversion, checking ---------------------------------------------------------------
def normalize_instruction(item: Any) -> dict[str, Any]:
    """Check one instruction declaration and return ``{"id", "kwargs"}`` (or ``{"id", "text"}`` for
    a free-form one). Raises ``ValueError`` with a plain message naming the problem."""
    if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
        raise ValueError(f"an instruction is a mapping with an 'id', got {item!r}")
    iid = item["id"]
    if iid == FREE_FORM:
        if not isinstance(item.get("text"), str) or not item["text"].strip():
            raise ValueError("a free_form instruction needs a non-empty 'text'")
        return {"id": iid, "text": item["text"]}
    spec = _SPECS.get(iid)
    if spec is None:
        raise ValueError(f"unknown instruction id {iid!r}; known: {', '.join(INSTRUCTION_IDS)}, {FREE_FORM}")
    kwargs = {k: v for k, v in (item.get("kwargs") or {}).items() if v is not None}
    allowed = {**spec.kwargs, **_OPTIONAL.get(iid, {})}
    extra = sorted(set(kwargs) - set(allowed))
    missing = sorted(set(spec.kwargs) - set(kwargs))
    if extra or missing:
        raise ValueError(f"instruction {iid!r}: " + "; ".join(
            ([f"unknown kwargs {extra}"] if extra else []) + ([f"missing kwargs {missing}"] if missing else [])))
    for key, value in kwargs.items():
        want = allowed[key]
        if not isinstance(value, want) or isinstance(value, bool):
            raise ValueError(f"instruction {iid!r}: kwarg {key!r} must be {getattr(want, '__name__', want)}, "
                             f"got {value!r}")
        if key.endswith("relation") and value not in _RELATIONS:
            raise ValueError(f"instruction {iid!r}: {key} must be one of {sorted(_RELATIONS)}, got {value!r}")
        if isinstance(value, list) and not all(isinstance(w, str) and w for w in value):
            raise ValueError(f"instruction {iid!r}: {key} must be a list of non-empty strings")
    if iid == "keywords:letter_frequency" and len(kwargs["letter"].strip()) != 1:
        raise ValueError(f"instruction {iid!r}: letter must be one character, got {kwargs['letter']!r}")
    return {"id": iid, "kwargs": kwargs}


def from_ifeval(instruction_id_list: Sequence[str], kwargs: Sequence[Mapping[str, Any] | None]) -> list[dict[str, Any]]:
    """IFEval's parallel ``instruction_id_list`` / ``kwargs`` → our instruction list (None-valued
    kwargs, which the Hugging Face copy of IFEval fills in for every key, are dropped)."""
    if len(instruction_id_list) != len(kwargs):
        raise ValueError(f"{len(instruction_id_list)} instruction ids but {len(kwargs)} kwargs")
    return [{"id": iid, "kwargs": {k: v for k, v in (kw or {}).items() if v is not None}}
            for iid, kw in zip(instruction_id_list, kwargs, strict=True)]


def ifeval_row_to_example(row: Mapping[str, Any]) -> dict[str, Any]:
    """An IFEval ``input_data.jsonl`` row → a tunegate dataset row (``metadata.instructions``)."""
    ids = list(row["instruction_id_list"])
    return {"id": str(row["key"]), "input": row["prompt"],
            "cohorts": sorted({i.split(":")[0] for i in ids}),
            "metadata": {"instructions": from_ifeval(ids, row["kwargs"])}}


def loose_variants(response: str) -> list[str]:
    """IFEval's loose variants: the response, with first/last/both lines dropped, each also with
    every ``*`` removed (8 texts; the loose check passes when any of them passes)."""
    lines = response.split("\n")
    base = [response, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return [base[0], base[0].replace("*", ""), *base[1:], *(b.replace("*", "") for b in base[1:])]


def check(instruction: Mapping[str, Any], response: str, *, prompt: str = "", loose: bool = False) -> Check:
    """Run one verifiable instruction (already normalised) on ``response``.

    As in IFEval, an empty (whitespace-only) response follows nothing. With ``loose`` the check
    passes when any :func:`loose_variants` text passes; the detail then comes from the raw response
    unless a variant passed.
    """
    iid, kw = instruction["id"], instruction.get("kwargs", {})
    spec = _SPECS.get(iid)
    if spec is None:
        raise EvaluatorError(f"unknown instruction id {iid!r}")
    ask = spec.ask(kw)
    texts = loose_variants(response) if loose else [response]
    first: tuple[bool, str] | None = None
    for i, text in enumerate(texts):
        outcome = spec.fn(text, kw, prompt) if text.strip() else (False, "the reply is empty")
        if outcome[0]:
            detail = outcome[1] if i == 0 else f"{outcome[1]} (loose: after trimming lines/asterisks)"
            return Check(iid, True, detail, ask)
        first = first or outcome
    assert first is not None
    return Check(iid, False, first[1], ask)
