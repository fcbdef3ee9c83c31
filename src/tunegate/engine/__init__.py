"""The engine: turns a plan into stored results, results into statistics, statistics into a verdict.

Small packages, one concern each (imports run downwards only; ``gate`` composes ``run`` and
``stats``, which do not know each other — an import-linter contract):

* :mod:`tunegate.engine.run`    — plan a run; the one row executor (generate + evaluate, cached,
  batched, resumable) used by stored runs and by every prompt optimizer.
* :mod:`tunegate.engine.stats`  — paired comparison: bootstrap CIs, exact tests, corrections.
* :mod:`tunegate.engine.gate`   — pair two stored runs, apply a policy, return a verdict.
* :mod:`tunegate.engine.online` — anytime-valid statistics the release controller reads live.

The engine composes the layers below it (core, evaluators, backends, store, checks); tuning, the
gateway and the reports sit on top of it. See ``docs/architecture.md``.
"""

__all__: list[str] = []
