"""``tunegate traces`` arithmetic: latency percentiles, tokens and cost per trace, eval-fail-rate.

Pure functions over span rows (dicts with the ``spans`` table's columns). A *trace* is one client
request (gateway) or one run row (offline); its latency is the root LLM span's duration when it has
one, its tokens and cost the sum over its LLM spans (retries and fallbacks cost money too). The
eval-fail-rate counts evaluated spans (online EVALUATOR spans, offline row spans): a span fails when
any evaluator on it failed; skipped and errored evaluator results are neither pass nor fail.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["GROUP_KEYS", "summarize", "window_ns"]

GROUP_KEYS = ("model", "prompt_version", "route", "arm", "cohort", "candidate", "source", "response_model")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def window_ns(spec: str, now_ns: int) -> int:
    """Start of a window given as ``15m``, ``2h``, ``7d`` (ending now)."""
    spec = spec.strip()
    if len(spec) < 2 or spec[-1] not in _UNITS or not spec[:-1].replace(".", "", 1).isdigit():
        raise ValueError(f"window {spec!r}: use a number and a unit s, m, h or d (e.g. 15m, 24h)")
    return now_ns - int(float(spec[:-1]) * _UNITS[spec[-1]] * 1e9)


def _pct(xs: Sequence[float], q: float) -> float | None:
    return float(np.quantile(np.asarray(xs, dtype=np.float64), q)) if xs else None


def summarize(rows: Iterable[dict[str, Any]], by: Sequence[str]) -> list[dict[str, Any]]:
    """One summary per group (values of ``by``), largest groups first."""
    for k in by:
        if k not in GROUP_KEYS:
            raise ValueError(f"cannot group by {k!r}; use one of {', '.join(GROUP_KEYS)}")
    traces: dict[tuple[Any, ...], dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    evals: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for r in rows:
        key = tuple(r.get(k) for k in by)
        if r.get("eval_failed") is not None:
            evals[key].append(int(r["eval_failed"]))
        if r.get("kind") == "LLM":
            traces[key][str(r["trace_id"])].append(r)
    out = []
    for key in set(traces) | set(evals):
        lat, tok, cost, errors = [], [], [], 0
        for spans in traces.get(key, {}).values():
            ids = {s["span_id"] for s in spans}
            roots = [s for s in spans if s.get("parent_id") not in ids]
            lat.append(max(float(s["duration_ms"]) for s in roots or spans))
            tok.append(sum(int(s.get("input_tokens") or 0) + int(s.get("output_tokens") or 0) for s in spans))
            cost.append(sum(float(s.get("cost") or 0.0) for s in spans))
            errors += any(s.get("status") == "error" for s in spans)
        n = len(lat)
        ev = evals.get(key, [])
        out.append({
            **dict(zip(by, key, strict=True)),
            "traces": n,
            "p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99),
            "tokens_per_trace": float(np.mean(tok)) if tok else None,
            "cost_per_trace": float(np.mean(cost)) if cost else None,
            "error_rate": errors / n if n else None,
            "evaluated": len(ev), "eval_fail_rate": float(np.mean(ev)) if ev else None,
        })
    out.sort(key=lambda d: (-int(d["traces"]), -int(d["evaluated"]), [str(d[k]) for k in by]))
    return out
