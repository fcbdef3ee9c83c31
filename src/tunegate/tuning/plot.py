"""Score-against-calls plot of an optimisation run (PNG, matplotlib's headless Agg backend).

One picture answers the questions a reviewer asks of a tuned prompt: how much budget it took,
whether the curve had flattened (more budget would not help) or was still climbing, and how far
above the seed it ended. Rejected proposals are drawn too, so a run that "won" by one lucky
proposal among many rejections is visible as such.
"""

from __future__ import annotations

from pathlib import Path

from tunegate.tuning.history import History

__all__ = ["plot_history"]


def plot_history(history: History, path: str | Path, *, title: str = "") -> Path:
    """Write the plot of ``history`` to ``path`` and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    curve = history.curve()
    if curve:
        xs, ys = zip(*curve, strict=True)
        budget = (history.meta.get("config", {}).get("budget", {}) or {}).get("metric_calls")
        # the curve stops where the run stopped; the budget is a separate line, so a run that
        # ended early (schedule done, reflector idle) does not look as if it used everything
        x_end = max([*xs, history.meta.get("spent", {}).get("metric_calls", 0)])
        ax.step([*xs, x_end], [*ys, ys[-1]], where="post", color="#1f77b4", lw=2, label="best dev score so far")
        if budget:
            ax.axvline(budget, color="#9467bd", ls=":", lw=1.2, label=f"budget ({budget} calls)")
        seed = history.proposals[0].dev_mean if history.proposals else None
        if seed is not None:
            ax.axhline(seed, color="#7f7f7f", ls="--", lw=1, label=f"seed ({seed:.3f})")
    acc = [(p.calls_at, p.dev_mean) for p in history.proposals if p.status == "accepted" and p.dev_mean is not None]
    if acc:
        ax.scatter([x for x, _ in acc], [y for _, y in acc], s=22, color="#2ca02c", zorder=3,
                   label="accepted (full dev)")
    rej_all = [(p.calls_at, p.dev_mean if p.dev_mean is not None else _mb(p.minibatch))
               for p in history.proposals if p.status == "rejected"]
    rej = [(x, y) for x, y in rej_all if y is not None]
    if rej:
        ax.scatter([x for x, _ in rej], [y for _, y in rej], s=14, marker="x", color="#d62728", zorder=3,
                   label="rejected (minibatch or constraint)")
    if history.rejections:  # reflections rejected before any call was spent have no x position
        ax.plot([], [], " ", label=f"{len(history.rejections)} reflection replies rejected (no call spent)")
    ax.set_xlim(left=0)
    ax.set_xlabel("metric calls spent (uncached row evaluations)")
    ax.set_ylabel("objective (mean over rows)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"{history.meta.get('config', {}).get('method', 'optimizer')}: dev score vs calls")
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def _mb(minibatch: dict[str, object]) -> float | None:
    """Mean child score recorded for a minibatch-rejected proposal, when the optimizer stored one."""
    child = minibatch.get("child_scores")
    if isinstance(child, dict) and child:
        vals = [float(v) for v in child.values() if isinstance(v, int | float)]
        return sum(vals) / len(vals) if vals else None
    return None
