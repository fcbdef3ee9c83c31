"""Statistics of the gate: paired bootstrap CIs, exact tests, multiplicity corrections, sample sizes.

Pure numpy/scipy over arrays; nothing here knows about stores, runs or policies.
:func:`compare_arrays` is the entry point; :mod:`~tunegate.engine.stats.results` holds its types.
"""

from tunegate.engine.stats.compare import ComparisonInput, MetricInput, compare_arrays
from tunegate.engine.stats.results import OVERALL, Cell, Comparison, EvaluatorComparison, SideIssues

__all__ = ["OVERALL", "Cell", "Comparison", "ComparisonInput", "EvaluatorComparison", "MetricInput",
           "SideIssues", "compare_arrays"]
