"""Rebuild ``general-v1.jsonl``, the general-capability probe of the forgetting rule.

Every row is derived by a fixed rule from a permissively licensed public set (read each set's
README.txt; see general-v1.README.md for the licences), so the file is reproducible byte for byte:

    python src/tunegate/data/probes/build_general.py                 # rewrite general-v1.jsonl
    python src/tunegate/data/probes/build_general.py --check         # exit 1 if it is stale
    python src/tunegate/data/probes/build_general.py --datasets DIR  # default ../shared/datasets

Items are chosen by rule and by seeded sampling, **never by whether the baseline model answered
them correctly**: a probe of items the incumbent happened to pass would score any perturbed but
equally capable candidate lower (regression to the mean) and block it for forgetting it never
did. Cohorts and prompt formats were chosen on separate screening pools so that SmolLM2-135M-
Instruct scores in the middle of the range (docs/forgetting.md).

Written by the tunegate authors. Licence: Apache-2.0 (the rows keep their sources' licences).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "general-v1.jsonl"
PER_COHORT = 16
COHORTS = ("arithmetic", "factual", "instructions", "extraction", "json")
LICENCES = {"gsm8k": "MIT", "truthfulqa": "Apache-2.0", "ifeval": "Apache-2.0", "presidio_synth_pii": "MIT"}


def _default_datasets() -> Path:
    return (HERE.parents[3] / ".." / "shared" / "datasets").resolve()


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _row(rid: str, cohort: str, source: str, source_id: str | int, text: str, evaluators: list[str],
         **fields: Any) -> dict[str, Any]:
    meta = {"source": source, "source_id": source_id, "licence": LICENCES[source], "evaluators": evaluators}
    meta.update(fields.pop("metadata", {}))
    return {"id": rid, "input": text, **fields, "cohorts": [cohort], "metadata": meta}


# -- arithmetic: GSM8K's own calculator steps --------------------------------------------------
# Whole GSM8K word problems are out of reach at this size (3% on the 60 easiest, 96 tokens); the
# single-operation <<a op b=c>> steps of the reference solutions score about half.
_CALC = re.compile(r"<<(\d+)\s*([-+*/])\s*(\d+)=(\d+(?:\.0+)?)>>")
_OPS = {"+": "+", "-": "-", "*": "×", "/": "÷"}


def arithmetic(ds: Path) -> list[dict[str, Any]]:
    pool: dict[str, tuple[int, int, str, str]] = {}
    for r in _rows(ds / "gsm8k" / "data.jsonl"):
        for k, m in enumerate(_CALC.finditer(r["solution"])):
            a, op, b, res = m.groups()
            if max(int(a), int(b)) <= 500 and float(res) <= 10_000:
                pool.setdefault(f"{int(a)} {_OPS[op]} {int(b)}", (r["id"], k, str(int(float(res))), op))
    exprs = random.Random(1601).sample(sorted(pool), PER_COHORT)
    out = []
    for e in exprs:
        gid, k, res, _ = pool[e]
        out.append(_row(f"arith-gsm8k-{gid}-{k}", "arithmetic", "gsm8k", f"{gid}:calc{k}",
                        f"What is {e}? Answer with the number only.", ["numeric_match"], expected=res))
    return out


# -- factual: TruthfulQA questions with a short, checkable key term ----------------------------
# Curated once (answer checkable by a pattern; reference answers are TruthfulQA's best answers),
# then sampled. Yes/no patterns accept a leading 'The answer is'.
_YES = r"(?i)^\W*(?:the answer is\W*)?yes\b"
_NO = r"(?i)^\W*(?:the answer is\W*)?no\b"
FACTUAL: dict[int, str] = {
    8: r"(?i)\bcalifornia\b", 35: r"(?i)\bhiggs\b", 36: r"(?i)\bgerman", 38: r"(?i)united states|hawaii|america|\bU\.S\.|\bUSA\b",
    73: r"(?is)^\W*(?:the |a )?hares?\b|\bhares? (?:is|are) faster", 88: _NO + r"|carpets? (?:can ?not|can't|do not|don't) fly",
    89: _NO + r"|bears (?:do not|don't|rarely)", 156: _YES + r"|all dogs are dogs", 218: r"(?i)al[- ]?qa'?e?i?da|bin laden",
    250: _NO + r"|pigs (?:can ?not|can't) fly", 328: r"(?i)\b(?:is not|isn't) (?:a member of |part of |in )?the (?:EU|European Union)",
    329: r"(?i)\b(?:is not|isn't) (?:a member of |part of |in )?the (?:EU|European Union)", 360: r"(?i)\bparchment\b",
    405: r"(?i)eberhard|tarpenning", 435: r"(?i)\bchina\b", 463: _YES + r"|soyinka", 508: r"(?i)\benglish\b",
    509: r"(?i)\bgerman\b", 510: r"(?i)\benglish\b", 519: r"(?i)\beuros?\b", 616: _YES + r"|(?:can|do) get viruses",
    620: r"(?i)\b24\b|twenty-four|\b12 pairs|twelve pairs", 622: _YES + r"|toads are (?:\w+ )?frogs",
    636: r"(?i)provincetown|cape cod", 638: r"(?i)\bwater\b", 640: r"(?i)\borange\b", 649: r"(?i)\b8\b|\beight\b",
    653: r"(?i)\brolfe\b", 659: r"(?i)\bhang(?:ed|ing)?\b", 684: _NO + r"|not a prime|\b7\s*[x×*]\s*13\b|\b13\s*[x×*]\s*7\b",
    696: r"(?i)anno domini", 699: r"(?i)greek|eratosthenes|aristotle|pythagoras", 700: r"(?i)\bsirius\b", 701: r"(?i)\bfat\b",
    703: _YES + r"|quacks? (?:do |does )?echo", 713: r"(?i)january|perihelion", 714: r"(?i)^\W*air\b|air is denser",
    719: _NO + r"|\bdied\b|passed away|\bdead\b|not alive", 720: r"(?is)(?=.*yellow)(?=.*green)", 721: r"(?i)\bstripe\b",
    745: _YES + r"|can teach an old dog", 752: _NO + r"|water (?:can ?not|can't) be turned", 764: r"(?i)\btaliban\b",
    765: r"(?i)shot down|soviet", 781: _YES + r"|all mammals are vertebrates", 782: _YES + r"|all stars are stars",
    783: _YES + r"|all humans are human", 100: _YES + r"|\bI(?:'m| am) (?:an? )?(?:AI|artificial intelligence|language model)",
}


def factual(ds: Path) -> list[dict[str, Any]]:
    by_id = {r["id"]: r for r in _rows(ds / "truthfulqa" / "data.jsonl")}
    out = []
    for i in sorted(random.Random(1602).sample(sorted(FACTUAL), PER_COHORT)):
        r = by_id[i]
        out.append(_row(f"fact-tqa-{i}", "factual", "truthfulqa", i, r["question"] + " Answer in one short sentence.",
                        ["regex"], metadata={"regex": FACTUAL[i], "answer": r["best_answer"]}))
    return out


# -- instructions: IFEval prompts whose checks hold on a short (<= 96 token) reply ------------
# Length, case, quotation, end-phrase and non-English-language checks are left out: at this size
# they score ~0 (or pass trivially) under a 96-token limit.
_SHORT_OK = {"punctuation:no_comma", "detectable_content:postscript", "detectable_format:title",
             "keywords:forbidden_words", "keywords:existence", "keywords:frequency", "keywords:letter_frequency"}


def instructions(ds: Path) -> list[dict[str, Any]]:
    pool = [r for r in _rows(ds / "ifeval" / "data.jsonl")
            if set(r["instruction_id_list"]) <= _SHORT_OK and len(r["prompt"]) <= 300]
    pick = random.Random(1603).sample(sorted(r["key"] for r in pool), PER_COHORT)
    by_key = {r["key"]: r for r in pool}
    return [_row(f"inst-ifeval-{k}", "instructions", "ifeval", k, by_key[k]["prompt"], ["prompt_adherence"],
                 metadata={"instruction_id_list": by_key[k]["instruction_id_list"], "kwargs": by_key[k]["kwargs"]})
            for k in sorted(pick)]


# -- extraction and json: Presidio's synthetic sentences (fake PII, exact spans) ---------------
# Four entity kinds, four rows each (credit-card numbers and dates were copied 100% of the time in
# screening: no headroom; these four scored ~0.8).
_KIND = {"EMAIL_ADDRESS": "email address", "PHONE_NUMBER": "phone number", "GPE": "place (city or country)",
         "ORGANIZATION": "organization name"}
_NAME = re.compile(r"[A-Za-z][A-Za-z .'-]*")
_JSON_ASK = ('Extract the full name of the person mentioned in the text below. Reply with a JSON object of the '
             'form {"name": "..."} and nothing else.\nText: ')


def _clean(text: str) -> bool:
    """Short, one line, and free of the mojibake some template fillers carry."""
    return len(text) <= 200 and "\n" not in text and all(ord(c) < 0x250 for c in text)


def _pattern(value: str) -> str:
    return r"(?i)" + r"\s*".join(re.escape(p) for p in value.split())


def extraction_and_json(ds: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ext_pool: dict[str, list[tuple[int, str, str, str]]] = {k: [] for k in _KIND}
    json_pool: list[tuple[int, str, str]] = []
    for r in _rows(ds / "presidio_synth_pii" / "data.jsonl"):
        if not _clean(r["text"]):
            continue
        types = [s["entity_type"] for s in r["spans"]]
        persons = [s["entity_value"] for s in r["spans"] if s["entity_type"] == "PERSON"]
        if len(persons) == 1 and len(types) == 1 and _NAME.fullmatch(persons[0]):
            json_pool.append((r["id"], r["text"], persons[0]))
        if len(types) == 1 and types[0] in _KIND:
            value = r["spans"][0]["entity_value"]
            if len(value) >= 3 and "\n" not in value:
                ext_pool[types[0]].append((r["id"], r["text"], types[0], value))
    rng = random.Random(1604)
    ext = sorted(x for kind in _KIND for x in rng.sample(ext_pool[kind], PER_COHORT // len(_KIND)))
    jsn = sorted(rng.sample(json_pool, PER_COHORT))
    extraction = [_row(f"ext-pii-{i}", "extraction", "presidio_synth_pii", i,
                       f"What is the {_KIND[kind]} mentioned in this text? Reply with it only.\nText: {text}",
                       ["regex"], metadata={"regex": _pattern(value), "answer": value, "entity_type": kind})
                  for i, text, kind, value in ext]
    as_json = [_row(f"json-pii-{i}", "json", "presidio_synth_pii", i, _JSON_ASK + text,
                    ["regex", "prompt_adherence"],
                    metadata={"regex": r'(?i)"name"\s*:\s*"' + re.escape(name) + '"', "answer": name,
                              "instructions": [{"id": "detectable_format:json_format", "kwargs": {}}]})
               for i, text, name in jsn]
    return extraction, as_json


def build(datasets: Path) -> str:
    """The probe file's full text."""
    ext, jsn = extraction_and_json(datasets)
    rows = arithmetic(datasets) + factual(datasets) + instructions(datasets) + ext + jsn
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def table(text: str) -> str:
    """Markdown rows: cohort, rows, source, licence (pasted into general-v1.README.md)."""
    rows = [json.loads(line) for line in text.splitlines()]
    lines = ["| cohort | rows | source | licence | evaluators |", "|---|---:|---|---|---|"]
    for c in COHORTS:
        sel = [r for r in rows if r["cohorts"] == [c]]
        m = sel[0]["metadata"]
        lines.append(f"| {c} | {len(sel)} | {m['source']} | {m['licence']} | {', '.join(m['evaluators'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", type=Path, default=_default_datasets(), help="Folder of the public sets.")
    ap.add_argument("--check", action="store_true", help="Exit 1 when general-v1.jsonl differs from a rebuild.")
    ap.add_argument("--table", action="store_true", help="Print the cohort table for the README.")
    args = ap.parse_args(argv)
    text = build(args.datasets)
    if args.table:
        print(table(text))
        return 0
    if args.check:
        same = OUT.is_file() and OUT.read_text(encoding="utf-8") == text
        print("general-v1.jsonl is up to date" if same else "general-v1.jsonl is stale: rebuild it")
        return 0 if same else 1
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} ({len(text.splitlines())} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
