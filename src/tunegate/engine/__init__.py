"""The engine: turns a plan into stored results, results into statistics, statistics into a verdict.

Three packages, one concern each (imports run downwards only):

* :mod:`tunegate.engine.run`   — plan a run, execute it (generate + evaluate, cached, resumable).
* :mod:`tunegate.engine.stats` — paired comparison: bootstrap CIs, exact tests, corrections.
* :mod:`tunegate.engine.gate`  — pair two stored runs, apply a policy, return a verdict.

The engine composes the layers below it (core, evaluators, backends, store, checks); tuning, the
gateway and the reports sit on top of it. See ``docs/architecture.md``.
"""

__all__: list[str] = []
