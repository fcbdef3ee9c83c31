"""Running rows: plan a run, then execute it (render → generate → evaluate → commit per row).

The one executor of the project: ``tunegate run``, the gate's missing runs and every prompt
optimizer score rows through :func:`score_rows` (:func:`execute` commits what it yields, chunk by
chunk), so caching, batching, error statuses and progress behave the same everywhere.
"""

from tunegate.engine.run.aggregate import RowScore, aggregate_row, summarise
from tunegate.engine.run.ensure import ensure_run
from tunegate.engine.run.executor import ProgressHook, RunSummary, execute, run_plan
from tunegate.engine.run.factory import make_backend
from tunegate.engine.run.plan import RunPlan, machine_info, plan_run
from tunegate.engine.run.rows import ChunkHook, ScoredRow, prompt_size, requests_for, score_rows
from tunegate.engine.run.suite import DEFAULT_CANDIDATES, resolve_suite

__all__ = ["DEFAULT_CANDIDATES", "ChunkHook", "ProgressHook", "RowScore", "RunPlan", "RunSummary", "ScoredRow",
           "aggregate_row", "ensure_run", "execute", "machine_info", "make_backend", "plan_run", "prompt_size", "requests_for",
           "resolve_suite", "run_plan", "score_rows", "summarise"]
