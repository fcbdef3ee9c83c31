"""The DSPy side of the prompt-optimizer benchmark: ``dspy.GEPA`` and ``dspy.MIPROv2`` driving the
*same* task model, with the same decoding, the same rendered messages and the same metric as our
optimizers. Imported only by ``bench/prompt_opt.py`` (DSPy is a bench-only dependency).

How parity is kept, piece by piece:

* **Model.** :class:`TunegateLM` is a ``dspy.BaseLM`` subclass whose ``forward`` turns DSPy's
  OpenAI-style messages into a tunegate ``GenerationRequest`` and returns an OpenAI-shaped
  response. Requests go to the tunegate backend the other arms use (SmolLM2 via ``LocalBackend``,
  or the configured endpoint) on a private event-loop thread; concurrent DSPy worker threads are
  micro-batched (:class:`ModelClient`), as our harness batches rows, so wall time compares
  optimizers rather than batching. DSPy 3.4 calls this subclass interface deprecated (removed in
  3.5) but supported; it never consults DSPy's response cache for a custom ``BaseLM``.
* **Prompt.** :class:`PlainAdapter` renders the task predictor exactly like tunegate renders a
  ``PromptTemplate``: system = the signature's instructions, demos as user/assistant turns, user =
  the row rendered through the seed's user template; the whole completion is the answer. Without
  it DSPy's ChatAdapter would ask the 135M model for ``[[ ## answer ## ]]`` markers it never
  writes, and every DSPy arm would score ~0 for a formatting reason. Other signatures (MIPROv2's
  proposer modules) keep DSPy's ChatAdapter, as shipped.
* **Metric.** :class:`BenchMetric` scores a prediction with the task's evaluator suite and
  objective (tunegate objects) and gives GEPA the same evaluator feedback lines our optimizers read.
* **Cache.** Every arm+seed gets a fresh tunegate cache (a new SQLite file), as our arms do; the
  counters below separate uncached task generations (the unit our budgets are in) from cache hits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import math
import re
import threading
import time
import warnings
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import dspy
from dspy.utils.exceptions import AdapterParseError

from tunegate.backends.base import Backend
from tunegate.backends.cache import CachedBackend
from tunegate.core.candidate import DecodingParams
from tunegate.core.example import Example, Message
from tunegate.core.prompt import FewShot, PromptTemplate
from tunegate.core.request import GenerationRequest
from tunegate.core.result import ModelOutput
from tunegate.errors import BackendError
from tunegate.evaluators.base import EvalContext
from tunegate.store.sqlite import Store
from tunegate.tuning.harness import RowTrace

__all__ = ["IN", "OUT", "ArmResult", "BenchMetric", "ModelClient", "PaperPromptProposer", "PlainAdapter", "TunegateLM",
           "mipro_plan", "program_prompt", "run_dspy_gepa", "run_dspy_mipro", "score_native", "to_dspy"]

IN, OUT = "tg_request", "tg_answer"  #: field names of the task signature (unique, so the adapter spots it)
T = TypeVar("T")
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"dspy(\..*)?")


class ModelClient:
    """Synchronous, thread-safe access to an async tunegate backend, through a fresh cache.

    DSPy calls LMs synchronously from its worker threads; tunegate backends are async. A private
    loop on a daemon thread owns the cache store (SQLite connections are per thread) and collects
    requests that arrive within ``window_s`` into one backend batch.
    """

    def __init__(self, backend: Backend, cache_path: str | Path, *, window_s: float = 0.05) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tunegate-dspy", daemon=True)
        self.thread.start()
        self.window_s = window_s
        self._pending: list[tuple[GenerationRequest, concurrent.futures.Future[Any]]] = []
        self._draining = False
        self.store: Store | None = None
        self.cached: CachedBackend = self._run(self._open(backend, Path(cache_path)))

    async def _open(self, backend: Backend, path: Path) -> CachedBackend:
        self.store = Store(path)
        return CachedBackend(backend, self.store)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def generate(self, request: GenerationRequest) -> ModelOutput | BackendError:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.loop.call_soon_threadsafe(self._enqueue, request, fut)
        return fut.result()

    def _enqueue(self, request: GenerationRequest, fut: concurrent.futures.Future[Any]) -> None:
        self._pending.append((request, fut))
        if not self._draining:
            self._draining = True
            self.loop.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._pending:
                await asyncio.sleep(self.window_s)  # let sibling threads submit their rows
                n = max(1, self.cached.max_batch)
                batch, self._pending = self._pending[:n], self._pending[n:]
                try:
                    results = await self.cached.generate([r for r, _ in batch])
                except Exception as e:  # a backend bug: fail the callers, never hang them
                    for _, f in batch:
                        f.set_exception(e)
                    continue
                for (_, f), res in zip(batch, results, strict=True):
                    f.set_result(res)
        finally:
            self._draining = False

    def close(self) -> None:
        def _close() -> None:
            if self.store is not None:
                self.store.close()
        self.loop.call_soon_threadsafe(_close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)


def _content(c: Any) -> str:
    if isinstance(c, list):  # content parts
        return "".join(p.get("text", "") for p in c if isinstance(p, dict))
    return "" if c is None else str(c)


class TunegateLM(dspy.BaseLM):
    """A DSPy LM backed by a tunegate backend with fixed decoding ``params``.

    The task LM always decodes with the task's params (the same as our arms). A reflection /
    proposer LM (``follow_temperature``) honours a temperature DSPy asks for, and repeated identical
    sampled asks draw new samples (growing sample index), like tunegate's ``Reflector``.
    """

    def __init__(self, client: ModelClient, params: DecodingParams, role: str, *,
                 follow_temperature: bool = False) -> None:
        super().__init__(model=f"tunegate/{role}", model_type="chat", temperature=params.temperature,
                         max_tokens=params.max_tokens, cache=False, num_retries=0)
        self.client, self.params, self.role, self.follow_temperature = client, params, role, follow_temperature
        self.stats: Counter[str] = Counter()
        self._draws: Counter[str] = Counter()
        self._lock = threading.Lock()

    def forward(self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None,
                **kwargs: Any) -> dict[str, Any]:
        raw = messages or [{"role": "user", "content": prompt or ""}]
        msgs = tuple(Message(role=m["role"], content=_content(m.get("content"))) for m in raw)
        params = self.params
        temp = kwargs.get("temperature")
        if self.follow_temperature and temp is not None and float(temp) != params.temperature:
            params = params.model_copy(update={"temperature": float(temp)})
        idx = 0
        if params.temperature > 0:
            key = hashlib.sha256(repr((msgs, params.temperature)).encode()).hexdigest()
            with self._lock:
                idx = self._draws[key]
                self._draws[key] += 1
        res = self.client.generate(GenerationRequest(msgs, params, None, idx))
        with self._lock:
            if isinstance(res, BackendError):
                self.stats["errors"] += 1
            else:
                self.stats["cached" if res.cached else "uncached"] += 1
        if isinstance(res, BackendError):
            raise res
        u = res.usage
        return {"id": "tunegate", "object": "chat.completion", "model": self.model,
                "choices": [{"index": 0, "finish_reason": res.finish_reason or "stop",
                             "message": {"role": "assistant", "content": res.text}}],
                "usage": {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                          "total_tokens": u.prompt_tokens + u.completion_tokens}}


def _is_task(signature: Any) -> bool:
    return set(signature.input_fields) == {IN} and set(signature.output_fields) == {OUT}


class PlainAdapter(dspy.ChatAdapter):
    """Renders the task predictor as tunegate renders a PromptTemplate; other signatures as ChatAdapter.

    With ``lenient`` a reply to a one-output-field signature (MIPROv2's proposer modules) that lacks
    DSPy's ``[[ ## field ## ]]`` markers is taken whole as that field, instead of failing: as
    shipped, MIPROv2 stops with ``AdapterParseError`` in its instruction proposer when the proposer
    is a 135M model. The count of such replies is kept in ``lenient_parses``.
    """

    def __init__(self, *, lenient: bool = False) -> None:
        super().__init__()
        self.lenient = lenient
        self.lenient_parses = 0

    def __call__(self, lm: Any, lm_kwargs: dict[str, Any], signature: Any, demos: list[dict[str, Any]],
                 inputs: dict[str, Any]) -> list[dict[str, Any]]:
        if _is_task(signature):  # no JSON-adapter retry with another prompt: our harness has none
            return dspy.Adapter.__call__(self, lm, lm_kwargs, signature, demos, inputs)
        return super().__call__(lm, lm_kwargs, signature, demos, inputs)

    def format(self, signature: Any, demos: list[dict[str, Any]], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        if not _is_task(signature):
            return super().format(signature, demos, inputs)
        msgs: list[dict[str, Any]] = []
        if (signature.instructions or "").strip():
            msgs.append({"role": "system", "content": signature.instructions.strip()})
        for d in demos:
            if d.get(IN) and d.get(OUT):
                msgs += [{"role": "user", "content": d[IN]}, {"role": "assistant", "content": d[OUT]}]
        msgs.append({"role": "user", "content": inputs[IN]})
        return msgs

    def parse(self, signature: Any, completion: str) -> dict[str, Any]:
        if _is_task(signature):
            return {OUT: completion}
        try:
            return super().parse(signature, completion)
        except AdapterParseError:
            if not self.lenient or len(signature.output_fields) != 1:
                raise
            self.lenient_parses += 1
            [name] = signature.output_fields
            text = re.sub(r"\[\[ ## \w+ ## \]\]", "", completion).strip()
            return {name: text or completion}

    def _call_postprocess(self, processed_signature: Any, original_signature: Any, outputs: list[Any], lm: Any,
                          lm_kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        if not _is_task(original_signature):
            return super()._call_postprocess(processed_signature, original_signature, outputs, lm, lm_kwargs)
        return [{OUT: (o.get("text") if isinstance(o, dict) else o) or ""} for o in outputs]


def to_dspy(rows: Sequence[Example], user_template: PromptTemplate) -> list[dspy.Example]:
    """Rows as DSPy examples: the input is the rendered user turn, the label the expected text."""
    out = []
    for ex in rows:
        user = user_template.render(ex)[-1].content or ""
        label = ex.expected if isinstance(ex.expected, str) else ""
        out.append(dspy.Example(**{IN: user, OUT: label}, row_id=ex.id).with_inputs(IN))
    return out


def program_prompt(program: Any, seed: PromptTemplate) -> PromptTemplate:
    """The compiled DSPy program as a tunegate prompt (instruction + demos): scored on test like ours."""
    [pred] = program.predictors()
    shots = [FewShot(input=d[IN], output=d[OUT]) for d in pred.demos if d.get(IN) and d.get(OUT)]
    return seed.model_copy(update={"system": pred.signature.instructions.strip(), "few_shot": shots, "ref": None})


class BenchMetric:
    """The task's objective as a DSPy metric; returns feedback when GEPA asks for it (``pred_name``)."""

    def __init__(self, rows: Sequence[Example], evaluators: Sequence[Any], objective: Any) -> None:
        self.rows = {ex.id: ex for ex in rows}
        self.evaluators, self.objective = list(evaluators), objective
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, gold: Any, pred: Any, trace: Any = None, pred_name: str | None = None,
                 pred_trace: Any = None) -> Any:
        ex = self.rows[gold.row_id]
        out = ModelOutput(text=str(getattr(pred, OUT, "") or ""))
        results = {e.name: [e.evaluate(EvalContext(example=ex, output=out))] for e in self.evaluators}
        row = self.objective.row({n: rs[0] for n, rs in results.items()})
        value = float(row.value) if row.value is not None else 0.0
        with self._lock:
            self.calls["feedback" if pred_name else "score"] += 1
        if pred_name is None:
            return value
        fb = RowTrace(ex.id, row.value, row.error, results, [out], [], False, row.reason).feedback
        return dspy.Prediction(score=value, feedback=fb or f"This answer scored {value:.2f}.")


@dataclass
class ArmResult:
    """What one DSPy arm produced and spent."""

    prompt: PromptTemplate
    metric_calls: int                 #: as the framework counts them (GEPA state / metric invocations)
    task_uncached: int
    task_cached: int
    reflection_calls: int
    wall_s: float
    dev_best: float | None = None      #: the framework's own dev (valset) score of the returned program
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _program(seed: PromptTemplate) -> Any:
    sig = dspy.Signature(f"{IN} -> {OUT}", instructions=seed.system or "")
    return dspy.Predict(sig)


class PaperPromptProposer:
    """dspy.GEPA's ``instruction_proposer`` hook filled with the gepa library's own default reflection
    (``gepa.strategies.instruction_proposal.InstructionProposalSignature``: the GEPA paper's meta
    prompt, answer taken from the ``` block). DSPy 3.4's default proposer instead asks the
    reflection LM for JSON through ``JSONAdapter``, which a 135M model rarely writes."""

    def __init__(self, lm: TunegateLM) -> None:
        self.lm = lm

    def __call__(self, candidate: dict[str, str], reflective_dataset: Any, components_to_update: list[str]
                 ) -> dict[str, str]:
        from gepa.strategies.instruction_proposal import InstructionProposalSignature

        out = {}
        for name in components_to_update:
            if name in candidate and name in reflective_dataset:
                res = InstructionProposalSignature.run(lm=lambda p: str(self.lm(p)[0]), input_dict={
                    "current_instruction_doc": candidate[name], "dataset_with_feedback": reflective_dataset[name],
                    "prompt_template": None})
                out[name] = res["new_instruction"]
        return out


def run_dspy_gepa(*, train: Sequence[Example], dev: Sequence[Example], seed: PromptTemplate, evaluators: Sequence[Any],
                  objective: Any, task_lm: TunegateLM, reflection_lm: TunegateLM, budget: int, random_seed: int,
                  num_threads: int = 8, paper_prompt: bool = False) -> ArmResult:
    """``dspy.GEPA`` with ``max_metric_calls=budget`` and DSPy's defaults otherwise (GEPA's own
    evaluation cache on, so re-scoring a candidate on a row is free, as in our harness);
    ``paper_prompt`` swaps in :class:`PaperPromptProposer`."""
    metric = BenchMetric([*train, *dev], evaluators, objective)
    settings: dict[str, Any] = {"max_metric_calls": budget, "reflection_minibatch_size": 3,
                                "candidate_selection_strategy": "pareto", "use_merge": True,
                                "num_threads": num_threads, "seed": random_seed,
                                "gepa_kwargs": {"cache_evaluation": True}}
    extra = {"instruction_proposer": PaperPromptProposer(reflection_lm)} if paper_prompt else {}
    opt = dspy.GEPA(metric=metric, reflection_lm=reflection_lm, track_stats=True, **settings, **extra)
    settings["instruction_proposer"] = "gepa InstructionProposalSignature (paper prompt)" if paper_prompt else \
        "dspy default (InstructionProposer + JSONAdapter)"
    t0 = time.perf_counter()
    with dspy.context(lm=task_lm, adapter=PlainAdapter()):
        prog = opt.compile(_program(seed), trainset=to_dspy(train, seed), valset=to_dspy(dev, seed))
    wall = time.perf_counter() - t0
    res = prog.detailed_results
    calls = int(getattr(res, "total_metric_calls", 0) or 0)
    dev_best = float(res.val_aggregate_scores[res.best_idx])
    return ArmResult(program_prompt(prog, seed), calls, task_lm.stats["uncached"], task_lm.stats["cached"],
                     reflection_lm.stats["uncached"] + reflection_lm.stats["cached"], wall, dev_best, settings)


def mipro_plan(budget: int, n_train: int, n_dev: int, *, full_eval_steps: int = 5,
               boot_calls: int | None = None) -> dict[str, int]:
    """MIPROv2 settings whose expected metric calls fit ``budget`` (it has no metric-call budget).

    Expected calls = bootstrapping (about ``boot_calls``: 4 demo sets that each run train rows until
    enough pass) + the default program on dev + ``num_trials`` minibatches + the periodic full dev
    evaluations MIPROv2 makes (every ``full_eval_steps + 1`` trials and one at the end). The
    benchmark reports the count actually spent next to it.
    """
    minibatch = min(35, max(4, n_dev // 3))
    boot = boot_calls if boot_calls is not None else min(4 * n_train, 40)

    def full_evals(trials: int) -> int:  # study trial numbers also advance for each full evaluation
        adjusted = trials + trials // full_eval_steps + 1 + (1 if trials % full_eval_steps else 0)
        nxt, fulls = 1, 0
        for _ in range(trials):
            num, nxt = nxt, nxt + 1
            if (num + 1) % (full_eval_steps + 1) == 0 or num + 1 == adjusted - 1:
                fulls, nxt = fulls + 1, nxt + 1
        return fulls

    plan = {}
    for trials in range(1, 200):
        expected = boot + n_dev + trials * minibatch + full_evals(trials) * n_dev
        if plan and expected > budget:
            break
        plan = {"num_trials": trials, "minibatch_size": minibatch, "full_eval_steps": full_eval_steps,
                "expected_metric_calls": expected}
    return plan


def run_dspy_mipro(*, train: Sequence[Example], dev: Sequence[Example], seed: PromptTemplate,
                   evaluators: Sequence[Any], objective: Any, task_lm: TunegateLM, reflection_lm: TunegateLM,
                   budget: int, random_seed: int, num_threads: int = 8, num_candidates: int | None = None
                   ) -> ArmResult:
    """``dspy.MIPROv2`` (auto=None) with num_trials/minibatch chosen by :func:`mipro_plan`; labeled
    demos only when rows have a reference answer (our optimizers see no more than that). Below a
    budget of 150, 4 candidates (2 bootstrapped demo sets) instead of 6, or bootstrapping alone
    would eat the budget."""
    metric = BenchMetric([*train, *dev], evaluators, objective)
    labeled = 4 if all(isinstance(ex.expected, str) for ex in train) else 0
    num_candidates = num_candidates or (6 if budget >= 150 else 4)
    # Bootstrapped demo sets (all but zero-shot and labeled-only); ~10 attempts each observed here.
    plan = mipro_plan(budget, len(train), len(dev), boot_calls=(num_candidates - 2) * min(len(train), 10))
    settings = {"auto": None, "num_candidates": num_candidates, "max_bootstrapped_demos": 4,
                "max_labeled_demos": labeled, "num_threads": num_threads, "seed": random_seed, **plan}
    opt = dspy.MIPROv2(metric=metric, prompt_model=reflection_lm, task_model=task_lm, auto=None,
                       num_candidates=num_candidates, max_bootstrapped_demos=4, max_labeled_demos=labeled,
                       num_threads=num_threads, seed=random_seed, verbose=False, track_stats=True)
    adapter = PlainAdapter(lenient=True)
    settings["proposer_replies"] = "lenient (a reply without field markers is taken whole)"
    t0 = time.perf_counter()
    with dspy.context(lm=task_lm, adapter=adapter):
        prog = opt.compile(_program(seed), trainset=to_dspy(train, seed), valset=to_dspy(dev, seed),
                           num_trials=plan["num_trials"], minibatch_size=plan["minibatch_size"],
                           minibatch_full_eval_steps=plan["full_eval_steps"], seed=random_seed)
    wall = time.perf_counter() - t0
    notes = []
    spent = metric.calls["score"]
    if abs(spent - budget) > max(10, budget // 10):
        notes.append(f"MIPROv2 spent {spent} metric calls for a budget of {budget} (planned {plan['expected_metric_calls']})")
    notes.append(f"{adapter.lenient_parses} proposer replies had no DSPy field markers and were taken whole")
    dev_best = getattr(prog, "score", None)
    return ArmResult(program_prompt(prog, seed), spent, task_lm.stats["uncached"], task_lm.stats["cached"],
                     reflection_lm.stats["uncached"] + reflection_lm.stats["cached"], wall,
                     float(dev_best) / 100.0 if dev_best is not None else None,  # Evaluate reports percent
                     settings, notes)


def score_native(prompt_program: PromptTemplate, rows: Sequence[Example], seed: PromptTemplate,
                 task_lm: TunegateLM, metric: BenchMetric, num_threads: int = 8) -> dict[str, float]:
    """Run the compiled program itself (through DSPy) on ``rows``: the check that the converted
    prompt scored by tunegate is what DSPy would have run. Returns row id → objective."""
    prog = _program(prompt_program)
    [pred] = prog.predictors()
    pred.demos = [dspy.Example(**{IN: s.input, OUT: s.output}).with_inputs(IN) for s in prompt_program.few_shot]
    examples = to_dspy(rows, seed)
    evaluate = dspy.Evaluate(devset=examples, metric=metric, num_threads=num_threads, display_progress=False,
                             display_table=False, max_errors=len(examples) + 1)
    with dspy.context(lm=task_lm, adapter=PlainAdapter()):
        result = evaluate(prog)
    out: dict[str, float] = {}
    for e, _pred, v in result.results:
        out[e.row_id] = float(v) if isinstance(v, int | float) and math.isfinite(v) else 0.0
    return out
