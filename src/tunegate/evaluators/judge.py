"""``RubricJudge``: an LLM grades an output against a rubric, with a pinned identity.

Why it is built this way:

* **Structured verdicts.** The judge is asked for ``{"reasoning": "...", "score": <int>}`` (reasoning
  first, so the score follows the argument); :mod:`.judge_parse` reads it robustly. An invalid
  reply (no score, off the scale, cut by the token limit) is retried **once** with another seed
  and a nudge; if it is still invalid the row is status ``error`` quoting the judge's text. A
  judge's format failure is never scored 0: that would count judge noise against the candidate.
* **Pinned identity.** A score means something only for one judge model, rubric, prompt template,
  parser, temperature and sample count; all are in ``identity()``, so runs judged differently
  are never paired by the gate.
* **Self-preference.** Judges favour their own model family's outputs (see :mod:`.judge_family`
  for the literature); a related judge and candidate get a warning in ``details`` and ``reason``.
* **Layering.** Evaluators may not import backend implementations, so the judge receives a ready
  backend object; configs that name a judge (``judge: {backend, model, ...}``) are turned into a
  backend by a factory injected into the evaluator's constructor (no module-global state).
* **Batching.** All rows × samples of a batch go to the backend in one ``generate`` call (the
  local backend batches them, the OpenAI one runs them concurrently); the retries in a second.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from tunegate.core.aio import run_sync
from tunegate.core.candidate import DecodingParams
from tunegate.core.example import Message
from tunegate.core.request import GenerationRequest
from tunegate.core.result import ModelOutput
from tunegate.errors import BackendError, UserError
from tunegate.evaluators.judge_family import same_family
from tunegate.evaluators.judge_parse import (
    PARSER_NAME,
    PARSER_VERSION,
    SCALES,
    JudgeParseError,
    parse_judgement,
)
from tunegate.evaluators.judge_prompt import PROMPT_VERSION, JudgeItem, judge_messages, retry_nudge

__all__ = [
    "RETRY_SEED_OFFSET",
    "BackendFactory",
    "JudgeBackend",
    "JudgeItem",
    "JudgeRequest",
    "JudgeVerdict",
    "RubricJudge",
    "build_judge_backend",
]

#: Retry ``k`` of sample ``i`` uses seed ``seed + i + RETRY_SEED_OFFSET``: never a seed of a first try.
RETRY_SEED_OFFSET = 100_003
_LOOP_BOUND_KINDS = frozenset({"openai"})  # backends whose connections cannot outlive an event loop
_EXCERPT = 300


@runtime_checkable
class JudgeBackend(Protocol):
    """The part of ``tunegate.backends.base.Backend`` the judge uses (structurally the same)."""

    kind: str
    max_batch: int

    def identity(self) -> dict[str, Any]: ...

    async def generate(self, requests: Sequence[Any]) -> list[Any]: ...

    async def aclose(self) -> None: ...


#: Kept as a name for callers of the judge API; it is the core request type.
JudgeRequest = GenerationRequest


# -- backend factory (injected, never global) ------------------------------------------------------
#: How a validated ``judge:`` mapping (keys ``backend``, ``model``, ``base_url``, ``api_key_env``,
#: ``adapter``, ``options``) becomes a backend. Evaluators may not import backend implementations,
#: so whoever builds the suite (the engine: :func:`tunegate.engine.run.resolve_suite`) passes one
#: to the judge evaluators' constructor (``judge_backends=``) through the evaluator registry.
BackendFactory = Callable[[dict[str, Any]], JudgeBackend]


def build_judge_backend(spec: Mapping[str, Any], factory: BackendFactory | None, *, evaluator: str) -> JudgeBackend:
    """The backend for a validated judge mapping, through the injected ``factory``."""
    if factory is None:
        raise UserError("a judge is configured but this evaluator was built without a judge backend factory "
                        "(build the suite with tunegate.engine.run.resolve_suite, pass judge_backends=... to "
                        "load_suite / Registry.create, or give a ready backend object as judge=...)",
                        field=f"evaluators.{evaluator}.judge")
    backend = factory(dict(spec))
    if not isinstance(backend, JudgeBackend):
        raise UserError(f"the judge backend factory returned {type(backend).__name__}, not a backend",
                        field=f"evaluators.{evaluator}.judge")
    return backend


# -- verdicts ----------------------------------------------------------------------------------------
@dataclass
class JudgeVerdict:
    """The judge's verdict on one item: ``score`` in [0, 1] (mean over samples) or an ``error``."""

    score: float | None = None
    raw_scores: list[int] = field(default_factory=list)
    reasoning: str = ""
    samples: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def _excerpt(text: str, n: int = _EXCERPT) -> str:
    text = text.strip()
    return text if len(text) <= n else text[: n - 1] + "…"


class RubricJudge:
    """Grades ``JudgeItem``\\ s against ``rubric`` on ``scale`` with ``samples`` judge samples each.

    ``model_name`` is the judge model as the user named it (used for the self-preference check
    and in ``identity()``); it defaults to the backend identity's ``model``.
    """

    def __init__(self, backend: JudgeBackend, rubric: str, *, scale: str = "1-5", temperature: float = 0.0,
                 samples: int = 1, seed: int = 0, max_tokens: int = 512, model_name: str | None = None) -> None:
        if not rubric.strip():
            raise UserError("the rubric is empty", field="rubric")
        if scale not in SCALES:
            raise UserError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}", field="scale")
        if samples < 1:
            raise UserError(f"samples must be >= 1, got {samples}", field="samples")
        if samples > 1 and temperature <= 0:
            raise UserError("samples > 1 needs temperature > 0 (greedy samples are identical)", field="samples")
        self.backend = backend
        self.rubric = rubric.strip()
        self.scale = SCALES[scale]
        self.temperature = float(temperature)
        self.samples = samples
        self.seed = seed
        self.max_tokens = max_tokens
        ident = backend.identity()
        self.model_name = model_name or str(ident.get("model") or "")
        self._warned: set[tuple[str, str]] = set()

    def identity(self) -> dict[str, Any]:
        """Everything that changes a verdict: judge backend, rubric text + hash, scale, parser,
        prompt template version, decoding and retry policy."""
        return {
            "backend": self.backend.identity(),
            "model_name": self.model_name,
            "rubric": self.rubric,
            "rubric_sha256": hashlib.sha256(self.rubric.encode("utf-8")).hexdigest(),
            "scale": self.scale.name,
            "parser": {"name": PARSER_NAME, "version": PARSER_VERSION},
            "prompt_template": PROMPT_VERSION,
            "temperature": self.temperature,
            "samples": self.samples,
            "seed": self.seed,
            "max_tokens": self.max_tokens,
            "retries": {"count": 1, "seed_offset": RETRY_SEED_OFFSET},
        }

    # -- self-preference ---------------------------------------------------------------------------
    def family_warning(self, candidate: Mapping[str, Any]) -> str | None:
        """A warning when the judge and the candidate model are related (logged once per pair)."""
        cand = candidate.get("model") if isinstance(candidate, Mapping) else None
        why = same_family(self.model_name, str(cand)) if cand else None
        if why is None:
            return None
        text = (f"judge {self.model_name!r} and candidate {cand!r} are the {why}: LLM judges favour their "
                "own family's outputs (self-preference bias), so these scores are likely optimistic; "
                "use a judge from another family")
        key = (self.model_name, str(cand))
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(text, UserWarning, stacklevel=2)
        return text

    # -- judging ------------------------------------------------------------------------------------
    def _request(self, messages: tuple[Message, ...], sample: int, retry: bool) -> JudgeRequest:
        seed = self.seed + (RETRY_SEED_OFFSET if retry else 0)
        params = DecodingParams(temperature=self.temperature, max_tokens=self.max_tokens, seed=seed)
        return JudgeRequest(messages=messages, params=params, sample_index=sample)

    def judge(self, items: Sequence[JudgeItem]) -> list[JudgeVerdict]:
        """Verdicts for ``items`` (sync; runs the backend in a fresh event loop)."""
        if not items:
            return []
        return run_sync(lambda: self.ajudge(items))

    async def ajudge(self, items: Sequence[JudgeItem]) -> list[JudgeVerdict]:
        """Verdicts for ``items``: one backend call for every first try, one for every retry."""
        try:
            return await self._ajudge(items)
        finally:
            if getattr(self.backend, "kind", "") in _LOOP_BOUND_KINDS:
                await self.backend.aclose()  # its HTTP client belongs to this loop

    async def _ajudge(self, items: Sequence[JudgeItem]) -> list[JudgeVerdict]:
        prompts = [judge_messages(it, self.rubric, self.scale) for it in items]
        keys = [(i, s) for i in range(len(items)) for s in range(self.samples)]
        first = await self.backend.generate([self._request(prompts[i], s, False) for i, s in keys])
        records: dict[tuple[int, int], dict[str, Any]] = {}
        retry: list[tuple[int, int]] = []
        for key, res in zip(keys, first, strict=True):
            rec = self._record(res, key[1], attempt=1)
            records[key] = rec
            if rec.get("invalid"):
                retry.append(key)
        if retry:
            reqs = []
            for i, s in retry:
                rec = records[(i, s)]
                nudge = (Message(role="assistant", content=_excerpt(rec["text"], 2000) or "(empty)"),
                         Message(role="user", content=retry_nudge(rec["problem"], self.scale)))
                reqs.append(self._request(prompts[i] + nudge, s, True))
            second = await self.backend.generate(reqs)
            for key, res in zip(retry, second, strict=True):
                rec = self._record(res, key[1], attempt=2)
                prev = records[key]
                rec["first_try"] = {"problem": prev.get("problem"), "text": _excerpt(prev.get("text", ""))}
                records[key] = rec
        return [self._verdict([records[(i, s)] for s in range(self.samples)]) for i in range(len(items))]

    def _record(self, res: Any, sample: int, *, attempt: int) -> dict[str, Any]:
        seed = self.seed + sample + (RETRY_SEED_OFFSET if attempt > 1 else 0)
        rec: dict[str, Any] = {"sample": sample, "seed": seed, "attempts": attempt}
        if isinstance(res, BackendError) or not isinstance(res, ModelOutput):
            rec["failed"] = f"judge call failed: {res}"
            return rec
        rec["text"] = res.text
        rec["finish_reason"] = res.finish_reason
        try:
            j = parse_judgement(res.text, self.scale, finish_reason=res.finish_reason)
        except JudgeParseError as e:
            rec.update(invalid=True, problem=f"{e.kind}: {e}")
            return rec
        rec.update(score=j.score, reasoning=j.reasoning, method=j.method)
        return rec

    def _verdict(self, recs: list[dict[str, Any]]) -> JudgeVerdict:
        shown = [{k: (_excerpt(v) if k == "text" else v) for k, v in r.items() if k != "invalid"} for r in recs]
        bad = next((r for r in recs if "score" not in r), None)
        if bad is not None:
            if "failed" in bad:
                why = bad["failed"]
            else:
                why = (f"judge output invalid after {bad['attempts']} attempts ({bad['problem']}); "
                       f"raw judge text: {_excerpt(bad.get('text', ''))!r}")
            return JudgeVerdict(error=why, samples=shown)
        raw = [int(r["score"]) for r in recs]
        mean = sum(self.scale.normalise(v) for v in raw) / len(raw)
        return JudgeVerdict(score=mean, raw_scores=raw, reasoning=str(recs[0].get("reasoning", "")), samples=shown)
