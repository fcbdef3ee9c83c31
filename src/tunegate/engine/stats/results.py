"""Result types of a paired comparison (what :func:`~tunegate.engine.stats.compare.compare_arrays` returns).

Plain dataclasses with ``to_dict()`` producing JSON-safe values: every float is finite or ``None``
(a NaN in a report or a JSON column is a bug waiting to happen), so stores and reports can write
them as they are.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["OVERALL", "Cell", "Comparison", "EvaluatorComparison", "SideIssues", "num"]

#: Cohort label of the whole set.
OVERALL = "*"


def num(x: Any) -> float | None:
    """A finite float, or None (NaN, inf and None all become None)."""
    if x is None:
        return None
    f = float(x)
    return f if math.isfinite(f) else None


@dataclass
class Cell:
    """Paired statistics of one evaluator on one cohort (``cohort == "*"``: every row).

    ``delta`` = mean(candidate - baseline) over pairs; ``ci_low``/``ci_high`` its (1 - alpha)
    percentile-bootstrap CI (never narrower than the zero-event bound); ``se`` the bootstrap standard
    error (includes clustering). ``cand_ci_*``/``cand_se``: the same for the candidate's mean.
    ``p_value`` is the two-sided McNemar (pass/fail) or Wilcoxon test of no difference;
    ``p_adjusted`` corrects it across every cell of the comparison. ``flipped_up``/``flipped_down``
    count pass/fail rows that flipped to pass / to fail (McNemar's discordant pairs).
    """

    evaluator: str
    cohort: str
    n_pairs: int
    n_clusters: int | None
    base_mean: float | None
    cand_mean: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    se: float | None
    sd_delta: float | None
    cand_ci_low: float | None
    cand_ci_high: float | None
    cand_se: float | None
    p_value: float | None
    p_adjusted: float | None
    test: str
    flipped_up: int | None = None
    flipped_down: int | None = None

    @property
    def df(self) -> int | None:
        """Degrees of freedom of the cell's t approximation: clusters (or pairs) minus one."""
        units = self.n_clusters if self.n_clusters is not None else self.n_pairs
        return units - 1 if units > 1 else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SideIssues:
    """Rows of one side without a usable score, by id."""

    errored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.errored) + len(self.skipped) + len(self.missing)


@dataclass
class EvaluatorComparison:
    """One evaluator: its cells, the rows it could not pair, and cross-cohort variance.

    ``one_sided`` lists rows scored on exactly one side (excluded from the paired statistics).
    ``*_cohort_variance`` is the variance of cohort means over ``variance_cohorts`` (cohorts with at
    least ``min_cohort_rows`` pairs, each weighted equally); ``variance_increase`` = candidate -
    baseline, with its bootstrap CI and standard error.
    """

    evaluator: str
    binary: bool
    test: str
    n_rows: int
    n_pairs: int
    base: SideIssues
    cand: SideIssues
    one_sided: list[str]
    cells: list[Cell]
    base_cohort_variance: float | None = None
    cand_cohort_variance: float | None = None
    variance_increase: float | None = None
    variance_ci_low: float | None = None
    variance_ci_high: float | None = None
    variance_se: float | None = None
    variance_cohorts: list[str] = field(default_factory=list)

    def cell(self, cohort: str = OVERALL) -> Cell | None:
        """The cell of ``cohort`` (``"*"`` = overall), or None."""
        return next((c for c in self.cells if c.cohort == cohort), None)

    def unpaired(self, *, count_skipped: bool = False) -> set[str]:
        """Ids of rows not scored on both sides; rows skipped on *both* sides only if asked.

        A row skipped on both sides lacks a field the evaluator needs: by design, not a failure.
        """
        both_skipped = set(self.base.skipped) & set(self.cand.skipped)
        ids = set(self.base.errored) | set(self.base.missing) | set(self.base.skipped)
        ids |= set(self.cand.errored) | set(self.cand.missing) | set(self.cand.skipped)
        return ids if count_skipped else ids - both_skipped

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Comparison:
    """Everything the gate and the reports need, computed once from two aligned runs."""

    row_ids: list[str]
    cohorts: list[str]
    cohort_sizes: dict[str, int]
    evaluators: list[EvaluatorComparison]
    alpha: float
    n_resamples: int
    seed: int
    correction: str
    min_cohort_rows: int
    n_clusters: int | None = None
    method: str = "paired Poisson bootstrap, percentile CI (floored at the zero-event bound)"

    def evaluator(self, name: str) -> EvaluatorComparison | None:
        return next((e for e in self.evaluators if e.evaluator == name), None)

    @property
    def n_rows(self) -> int:
        return len(self.row_ids)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
