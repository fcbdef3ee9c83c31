"""Fine-tune the top layers of the safety encoder on cached lower-layer states.

Why only the top layers, and why cached: the frozen MiniLM sentence embedding is what held
content_safety at any-flagged F1 0.70, so the encoder itself must learn the moderation taxonomy.
Fine-tuning all six layers on this 2-core CPU costs a full forward and backward pass per row per
epoch; the bottom ``6 - K`` layers are instead run *once* (``lower_states``) and their token states
kept in fp16, so an epoch only runs the top ``K`` layers (about K/6 of the forward cost, times
three for the backward pass). The shipped delta is those K layers (fp16), a few MB.

The row embedding is built exactly as ``safety.embed_texts`` builds it (200-token windows, mean
pooling over tokens, unit norm, mean over windows, unit norm), so the logistic heads and their
calibrated thresholds are fit on it the same way ``safety_train`` fits them on the frozen one.
Training loss: binary cross-entropy over all heads, with unlabelled (null) targets masked out.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "TopEncoder",
    "cached_states",
    "cv_fold",
    "dev_folds",
    "finetune",
    "label_matrix",
    "lower_states",
    "main",
    "row_embeddings",
    "run_folds",
]


def lower_states(texts: Sequence[str], k: int, batch_size: int = 32) -> tuple[list[np.ndarray], np.ndarray]:
    """Token states after layer ``6 - k`` of the base MiniLM, one fp16 (len, 384) array per window,
    and the row each window belongs to."""
    import torch

    from tunegate.evaluators.safety import _embedder, text_windows

    st = _embedder()
    chunks, owner = text_windows(texts)
    bert = st[0].auto_model
    n_layers = len(bert.encoder.layer)
    order = np.argsort([len(c) for c in chunks])
    out: list[np.ndarray] = [np.zeros((0, 0), np.float16)] * len(chunks)
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            enc = st.tokenize([chunks[i] for i in idx])
            hs = bert(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                      token_type_ids=enc.get("token_type_ids"), output_hidden_states=True).hidden_states
            h = hs[n_layers - k]
            lens = enc["attention_mask"].sum(dim=1).tolist()
            for j, i in enumerate(idx):
                out[int(i)] = h[j, :lens[j]].to(torch.float16).numpy()
    return out, np.asarray(owner)


class TopEncoder:
    """The top K BERT layers of the MiniLM plus its mean pooling, as a trainable torch module."""

    def __init__(self, k: int, state: dict[str, Any] | None = None) -> None:
        import torch

        from tunegate.evaluators.safety import _embedder

        bert = _embedder()[0].auto_model
        self.config = bert.config
        self.layers = torch.nn.ModuleList(copy.deepcopy(layer) for layer in bert.encoder.layer[-k:])
        if state is not None:
            self.layers.load_state_dict({n: v.float() for n, v in state.items()})
        self.k = k

    def forward(self, batch: Sequence[np.ndarray]) -> Any:
        """Unit-norm mean-pooled embeddings of a batch of windows' lower states, shape (b, 384)."""
        import torch
        from transformers.masking_utils import create_bidirectional_mask

        n = max(len(x) for x in batch)
        h = torch.zeros(len(batch), n, batch[0].shape[1])
        mask = torch.zeros(len(batch), n, dtype=torch.long)
        for j, x in enumerate(batch):
            h[j, :len(x)] = torch.from_numpy(x.astype(np.float32))
            mask[j, :len(x)] = 1
        att = create_bidirectional_mask(config=self.config, inputs_embeds=h, attention_mask=mask)
        for layer in self.layers:
            h = layer(h, att)
        m = mask.unsqueeze(-1).float()
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=1)


def row_embeddings(top: TopEncoder, states: list[np.ndarray], owner: np.ndarray, n_rows: int,
                   batch_size: int = 32) -> np.ndarray:
    """Row embeddings (mean of unit window embeddings, unit norm), shape (n_rows, 384)."""
    import torch

    order = np.argsort([len(x) for x in states])
    emb = np.zeros((len(states), 384), np.float32)
    top.layers.eval()
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            emb[idx] = top.forward([states[i] for i in idx]).numpy()
    out = np.zeros((n_rows, emb.shape[1]), np.float32)
    np.add.at(out, owner, emb)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


def finetune(states: list[np.ndarray], owner: np.ndarray, Y: np.ndarray, rows: np.ndarray, k: int,
             epochs: int = 3, lr: float = 3e-5, head_lr: float = 3e-3, batch_size: int = 16,
             seed: int = 0) -> dict[str, Any]:
    """Train the top ``k`` layers and a linear multi-label head on ``rows`` (indices into ``Y``).

    ``Y`` is (n_rows, heads) with -1 where a label is absent (masked out of the loss). Windows are
    the training items (almost every row is one window); a window takes its row's labels.
    Returns the layers' state dict (fp16 tensors)."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    top = TopEncoder(k)
    head = torch.nn.Linear(384, Y.shape[1])
    opt = torch.optim.AdamW([{"params": top.layers.parameters(), "lr": lr},
                             {"params": head.parameters(), "lr": head_lr}], weight_decay=0.01)
    keep = set(int(r) for r in rows)
    items = np.array([i for i, o in enumerate(owner) if int(o) in keep])
    Yt = torch.from_numpy(Y.astype(np.float32))
    top.layers.train()
    for _ in range(epochs):
        perm = rng.permutation(items)
        # Bucket by length so padding stays small, then shuffle the buckets.
        perm = perm[np.argsort([len(states[i]) for i in perm], kind="stable")]
        batches = [perm[s:s + batch_size] for s in range(0, len(perm), batch_size)]
        for bi in rng.permutation(len(batches)):
            b = batches[bi]
            z = head(top.forward([states[i] for i in b]) * 10.0)
            y = Yt[torch.from_numpy(owner[b])]
            m = (y >= 0).float()
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(z, y.clamp(min=0), reduction="none")
                    * m).sum() / m.sum().clamp(min=1.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {n: v.detach().to(torch.float16) for n, v in top.layers.state_dict().items()}


def label_matrix(rows: list[dict[str, Any]], social: list[dict[str, Any]]) -> np.ndarray:
    """(moderation + Surge rows, heads + toxic) targets, -1 where absent: moderation rows carry the
    category and any_flagged labels (null = not annotated), Surge rows only ``toxic``."""
    from tunegate.evaluators.training.safety_train import HEADS, _labels

    n = len(rows)
    Y = -np.ones((n + len(social), len(HEADS) + 1))
    for j, h in enumerate(HEADS):
        Y[:n, j] = _labels(rows, h)
    Y[n:, -1] = [int(r["toxic"]) for r in social]
    return Y


def dev_folds(rows: list[dict[str, Any]]) -> list[np.ndarray]:
    """Five folds of the train + calibrate rows (the test split never enters a CV fold)."""
    from tunegate.evaluators.training.safety_train import SEED, split_of

    dev = np.array([i for i, r in enumerate(rows) if split_of(r["id"]) != "test"])
    return list(np.array_split(np.random.default_rng(SEED).permutation(dev), 5))


def cv_fold(fold: int, rows: list[dict[str, Any]], social: list[dict[str, Any]], states: list[np.ndarray],
            owner: np.ndarray, k: int, epochs: int, lr: float) -> dict[str, Any]:
    """One CV fold on train + calibrate: fine-tune on three folds (+ the Surge train half), fit the
    heads there, thresholds on the fourth, scores on the fifth; the frozen embedding beside it."""
    from tunegate.evaluators.training.safety_train import evaluate, fit_heads, social_half

    folds = dev_folds(rows)
    te, ca = folds[fold], folds[(fold + 1) % 5]
    tr = np.concatenate([folds[j] for j in range(5) if j not in (fold, (fold + 1) % 5)])
    n = len(rows)
    surge_tr = n + np.array([i for i, r in enumerate(social) if social_half(r["id"]) == "train"])
    Y = label_matrix(rows, social)
    X0 = row_embeddings(TopEncoder(k), states, owner, n + len(social))[:n]
    sd = finetune(states, owner, Y, np.concatenate([tr, surge_tr]), k, epochs=epochs, lr=lr)
    X1 = row_embeddings(TopEncoder(k, sd), states, owner, n + len(social))[:n]
    return {"fold": fold, "frozen": evaluate(X0, rows, te, fit_heads(X0, rows, tr, ca)),
            "tuned": evaluate(X1, rows, te, fit_heads(X1, rows, tr, ca))}


def main(argv: list[str] | None = None) -> None:
    """Run some CV folds (``--folds 0,1``) into ``--cv-dir`` (one JSON per fold), so the folds can
    run in parallel processes; ``safety_train --cv-dir`` computes any fold still missing."""
    import argparse
    import json
    import os
    from pathlib import Path

    import torch

    from tunegate.evaluators.training.safety_train import DEFAULT_DATA, SOCIAL_DATA

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--folds", default="0,1,2,3,4")
    ap.add_argument("--cv-dir", type=Path, required=True)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--states-cache", type=Path, default=None, help="pickle to reuse/save the lower states")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(int(os.environ.get("TUNEGATE_TORCH_THREADS", "1")))
    rows = [json.loads(x) for x in DEFAULT_DATA.read_text(encoding="utf-8").splitlines() if x.strip()]
    social = [json.loads(x) for x in SOCIAL_DATA.read_text(encoding="utf-8").splitlines() if x.strip()]
    states, owner = cached_states([r["text"] for r in rows] + [r["text"] for r in social], args.layers,
                                  args.states_cache)
    run_folds(args.cv_dir, [int(f) for f in args.folds.split(",")], rows, social, states, owner,
              args.layers, args.epochs, args.lr)


def cached_states(texts: Sequence[str], k: int, cache: Any = None) -> tuple[list[np.ndarray], np.ndarray]:
    """``lower_states``, read from / written to the pickle ``cache`` when one is given (a local
    scratch file this process wrote itself, never shipped)."""
    import pickle

    if cache is not None and cache.exists():
        with cache.open("rb") as fh:
            states, owner = pickle.load(fh)
        if len(states) == len(owner) and int(owner.max()) == len(texts) - 1:
            return states, owner
    states, owner = lower_states(texts, k)
    if cache is not None:
        with cache.open("wb") as fh:
            pickle.dump((states, owner), fh)
    return states, owner


def run_folds(cv_dir: Any, folds: Sequence[int], rows: list[dict[str, Any]], social: list[dict[str, Any]],
              states: list[np.ndarray], owner: np.ndarray, k: int, epochs: int, lr: float) -> list[dict[str, Any]]:
    """The CV folds' results, computing (and saving as ``fold<i>.json``) those not yet in ``cv_dir``
    for this configuration."""
    import json
    import time

    cv_dir.mkdir(parents=True, exist_ok=True)
    out = []
    conf = {"layers": k, "epochs": epochs, "lr": lr}
    for f in folds:
        p, running = cv_dir / f"fold{f}.json", cv_dir / f"fold{f}.running"
        while running.exists() and not p.exists():  # another process is computing this fold
            time.sleep(10)
        if p.exists() and json.loads(p.read_text())["config"] == conf:
            out.append(json.loads(p.read_text()))
            continue
        running.write_text(json.dumps(conf))
        try:
            res = {"config": conf, **cv_fold(f, rows, social, states, owner, k, epochs, lr)}
            p.write_text(json.dumps(res, indent=1) + "\n")
        finally:
            running.unlink(missing_ok=True)
        out.append(res)
    return out


if __name__ == "__main__":
    main()
