"""Build ``dataset.jsonl`` for the release example from public labelled datasets.

The support example's 178 hand-written rows are too few to decide anything per cohort (the test
split of a cohort lands at 4-15 rows). This script draws a golden set large enough that every gated
cohort has at least ``TEST_PER_COHORT`` test rows, from three open datasets in ``../shared/datasets``:

* **structured** -- Banking77 (CC BY 4.0): classify a banking customer message into
  ``{"category": <one of 6>, "intent": <snake_case label>}`` under a strict JSON Schema.
* **tool_call** -- BFCL v4 (Apache-2.0), *non-live* categories only (``simple_python``, ``multiple``
  and ``irrelevance``; ``live_*`` rows are reserved for held-out evaluation and never read), with
  the offered tools as OpenAI function specs and BFCL's possible answers as ``expected_tool_calls``
  (``[]`` on irrelevance rows: no tool may be called).
* **answer** -- GSM8K (MIT): short one- or two-step word problems with the numeric final answer.

Splits are not chosen here: ``tunegate`` assigns them from a hash of the row id
(``tunegate.core.dataset.assign_split``). The script walks each source in a seeded order and keeps
a row only while its (hash-given) split still needs rows, so every topical cohort gets exactly
``TEST_PER_COHORT`` test rows and a fixed number of train/dev rows for tuning. Which split a row is
in does not depend on its content, so this selection biases nothing.

    python examples/release/build_golden.py            # rewrite dataset.jsonl
    python examples/release/build_golden.py --check    # exit 1 if dataset.jsonl is stale
    python examples/release/build_golden.py --table    # split x cohort counts (Markdown)

Written by the tunegate authors. Licence of this script: Apache-2.0; of the rows: their sources'.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tunegate.core.dataset import assign_split

__all__ = ["QUOTA", "TEST_PER_COHORT", "build_rows", "main", "split_cohort_table"]

HERE = Path(__file__).resolve().parent
OUT = HERE / "dataset.jsonl"
SHARED = HERE.parent.parent.parent / "shared" / "datasets"  # ../shared/datasets from the repo root
SEED = 18

#: Test rows per topical cohort. A non-inferiority margin of 0.10 is decidable from 36 pairs
#: (``tunegate policy explain``), so 44 leaves room for rows an evaluator errors on.
TEST_PER_COHORT = 44
QUOTA: dict[str, int] = {"train": 28, "dev": 12, "test": TEST_PER_COHORT}

CATEGORIES = ("card", "transfer", "top_up", "cash", "exchange", "account")
STRUCTURED_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "BankingIntent",
    "type": "object",
    "properties": {
        "category": {"enum": list(CATEGORIES)},
        "intent": {"type": "string", "pattern": "^[a-z][a-z_]*$", "maxLength": 60},
    },
    "required": ["category", "intent"],
    "additionalProperties": False,
}
STRUCTURED_PROMPT = ('Classify this bank customer message. Reply with JSON only: {{"category": one of '
                     + "|".join(CATEGORIES) + ', "intent": a snake_case label}}.\nMessage: {text}')
ANSWER_PROMPT = "{question}\nGive the final answer as a number."

_BFCL_TYPES = {"dict": "object", "float": "number", "tuple": "array", "double": "number", "long": "integer"}
_NAME_OK = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise SystemExit(f"{path}: missing -- the shared datasets are expected at {SHARED} (or pass --shared DIR)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def banking_category(intent: str) -> str:
    """One of six coarse categories of a Banking77 intent (ordered keyword rules, documented in the README)."""
    if "top_up" in intent or "topping_up" in intent:
        return "top_up"
    if "exchange" in intent or "currenc" in intent:
        return "exchange"
    if "cash" in intent or "atm" in intent:
        return "cash"
    if "transfer" in intent or intent in ("beneficiary_not_allowed", "receiving_money",
                                          "direct_debit_payment_not_recognised"):
        return "transfer"
    if "card" in intent or intent in ("change_pin", "pin_blocked", "contactless_not_working",
                                      "apple_pay_or_google_pay", "visa_or_mastercard"):
        return "card"
    return "account"


def _structured(shared: Path) -> Iterator[dict[str, Any]]:
    for r in _jsonl(shared / "banking77" / "data.jsonl"):
        intent = str(r["intent"]).lower().rstrip("?")
        text = " ".join(str(r["text"]).split())
        if len(text) > 160:
            continue
        cat = banking_category(intent)
        yield {"id": f"b77-{r['id']}", "input": STRUCTURED_PROMPT.format(text=text), "schema": STRUCTURED_SCHEMA,
               "expected": {"category": cat, "intent": intent},
               "cohorts": ["structured", "cards" if cat == "card" else "payments"],
               "metadata": {"task": "structured", "source": "banking77", "category": cat, "intent": intent}}


def _json_schema(s: Any) -> Any:
    """BFCL's parameter spellings (``dict``, ``float``, ``tuple``) as JSON Schema kinds."""
    if isinstance(s, list):
        return [_json_schema(x) for x in s]
    if not isinstance(s, dict):
        return s
    out = {k: _json_schema(v) for k, v in s.items() if k != "properties"}
    if isinstance(s.get("type"), str):
        out["type"] = _BFCL_TYPES.get(s["type"], s["type"])
    if isinstance(s.get("properties"), dict):  # property names (one may be called "type") stay as they are
        out["properties"] = {k: _json_schema(v) for k, v in s["properties"].items()}
    return out


def _fn_name(name: str) -> str:
    """OpenAI function names allow ``[A-Za-z0-9_-]`` only; BFCL's dotted names get ``_`` (as BFCL does)."""
    return name.replace(".", "_")


def _tool_ok(fn: dict[str, Any]) -> bool:
    text = json.dumps(fn)
    return _NAME_OK.match(_fn_name(fn["name"])) is not None and '"any"' not in text


def _tools(shared: Path, topic: str) -> Iterator[dict[str, Any]]:
    cats = {"function_call": ("simple_python", "multiple"), "irrelevance": ("irrelevance",)}[topic]
    for r in _jsonl(shared / "bfcl" / "data.jsonl"):
        cat = str(r["category"])
        if cat.startswith("live") or cat not in cats:  # live_* rows are reserved: never read them
            continue
        fns = r["functions"]
        prompt = " ".join(str(r["user_prompt"]).split())
        if len(prompt) > 240 or len(json.dumps(fns)) > 1400 or not all(_tool_ok(f) for f in fns):
            continue
        tools = [{"type": "function", "function": {"name": _fn_name(f["name"]), "description": f.get("description", ""),
                                                   "parameters": _json_schema(f["parameters"])}} for f in fns]
        if cat == "irrelevance":
            expected: list[dict[str, Any]] = []
        else:
            gt = r["ground_truth"] or []
            if len(gt) != 1:
                continue
            (fname, args), = gt[0].items()
            expected = [{"name": _fn_name(fname), "any_of": args}]
        yield {"id": f"bfcl-{r['id']}", "input": prompt, "tools": tools, "expected_tool_calls": expected,
               "cohorts": ["tool_call", topic],
               "metadata": {"task": "tool_call", "source": "bfcl-v4", "bfcl_category": cat}}


def _answers(shared: Path) -> Iterator[dict[str, Any]]:
    for r in _jsonl(shared / "gsm8k" / "data.jsonl"):
        q = " ".join(str(r["question"]).split())
        steps = str(r["solution"]).count("<<")
        if len(q) > 220 or steps > 2:  # short problems: answerable within ~48 new tokens
            continue
        final = str(r["final_answer"]).replace(",", "")
        try:
            value: int | float = int(final)
        except ValueError:
            value = float(final)
        yield {"id": f"gsm8k-{r['id']}", "input": ANSWER_PROMPT.format(question=q), "expected": value,
               "cohorts": ["answer", "arithmetic"],
               "metadata": {"task": "answer", "source": "gsm8k", "steps": steps}}


def _take(rows: Iterator[dict[str, Any]], seed: int, name: str) -> list[dict[str, Any]]:
    """Rows of one topical cohort: a seeded shuffle, kept while the row's hashed split has room."""
    pool = list(rows)
    random.Random(f"{seed}:{name}").shuffle(pool)
    need = dict(QUOTA)
    out = []
    for row in pool:
        s = assign_split(row["id"])
        if need[s] > 0:
            need[s] -= 1
            out.append(row)
        if not any(need.values()):
            return sorted(out, key=lambda r: r["id"])
    raise SystemExit(f"{name}: source has too few eligible rows (still need {need})")


def build_rows(shared: Path = SHARED, seed: int = SEED) -> list[dict[str, Any]]:
    """Every row of the golden set, in a stable order (cohort by cohort, ids sorted)."""
    structured = list(_structured(shared))
    topics: list[tuple[str, Callable[[], Iterator[dict[str, Any]]]]] = [
        ("cards", lambda: (r for r in structured if "cards" in r["cohorts"])),
        ("payments", lambda: (r for r in structured if "payments" in r["cohorts"])),
        ("function_call", lambda: _tools(shared, "function_call")),
        ("irrelevance", lambda: _tools(shared, "irrelevance")),
        ("arithmetic", lambda: _answers(shared)),
    ]
    rows = [r for name, src in topics for r in _take(src(), seed, name)]
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "duplicate row ids"
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n" for r in rows)


def split_cohort_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table: rows per cohort and split (splits as tunegate assigns them)."""
    counts: Counter[tuple[str, str]] = Counter()
    for r in rows:
        for c in r["cohorts"]:
            counts[(c, assign_split(r["id"]))] += 1
    cohorts = list(dict.fromkeys(c for r in rows for c in r["cohorts"]))
    lines = ["| cohort | train | dev | test | total |", "|---|---:|---:|---:|---:|"]
    for c in cohorts:
        n = [counts[(c, s)] for s in ("train", "dev", "test")]
        lines.append(f"| {c} | {n[0]} | {n[1]} | {n[2]} | {sum(n)} |")
    tot = Counter(assign_split(r["id"]) for r in rows)
    lines.append(f"| **all rows** | **{tot['train']}** | **{tot['dev']}** | **{tot['test']}** | **{len(rows)}** |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=SHARED, help="folder holding banking77/, bfcl/, gsm8k/")
    ap.add_argument("--out", type=Path, default=OUT)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if --out differs from a fresh build")
    mode.add_argument("--table", action="store_true", help="print split x cohort counts and exit")
    args = ap.parse_args(argv)
    rows = build_rows(args.shared)
    text = render(rows)
    if args.table:
        print(split_cohort_table(rows))
        return 0
    if args.check:
        if not args.out.is_file() or args.out.read_text(encoding="utf-8") != text:
            print(f"{args.out} is stale: run python {Path(__file__).name} to rebuild it", file=sys.stderr)
            return 1
        print(f"{args.out}: up to date ({len(rows)} rows)")
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(rows)} rows, {len(text.encode()) / 1e3:.0f} kB)")
    print(split_cohort_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
