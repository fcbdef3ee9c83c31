"""Contamination detection: planted precision/recall and rows/s, next to ``datasketch.MinHashLSH``.

1. **GSM8K planted** — the 1,319 GSM8K test rows split in two halves ("train" 660 / "test" 659);
   ~500 rows planted from the train half (tests/support/planting.py: case/punctuation copies, 3-word
   edits, shuffled sentences, 30-word passages inside new text, dense filler insertions, and clean
   distractors sharing topic words); plus all 790 TruthfulQA rows as known-clean eval rows.
   Recall per kind (the right train row must be named), precision over rows whose truth is known;
   overlaps between the two real GSM8K halves are listed apart (real near-duplicates exist).
2. **Short rows** — TruthfulQA (question + best answer, ~20 words) planted the same way against
   Bitext customer-support rows as clean text: where surface overlap gets hard.
3. **Scale** — 100k synthetic rows (sentences of every shared dataset recombined), 50k train vs
   50k eval with 1% planted copies: rows/s of the whole check and of MinHash alone.

The peer is datasketch's MinHash + MinHashLSH (threshold 0.8, 128 permutations) on the same
character 5-shingles of the same normalised text, candidates verified at estimated J >= 0.8 like
ours; it has no n-gram or exact stage, so it is compared with our MinHash stage ("minhash only")
and shown next to the full check. Timed on a subset when it would take minutes (said in the table).
Run: ``python bench/contamination.py`` (``--quick`` for a smaller scale run).
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets"
sys.path.insert(0, str(REPO))

from tests.support.planting import DISTRACTOR_KINDS, HARD_KINDS, NEAR_DUP_KINDS, plant  # noqa: E402

from tunegate.checks.contamination import check_contamination  # noqa: E402
from tunegate.checks.textrows import normalise  # noqa: E402

__all__ = ["main"]

con = Console(highlight=False, width=int(os.environ.get("COLUMNS", "170")))


def _rows(name: str) -> list[dict[str, Any]]:
    with (DATA / name / "data.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def _score(found: dict[str, list[str]], planted: list[Any], clean_ids: set[str]) -> dict[str, Any]:
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    tp = fp = 0
    for p in planted:
        hit = p.row["id"] in found and (p.source is None or p.source in found[p.row["id"]])
        per[p.kind][1] += 1
        per[p.kind][0] += int(hit)
        if p.kind in NEAR_DUP_KINDS:
            tp += int(hit)
        elif p.kind in DISTRACTOR_KINDS:
            fp += int(p.row["id"] in found)
    fp += sum(1 for i in found if i in clean_ids)
    n_dup = sum(per[k][1] for k in NEAR_DUP_KINDS)
    return {"per": {k: tuple(v) for k, v in per.items()}, "recall": tp / n_dup, "fp": fp,
            "precision": tp / max(tp + fp, 1), "tp": tp}


def _datasketch(train: list[str], ev: list[str], threshold: float = 0.8, k: int = 5) -> tuple[dict[int, list[int]], float]:
    from datasketch import MinHash, MinHashLSH

    t0 = time.perf_counter()

    def mh(text: str) -> Any:
        m = MinHash(num_perm=128, seed=1)
        sh = {text[i:i + k] for i in range(max(1, len(text) - k + 1))}
        m.update_batch([s.encode("utf-8") for s in sh])
        return m

    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    tm = [mh(t) for t in train]
    for i, m in enumerate(tm):
        lsh.insert(i, m)
    found: dict[int, list[int]] = {}
    for e, t in enumerate(ev):
        m = mh(t)
        hits = [i for i in lsh.query(m) if m.jaccard(tm[i]) >= threshold]
        if hits:
            found[e] = hits
    return found, time.perf_counter() - t0


def _text(r: dict[str, Any], keys: tuple[str, ...]) -> str:
    return normalise(" ".join(str(r[k]) for k in keys if r.get(k)))


def planted_gsm8k(peer: bool) -> None:
    g = [{"id": f"g{r['id']}", "question": r["question"], "solution": r["solution"]} for r in _rows("gsm8k")]
    train, test = g[:660], g[660:]
    planted = plant(train, text_key="question", answer_key="solution", per_kind=72, seed=11)
    tqa = [{"id": f"tq{r['id']}", "question": r["question"], "answer": r["best_answer"]} for r in _rows("truthfulqa")]
    ev = test + [p.row for p in planted] + tqa
    clean_ids = {r["id"] for r in tqa}
    t = Table(title=f"GSM8K planted: {len(train)} train rows vs {len(ev)} eval rows "
                    f"({len(planted)} planted, {len(tqa)} TruthfulQA clean, {len(test)} real GSM8K)",
              header_style="bold", show_edge=False)
    kinds = [*NEAR_DUP_KINDS, *HARD_KINDS, *DISTRACTOR_KINDS]
    for col in ("system", *kinds, "recall", "precision", "FP", "real GSM8K hits", "s", "rows/s"):
        t.add_column(col, justify="left" if col == "system" else "right", no_wrap=col == "system")
    runs: list[tuple[str, dict[str, list[str]], float]] = []
    for label, methods in (("tunegate (exact+13-gram+MinHash)", ("exact", "ngram", "minhash")),
                           ("tunegate MinHash only", ("minhash",))):
        rep = check_contamination(train, ev, methods=methods)
        runs.append((label, {r.eval_id: r.train_ids for r in rep.rows}, rep.elapsed_s))
    if peer:
        ds_found, secs = _datasketch([_text(r, ("question", "solution")) for r in train],
                                     [_text(r, ("question", "solution", "answer")) for r in ev])
        runs.append(("datasketch MinHashLSH", {ev[e]["id"]: [train[i]["id"] for i in v] for e, v in ds_found.items()},
                     secs))
    natural: list[str] = []
    for label, found, secs in runs:
        s = _score(found, planted, clean_ids)
        real = sorted(i for i in found if i in {r["id"] for r in test})
        if label.startswith("tunegate (") and real:
            natural = [f"{i}↔{found[i][0]}" for i in real[:6]]
        t.add_row(label, *(f"{s['per'][k][0]}/{s['per'][k][1]}" for k in kinds), f"{s['recall']:.3f}",
                  f"{s['precision']:.3f}", str(s["fp"]), str(len(real)), f"{secs:.2f}",
                  f"{(len(train) + len(ev)) / secs:,.0f}")
    if not peer:
        t.add_row("datasketch MinHashLSH", "peer not installed", *[""] * (len(kinds) + 5))
    con.print(t)
    con.print("near-duplicate kinds count in recall; dense_edits (a filler word after every 10th word) is shown, "
              "not counted; distractor columns are false positives. Real GSM8K overlaps between the halves "
              f"(tunegate): {', '.join(natural) or 'none'}")


def planted_short() -> None:
    tqa = [{"id": f"tq{r['id']}", "question": r["question"], "answer": r["best_answer"]} for r in _rows("truthfulqa")]
    train = tqa[:395]
    planted = plant(train, text_key="question", answer_key="answer", per_kind=40, seed=5, passage_words=10)
    bitext = [{"id": f"bx{r['id']}", "instruction": r["instruction"], "response": r["expected_response"]}
              for r in _rows("bitext_customer_support")]
    rep = check_contamination(train, [p.row for p in planted] + bitext)
    s = _score({r.eval_id: r.train_ids for r in rep.rows}, planted, {r["id"] for r in bitext})
    t = Table(title=f"short rows: TruthfulQA question+answer ({len(train)} train) vs {len(planted)} planted + "
                    f"{len(bitext)} Bitext clean", header_style="bold", show_edge=False)
    kinds = [*NEAR_DUP_KINDS, *HARD_KINDS, *DISTRACTOR_KINDS]
    for col in (*kinds, "recall", "precision", "FP", "s"):
        t.add_column(col, justify="right")
    t.add_row(*(f"{s['per'][k][0]}/{s['per'][k][1]}" for k in kinds), f"{s['recall']:.3f}", f"{s['precision']:.3f}",
              str(s["fp"]), f"{rep.elapsed_s:.2f}")
    con.print(t)


def _pool() -> list[str]:
    texts = []
    # Bitext and SummEdits are left out: their rows are templated / edited copies of each other, so
    # "unrelated" synthetic rows built from them would genuinely overlap
    for name, keys in (("gsm8k", ("question", "solution")), ("truthfulqa", ("question", "best_answer")),
                       ("banking77", ("text",)), ("openai_moderation", ("text",)), ("ifeval", ("prompt",))):
        if (DATA / name).exists():
            for r in _rows(name):
                texts += [str(r[k]) for k in keys if r.get(k)]
    sents = [s.strip() for t in texts for s in re.split(r"(?<=[.?!])\s+|\n+", t) if len(s.split()) >= 6]
    return list(dict.fromkeys(sents))


def scale(n_total: int, peer_rows: int, peer: bool) -> None:
    rng = random.Random(0)
    pool = _pool()
    rng.shuffle(pool)
    pools = {"t": pool[: len(pool) // 2], "e": pool[len(pool) // 2:]}  # train and eval share no sentence
    half = n_total // 2

    def doc(i: int, prefix: str) -> dict[str, Any]:
        return {"id": f"{prefix}{i}", "input": " ".join(rng.sample(pools[prefix], rng.randint(3, 6)))}

    train = [doc(i, "t") for i in range(half)]
    ev = [doc(i, "e") for i in range(half)]
    for j in range(half // 100):  # 1% planted copies with 2 words replaced, sources inside the peer subset
        src = train[rng.randrange(peer_rows // 2)]
        words = src["input"].split()
        for k in rng.sample(range(len(words)), min(2, len(words))):
            words[k] = "zzplanted"
        ev[j] = {"id": f"e{j}", "input": " ".join(words), "src": src["id"]}
    planted = {r["id"]: r["src"] for r in ev if "src" in r}
    t = Table(title=f"scale: {half:,} train vs {half:,} eval synthetic rows (3-6 sentences each from {len(pool):,} "
                    f"distinct shared-dataset sentences, split between the sides), {len(planted):,} planted",
              header_style="bold", show_edge=False)
    for col in ("system", "rows", "s", "rows/s", "planted recall", "other hits"):
        t.add_column(col, justify="left" if col == "system" else "right", no_wrap=col == "system")

    def add(label: str, found: dict[str, list[str]], n: int, secs: float) -> None:
        p_here = planted  # planted eval rows and their sources all lie inside the subset
        rec = sum(1 for k, v in p_here.items() if v in found.get(k, [])) / max(len(p_here), 1)
        t.add_row(label, f"{n:,}", f"{secs:.1f}", f"{n / secs:,.0f}", f"{rec:.3f}",
                  str(sum(1 for k in found if k not in planted)))

    for label, methods in (("tunegate full check", ("exact", "ngram", "minhash")), ("tunegate MinHash only",
                                                                                       ("minhash",))):
        rep = check_contamination(train, ev, methods=methods)
        add(label, {r.eval_id: r.train_ids for r in rep.rows}, n_total, rep.elapsed_s)
    m = peer_rows // 2
    sub_t, sub_e = train[:m], ev[:m]
    rep = check_contamination(sub_t, sub_e, methods=("minhash",))
    add(f"tunegate MinHash only (subset {peer_rows:,})", {r.eval_id: r.train_ids for r in rep.rows}, peer_rows,
        rep.elapsed_s)
    secs = None
    if peer:
        found, secs = _datasketch([normalise(r["input"]) for r in sub_t], [normalise(r["input"]) for r in sub_e])
        add(f"datasketch MinHashLSH (subset {peer_rows:,})",
            {sub_e[e]["id"]: [sub_t[i]["id"] for i in v] for e, v in found.items()}, peer_rows, secs)
    else:
        t.add_row("datasketch MinHashLSH", "peer not installed", "", "", "", "")
    con.print(t)
    con.print("other hits: text genuinely shared across the two sides (IFEval's instruction boilerplate, "
              "near-identical moderation samples, GSM8K near-duplicates), not planted")
    if secs is not None:
        con.print(f"ratio on the {peer_rows:,}-row subset: tunegate MinHash is "
                  f"{secs / rep.elapsed_s:.1f}x the speed of datasketch (same shingles, permutations, threshold)")


def main() -> int:
    quick = "--quick" in sys.argv
    if not (DATA / "gsm8k").exists():
        con.print(f"shared datasets not found at {DATA}; nothing to benchmark")
        return 0
    try:
        import datasketch  # noqa: F401

        peer = True
    except ImportError:
        peer = False
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    con.print(f"machine: {os.cpu_count()} cores, load average {load:.1f} at start; peer datasketch: "
              + ("installed" if peer else "peer not installed (pip install datasketch) — tunegate rows only"))
    planted_gsm8k(peer)
    planted_short()
    scale(20_000 if quick else 100_000, 4_000 if quick else 20_000, peer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
