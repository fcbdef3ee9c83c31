"""Worker lanes of the local backend (``workers=N`` / ``TUNEGATE_WORKERS``; fast engine only).

The fast engine runs on one torch thread (more threads lose to OpenMP barriers, decision 0014), so
on a machine with N real cores N-1 spawned processes each load the cached int8 engine and take
batches beside the backend's own thread. This module is that machinery, apart from the backend
that uses it: how many lanes, how a call's rows are dealt out (:func:`split_rows`), how the
lanes share a queue of chunks (:func:`run_lanes`), and what runs inside a lane process.

Outputs do not change with the lanes: a row's text depends on its own prompt, params and seed only
(batch-invariant engine, per-row sampling, the same tokenizer for stop strings in every lane).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tunegate.errors import UserError

__all__ = ["Chunk", "LanePayload", "lane_init", "run_lanes", "spawn_lanes", "split_rows", "stop_checker",
           "workers_from_env"]

#: Rows for one batch: (max_tokens, [(request index, prompt ids)]).
Chunk = tuple[int, list[tuple[int, list[int]]]]
#: What a lane needs per row: (prompt ids, max_new, temperature, top_p, seed, stop strings).
LanePayload = list[tuple[list[int], int, float, float, int, list[str]]]
#: A finished lane chunk: (the chunk, per row (generated ids, ended by eos/stop), per-row time share).
LaneDone = tuple[Chunk, list[tuple[list[int], bool]], float]


def workers_from_env(default: int = 1) -> int:
    """``TUNEGATE_WORKERS`` as a lane count (``auto`` = the CPU count), else ``default``."""
    raw = os.environ.get("TUNEGATE_WORKERS", "").strip()
    if not raw:
        return default
    if raw == "auto":
        return max(1, os.cpu_count() or 1)
    try:
        n = int(raw)
    except ValueError:
        raise UserError(f"TUNEGATE_WORKERS must be an integer or 'auto', got {raw!r}",
                        field="TUNEGATE_WORKERS") from None
    if n < 1:
        raise UserError("TUNEGATE_WORKERS must be at least 1", field="TUNEGATE_WORKERS")
    return n


def split_rows(rows: list[tuple[int, list[int]]], batch_size: int, lanes: int) -> list[list[tuple[int, list[int]]]]:
    """Length-sorted rows as batches: up to ``batch_size * lanes`` rows are dealt out round-robin
    into one batch per lane (each lane gets short and long prompts alike, so they finish together);
    more rows go in consecutive batches of ``batch_size`` that the lanes take from a queue."""
    if lanes > 1 and len(rows) <= batch_size * lanes:
        k = min(lanes, len(rows))
        return [rows[j::k] for j in range(k)]
    return [rows[k:k + batch_size] for k in range(0, len(rows), batch_size)]


def stop_checker(tok: Any, stops: Sequence[str]) -> Callable[[list[int]], bool]:
    """True once the decoded tail of a row's generated ids contains one of ``stops``."""
    tail = 4 * max(len(s) for s in stops) + 8  # a character is at most 4 byte-level tokens
    stops = list(stops)

    def check(ids: list[int]) -> bool:
        text = tok.decode(ids[-tail:], skip_special_tokens=True)
        return any(s in text for s in stops)

    return check


def spawn_lanes(n: int, folder: Path, adapter: str | None, key: str, cache_dir: Path,
                threads: int) -> list[ProcessPoolExecutor]:
    """``n`` lane processes, each starting to load the engine file this process just cached."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")   # never fork a process that holds torch threads
    lanes = []
    for _ in range(n):
        ex = ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=lane_init,
                                 initargs=(str(folder), adapter, key, str(cache_dir), threads))
        ex.submit(_lane_ping)   # start loading now, while this lane already generates
        lanes.append(ex)
    return lanes


def run_lanes(lanes: Sequence[ProcessPoolExecutor], chunks: list[Chunk], payload: Callable[[Chunk], LanePayload],
              eos: list[int], run_here: Callable[[Chunk], None],
              counted: Callable[[int], None]) -> list[LaneDone]:
    """Every lane takes the next chunk from one queue until none is left; the spawned lanes' results.

    The calling thread is lane 0 (``run_here``); one helper thread per spawned lane hands it a chunk
    and waits. A lane whose process fails puts its chunk back and stops, so the others (at least
    lane 0) still finish the call: a broken lane costs speed, never rows. ``counted(lane)`` is
    called, under the queue's lock, for each chunk a spawned lane finished. The results are
    returned, not decoded here: the caller decodes them on its own thread (one tokenizer user).
    """
    queue = list(reversed(chunks))
    qlock = threading.Lock()
    done: list[LaneDone] = []

    def take() -> Chunk | None:
        with qlock:
            return queue.pop() if queue else None

    def lane(n: int, ex: ProcessPoolExecutor) -> None:
        while (chunk := take()) is not None:
            t0 = time.perf_counter()
            try:
                outs = ex.submit(_lane_generate, payload(chunk), eos).result()
            except Exception:
                with qlock:
                    queue.append(chunk)
                return
            share = (time.perf_counter() - t0) / len(chunk[1])
            with qlock:
                counted(n)
                done.append((chunk, outs, share))

    with ThreadPoolExecutor(max_workers=len(lanes), thread_name_prefix="tunegate-lane") as pool:
        helpers = [pool.submit(lane, n + 1, ex) for n, ex in enumerate(lanes)]
        while (chunk := take()) is not None:
            run_here(chunk)
        for h in helpers:
            h.result()
    while (chunk := take()) is not None:   # put back by a lane that failed after this one stopped
        run_here(chunk)
    return done


# -- a spawned lane (module-level: run in the worker process) ------------------------------------

_LANE: dict[str, Any] = {}


def lane_init(folder: str, adapter: str | None, key: str, cache_dir: str, threads: int) -> None:
    """Load the tokenizer and the cached engine once per lane process."""
    import torch
    from transformers import AutoTokenizer

    from tunegate.backends.fastlm import load_engine

    _watch_parent(os.getppid())
    torch.set_num_threads(threads)
    _LANE["tok"] = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    _LANE["engine"] = load_engine(Path(folder), adapter, key, Path(cache_dir))


def _watch_parent(parent: int) -> None:
    """End this lane when the backend's process is gone (killed, not closed): a lane in the middle
    of a batch would otherwise keep a core busy for a caller that no longer exists."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="tunegate-lane-parent", daemon=True).start()


def _lane_ping() -> bool:
    return bool(_LANE)


def _lane_generate(payload: LanePayload, eos: list[int]) -> list[tuple[list[int], bool]]:
    """One batch in a lane: the same RowSpecs lane 0 would build (stop strings on this lane's tokenizer)."""
    from tunegate.backends.fastlm import RowSpec

    tok = _LANE["tok"]
    rows = [RowSpec(prompt=ids, max_new=max_new, temperature=temp, top_p=top_p, seed=seed,
                    stop=stop_checker(tok, stop) if stop else None)
            for ids, max_new, temp, top_p, seed, stop in payload]
    out: list[tuple[list[int], bool]] = _LANE["engine"].generate(rows, set(eos))
    return [(list(ids), bool(ended)) for ids, ended in out]
