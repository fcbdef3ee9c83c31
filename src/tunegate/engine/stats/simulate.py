"""Synthetic paired runs for calibrating the gate (A/A checks, power at a known effect).

Why a model of items and not i.i.d. scores: two runs on the same golden set are correlated through
the items (an easy row passes on both sides), and that correlation is what makes a paired test
powerful. Each row gets a latent quality; each side's score is drawn around it, so an A/A pair
differs only by sampling noise (temperature > 0), exactly the noise the gate must not mistake for a
regression.

* pass/fail metric: row pass probability ``p_i ~ Beta(mean * k, (1 - mean) * k)`` (small ``k`` =
  items are mostly always-pass or always-fail; ``k = 0.5`` at mean 0.8 makes ~11% of rows flip
  between two runs of the same model). The candidate's probability is ``p_i`` scaled so that its
  mean moves by exactly ``shift``.
* continuous metric: row quality ``q_i ~ Beta(mean * k, (1 - mean) * k)``, each sample
  ``clip(q_i + shift + N(0, noise))`` into [0, 1].
* ``samples`` > 1 draws several samples per row (stochastic decoding); the arrays are (n, samples).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tunegate.engine.stats.compare import ComparisonInput, MetricInput

__all__ = ["MetricSpec", "simulate_pair"]


@dataclass(frozen=True)
class MetricSpec:
    """One simulated evaluator; ``shift`` is the candidate's true mean minus the baseline's."""

    name: str
    binary: bool
    mean: float = 0.8
    concentration: float = 0.5
    noise: float = 0.1
    shift: float = 0.0
    cohort_shift: dict[str, float] = field(default_factory=dict)
    error_rate: float = 0.0


def _cand_prob(p: np.ndarray, shift: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Scale pass probabilities so each row's expected mean moves by ``shift`` (stays in [0, 1])."""
    down = p * (1 + shift / mean)
    up = 1 - (1 - p) * (1 - shift / (1 - mean))
    return np.where(shift < 0, down, np.where(shift > 0, up, p))


def simulate_pair(
    n_rows: int,
    metrics: list[MetricSpec],
    *,
    cohorts: int = 5,
    samples: int = 1,
    cohort_spread: float = 0.3,
    seed: int | np.random.Generator = 0,
) -> ComparisonInput:
    """A baseline and a candidate run over ``n_rows`` rows in ``cohorts`` cohorts of unequal size.

    Cohorts differ in difficulty (their mean quality is spread by ``cohort_spread`` on the logit
    scale: +-0.05 around 0.8, +-0.003 around 0.99) but, unless a ``cohort_shift`` says otherwise, the
    candidate changes every cohort the same way.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    names = [f"cohort{j}" for j in range(cohorts)]
    sizes = rng.dirichlet(np.full(cohorts, 4.0)) if cohorts else np.zeros(0)
    coh = rng.choice(cohorts, size=n_rows, p=sizes) if cohorts else np.zeros(n_rows, dtype=int)
    offset = rng.normal(0.0, cohort_spread, cohorts)[coh] if cohorts else np.zeros(n_rows)  # logit scale
    out: list[MetricInput] = []
    for m in metrics:
        mean = 1.0 / (1.0 + np.exp(-(np.log(m.mean / (1 - m.mean)) + offset)))
        latent = rng.beta(mean * m.concentration, (1 - mean) * m.concentration)
        shift = np.full(n_rows, m.shift)
        for j, name in enumerate(names):
            if name in m.cohort_shift:
                shift[coh == j] = m.cohort_shift[name]
        sides = []
        for is_cand in (False, True):
            if m.binary:
                p = np.clip(_cand_prob(latent, shift, mean), 0, 1) if is_cand else latent
                s = (rng.random((n_rows, samples)) < p[:, None]).astype(np.float64)
            else:
                q = latent + (shift if is_cand else 0.0)
                s = np.clip(q[:, None] + rng.normal(0.0, m.noise, (n_rows, samples)), 0.0, 1.0)
            status = np.where(rng.random(n_rows) < m.error_rate, "error", "ok")
            s[status == "error"] = np.nan
            sides.append((s if samples > 1 else s[:, 0], status))
        (b, bs), (c, cs) = sides
        out.append(MetricInput(m.name, m.binary, b, c, base_status=bs, cand_status=cs))
    return ComparisonInput(
        row_ids=[f"row{i}" for i in range(n_rows)],
        cohorts=[[names[j]] for j in coh] if cohorts else None,
        clusters=None,
        metrics=out,
    )
