"""Anytime-valid online statistics: confidence sequences the release controller may read continuously.

* :mod:`.bounded`  — empirical-Bernstein CS for a mean in [0, 1] (Waudby-Smith & Ramdas 2023).
* :mod:`.quantile` — beta-binomial mixture CS for a quantile, e.g. p99 latency (Howard & Ramdas 2022).
* :mod:`.compare`  — candidate vs base: paired (mirrored), unpaired (canary), quantile ratio.
* :mod:`.monitor`  — a route's streams per signal, source and cohort, α split by the release policy.
* :mod:`.controller` — the pure ``ReleaseController.decide(state, snapshot)``.

Design and citations: ``docs/decisions/0006-anytime-valid-rollback.md``.
"""

from tunegate.engine.online.bounded import EmpiricalBernsteinCS, Interval
from tunegate.engine.online.compare import PairedDifference, QuantileRatio, TwoSampleDifference
from tunegate.engine.online.controller import Decision, Evidence, ReleaseController, ReleaseState
from tunegate.engine.online.monitor import ALL, OnlineMonitor, OnlineSnapshot
from tunegate.engine.online.quantile import QuantileCS

__all__ = ["ALL", "Decision", "EmpiricalBernsteinCS", "Evidence", "Interval", "OnlineMonitor", "OnlineSnapshot",
           "PairedDifference", "QuantileCS", "QuantileRatio", "ReleaseController", "ReleaseState",
           "TwoSampleDifference"]
