"""Online scoring in batches, in worker processes: the gateway's event loop only appends to a deque.

Why this shape (measured with ``bench/mirror_overhead.py``; docs/decisions/0013-batched-online-scoring.md):
one ``ProcessPoolExecutor`` call per mirrored pair at 200 RPS cost the gateway process more than a
core — the executor's manager thread and queue feeder pickled one work item per pair under the
gateway's GIL, the pool's wake-up pipe was written from the event loop, and each pair was stored in
its own transaction through the gateway's store thread. Mirrored primaries went from p99 ~40 ms to
0.7–32 s. Now:

* the event loop calls :meth:`OnlineScorer.submit` — a ``deque.append`` (plus an ``Event.set`` once
  a batch is full); the caller bounds the backlog (per route, ``max_pending_scores``) and counts drops;
* one feeder thread per worker process takes up to ``batch`` jobs, or what arrived within
  ``interval_s``, sends them over a pipe as one message and waits for the answer off the loop;
* the worker process builds the dataset rows (:func:`~tunegate.gateway.online.example_row`), scores
  both sides with the route's suite and stores a batch's mirrored pairs itself, in one transaction on
  its own store connection: neither scoring nor the JSON encoding of pair rows run under the
  gateway's GIL;
* the verdicts come back to the loop in one ``call_soon_threadsafe`` per batch.

Workers run ``nice``\\ d (``niceness``, default 5): scoring is background work, so on a small box the
kernel gives the gateway the CPU first; when scoring then falls behind, the bounded backlog drops and
counts instead of slowing requests. :meth:`OnlineScorer.close` terminates the workers and abandons
the backlog (scoring is evidence, not a log), so a gateway with a backlog exits at once on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.gateway.online import REFERENCE_ERROR, example_row, failed, output_of

__all__ = ["Done", "OnlineScorer", "SideScore", "score_batch"]

_log = logging.getLogger(__name__)

#: Called with a job's result dict (on the submitter's loop, or on the feeder thread when loop is None).
Done = Callable[[dict[str, Any]], None]
_Item = tuple[dict[str, Any], Done, "asyncio.AbstractEventLoop | None"]

#: The evaluator suite of this worker process (built once at its start).
_SUITE: list[Any] = []
#: JSON Schemas (canonical JSON) this worker has checked against their metaschema.
_VALID_SCHEMAS: set[str] = set()


@dataclass(frozen=True)
class SideScore:
    scores: dict[str, dict[str, Any]]

    @property
    def failed(self) -> bool | None:
        return failed(self.scores)


def _example(example: dict[str, Any]) -> Any:
    """The row as an ``Example``; a JSON Schema already checked against its metaschema in this worker
    is not checked again. That check was ~80% of the scoring CPU per pair (1.1 of 1.4 ms with
    ``json_validation``), and every request of a route carries the same schema."""
    from tunegate.core.example import Example

    schema = example.get("schema")
    if not isinstance(schema, dict):
        return Example.model_validate(example)
    key = json.dumps(schema, sort_keys=True, default=str)
    if key not in _VALID_SCHEMAS:
        ex = Example.model_validate(example)   # raises on an invalid schema: the job fails alone
        if len(_VALID_SCHEMAS) < 1024:
            _VALID_SCHEMAS.add(key)
        return ex
    rest = {k: v for k, v in example.items() if k != "schema"}
    return Example.model_validate(rest).model_copy(update={"json_schema": schema})


def _score(example: dict[str, Any], outputs: list[dict[str, Any] | None]) -> list[dict[str, dict[str, Any]]]:
    """Score each output of one row with the worker's suite; None (no output) scores nothing."""
    from tunegate.core.result import ModelOutput
    from tunegate.evaluators.base import EvalContext

    ex = _example(example)
    refused = ex.metadata.get(REFERENCE_ERROR)
    out: list[dict[str, dict[str, Any]]] = []
    for o in outputs:
        if o is None:
            out.append({})
            continue
        if refused is not None:   # no judgement against a reference the client got wrong
            out.append({ev.name: ev.skipped(f"malformed metadata.reference: {refused}").model_dump(mode="json")
                        for ev in _SUITE})
            continue
        ctx = EvalContext(example=ex, output=ModelOutput.model_validate(o))
        out.append({ev.name: ev.evaluate(ctx).model_dump(mode="json") for ev in _SUITE})
    return out


def _shadow_output(completion: dict[str, Any] | None) -> dict[str, Any] | None:
    if completion is None:
        return None
    choice = (completion.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    return output_of(msg.get("content"), msg.get("tool_calls") or [], choice.get("finish_reason"),
                     completion.get("model"))


def _one(job: dict[str, Any], identities: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(result, pair row to store or None) for one job."""
    kind = job["kind"]
    if kind == "score":
        return {"scores": _score(job["example"], job["outputs"])}, None
    ex = example_row(job["request_id"], job["request"], job["cohort"], job["schema"], references=job["references"])
    base_out = output_of(job["text"], job["tool_calls"], job["finish_reason"])
    want = bool(job.get("want_scores"))
    if kind == "live":
        (s,) = _score(ex, [base_out])
        return {"failed": failed(s), "scores": s if want else None}, None
    cand_out = _shadow_output(job["completion"])
    b, c = _score(ex, [base_out, cand_out])
    pair = {k: job[k] for k in ("request_id", "route", "cohort", "base_arm", "candidate_arm", "base_hash",
                                "candidate_hash", "base_prompt", "candidate_prompt", "candidate_error")}
    pair |= {"evaluators": identities, "base_scores": b, "candidate_scores": c, "base_failed": failed(b),
             "candidate_failed": failed(c), "example": ex, "base_output": base_out.get("text"),
             "candidate_output": (cand_out or {}).get("text")}
    return {"base_failed": pair["base_failed"], "candidate_failed": pair["candidate_failed"],
            "base_scores": b if want else None, "candidate_scores": c if want else None}, pair


def score_batch(jobs: list[dict[str, Any]], identities: list[dict[str, Any]],
                store: Any | None) -> list[dict[str, Any]]:
    """Score a batch (in a worker process); its mirrored pairs are stored in one transaction.

    A job that fails gets ``{"error": ...}``; a failed store write marks its pairs ``store_error``
    (the verdicts still count: the monitor does not need the stored row)."""
    out: list[dict[str, Any]] = []
    pairs: list[tuple[int, dict[str, Any]]] = []
    for job in jobs:
        try:
            res, pair = _one(job, identities)
        except Exception as e:   # one bad job never fails its batch
            res, pair = {"error": f"{type(e).__name__}: {e}"[:500]}, None
        if pair is not None:
            pairs.append((len(out), pair))
        out.append(res)
    if pairs and store is not None:
        from tunegate.store import online as q

        try:
            q.insert_pairs(store, [p for _, p in pairs])
        except Exception as e:
            for i, _ in pairs:
                out[i]["store_error"] = f"{type(e).__name__}: {e}"[:300]
    return out


def _worker_main(conn: Any, spec: str | list[str], db: str | None, use_store: bool, niceness: int) -> None:
    """A scoring process: build the suite once, then answer batches until the pipe closes."""
    if niceness:
        with contextlib.suppress(OSError):
            os.nice(niceness)
    from tunegate.evaluators.registry import load_suite

    _SUITE[:] = load_suite(spec)
    identities = [ev.identity() for ev in _SUITE]
    store = None
    if use_store:
        from tunegate.store.sqlite import Store

        store = Store(db)
    try:
        while True:
            try:
                jobs = conn.recv()
            except (EOFError, OSError):
                return
            if jobs is None:
                return
            conn.send(score_batch(jobs, identities, store))
    finally:
        if store is not None:
            store.close()


def _identities(spec: str | list[str]) -> list[dict[str, Any]]:
    from tunegate.evaluators.registry import load_suite

    return [ev.identity() for ev in load_suite(spec)]


class _Feeder:
    """One worker process and the thread (in the gateway) that feeds it batches."""

    def __init__(self, owner: OnlineScorer, i: int) -> None:
        self.owner, self.i = owner, i
        self.proc: Any = None
        self.conn: Any = None
        self.thread = threading.Thread(target=self._run, name=f"tunegate-scoring-{i}", daemon=True)

    def _spawn(self) -> None:
        o = self.owner
        ctx = multiprocessing.get_context("spawn")   # never fork a process that runs threads
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, o.spec, o.db, o.use_store, o.niceness),
                                name=f"tunegate-scorer-{self.i}", daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent

    def _call(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            if self.proc is None or not self.proc.is_alive():
                if self.owner.closed:   # never start a worker after close()
                    return [{"error": "online scorer closed"}] * len(jobs)
                self._spawn()
            self.conn.send(jobs)
            res: list[dict[str, Any]] = self.conn.recv()
            return res
        except (EOFError, OSError, BrokenPipeError) as e:
            if not self.owner.closed:
                _log.warning("online scoring worker %d died (%s); restarting it", self.i, type(e).__name__)
            self.proc = None
            return [{"error": f"scoring worker died ({type(e).__name__})"}] * len(jobs)

    def _run(self) -> None:
        o = self.owner
        while not o.closed:
            if len(o._items) < o.batch:
                o._wake.wait(o.interval_s)
            o._wake.clear()
            take: list[_Item] = []
            with contextlib.suppress(IndexError):
                while len(take) < o.batch:
                    take.append(o._items.popleft())
            if not take or o.closed:
                continue
            results = self._call([job for job, _, _ in take])
            if o.closed:
                return
            o.batches += 1
            o.scored += len(take)
            _deliver(take, results)

    def stop(self) -> None:
        p = self.proc
        if p is not None and p.is_alive():
            p.terminate()
            p.join(2)
            if p.is_alive():
                p.kill()
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.close()


def _deliver(items: list[_Item], results: list[dict[str, Any]]) -> None:
    """Hand results back: one ``call_soon_threadsafe`` per loop per batch."""
    by_loop: dict[asyncio.AbstractEventLoop | None, list[tuple[Done, dict[str, Any]]]] = {}
    for (_, done, loop), res in zip(items, results, strict=True):
        by_loop.setdefault(loop, []).append((done, res))
    for loop, calls in by_loop.items():
        if loop is None:
            _run_all(calls)
        else:
            with contextlib.suppress(RuntimeError):   # the loop is closed: the gateway is gone
                loop.call_soon_threadsafe(_run_all, calls)


def _run_all(calls: list[tuple[Done, dict[str, Any]]]) -> None:
    for done, res in calls:
        try:
            done(res)
        except Exception:
            _log.exception("online scoring: result handler failed")


class OnlineScorer:
    """Worker processes holding the route's evaluator suite (``spec``: names, "a,b" or a suite YAML).

    ``db``/``use_store``: where the workers store mirrored pairs (the gateway's store); without a
    store the pairs are scored and not stored. See the module docstring for the batching."""

    def __init__(self, spec: str | list[str], *, workers: int = 1, db: str | Path | None = None,
                 use_store: bool = False, batch: int = 64, interval_s: float = 0.1, niceness: int = 5) -> None:
        self.spec = spec
        self.identities = _identities(spec)          # fails fast (UserError) on an unknown evaluator
        self.db = None if db is None else str(db)
        self.use_store, self.batch, self.interval_s, self.niceness = use_store, batch, interval_s, niceness
        self._items: deque[_Item] = deque()
        self._wake = threading.Event()
        self._feeders = [_Feeder(self, i) for i in range(workers)]
        self._started = False
        self.closed = False
        self.scored = 0     #: jobs answered
        self.batches = 0    #: batches sent

    @property
    def backlog(self) -> int:
        """Jobs waiting for a batch (not counting the batches being scored)."""
        return len(self._items)

    def _start(self) -> None:
        if not self._started:
            self._started = True
            for f in self._feeders:
                f.thread.start()

    def submit(self, job: dict[str, Any], done: Done, loop: asyncio.AbstractEventLoop | None = None) -> bool:
        """Queue one job (never blocks); ``done(result)`` runs on ``loop`` later. False once closed."""
        if self.closed:
            return False
        self._start()
        self._items.append((job, done, loop))
        if len(self._items) >= self.batch:
            self._wake.set()
        return True

    async def score(self, example: dict[str, Any], outputs: Sequence[dict[str, Any] | None]) -> list[SideScore]:
        """Score one row's outputs (batched with whatever else is queued); raises if the worker failed."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()

        def done(res: dict[str, Any]) -> None:
            if not fut.done():
                fut.set_result(res)

        if not self.submit({"kind": "score", "example": example, "outputs": list(outputs)}, done, loop):
            raise RuntimeError("online scorer is closed")
        res = await fut
        if "error" in res:
            raise RuntimeError(res["error"])
        return [SideScore(s) for s in res["scores"]]

    def warm(self, timeout_s: float = 120.0) -> None:
        """Start every worker now (spawning and importing takes seconds) rather than on the first jobs."""
        for f in self._feeders:   # each feeder spawns its own process on its first batch
            if f.proc is None:
                f._spawn()
        ev = threading.Event()
        answers: list[dict[str, Any]] = []

        def done(res: dict[str, Any]) -> None:
            answers.append(res)
            if len(answers) == len(self._feeders):
                ev.set()

        for _ in self._feeders:
            self.submit({"kind": "score", "example": {"id": "warm", "input": "x"}, "outputs": [None]}, done)
        self._wake.set()
        if not ev.wait(timeout_s):
            raise TimeoutError(f"online scoring workers not ready after {timeout_s:g}s")
        if "error" in answers[0]:
            raise RuntimeError(answers[0]["error"])

    def close(self) -> None:
        """Stop now: terminate the workers, abandon the backlog (counted in the log line)."""
        if self.closed:
            return
        self.closed = True
        self._wake.set()
        left = len(self._items)
        self._items.clear()
        for f in self._feeders:
            f.stop()
        if left:
            _log.warning("online scoring: %d queued jobs abandoned at shutdown", left)
