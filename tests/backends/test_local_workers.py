"""The local backend's worker lanes (``workers=N`` / ``TUNEGATE_WORKERS``).

The model tests compare a two-lane backend with a one-lane backend on the same requests: greedy,
sampled and stop-string rows, two ``max_tokens`` groups, more rows than one round of lanes takes.
Lanes may change speed, never text.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support.polling import poll
from tunegate.backends.base import GenerationRequest
from tunegate.backends.lanes import lane_init, split_rows, workers_from_env
from tunegate.backends.local import LocalBackend
from tunegate.core.candidate import DecodingParams
from tunegate.core.example import Message
from tunegate.core.result import ModelOutput
from tunegate.errors import UserError

pytestmark = pytest.mark.xdist_group("local_model")


def req(text: str, **params: Any) -> GenerationRequest:
    params.setdefault("max_tokens", 12)
    return GenerationRequest(messages=(Message(role="user", content=text),), params=DecodingParams(**params))


PROMPTS = ["What is 2+2?", "Name a color.", "Say hello in Spanish.", "Write a haiku about rain.",
           "What is the capital of Japan?", "List three animals.", "Explain what a CPU does in one sentence.",
           "Translate 'good night' to French.", "Give me a number between 1 and 10.", "Who wrote Hamlet?"]


ESSAY = "Write a long essay about the history of Rome."


def mixed_requests(stop: str) -> list[GenerationRequest]:
    out = [req(p) for p in PROMPTS]
    out += [req(p, max_tokens=8, temperature=0.9, top_p=0.9, seed=i) for i, p in enumerate(PROMPTS[:6])]
    out += [req(ESSAY, max_tokens=16, stop=[stop]), req(ESSAY, max_tokens=16, stop=["never-appears"])]
    return out


def texts(outs: list[Any]) -> list[tuple[str, str, int, list[Any]]]:
    for o in outs:
        assert isinstance(o, ModelOutput), o
    return [(o.text, o.finish_reason, o.usage.completion_tokens, o.tool_calls) for o in outs]


# -- no model -----------------------------------------------------------------------------------

def test_split_rows_deals_small_calls_to_every_lane_and_queues_large_ones() -> None:
    rows = [(i, [0] * i) for i in range(1, 8)]
    assert split_rows(rows, 16, 1) == [rows]
    assert split_rows(rows, 16, 2) == [rows[0::2], rows[1::2]]      # both lanes get short and long prompts
    assert split_rows(rows[:1], 16, 2) == [rows[:1]]                 # one row: one lane
    assert split_rows(rows, 2, 2) == [rows[0:2], rows[2:4], rows[4:6], rows[6:7]]   # > batch x lanes: queue
    assert sorted(r for c in split_rows(rows, 3, 3) for r in c) == rows


def test_workers_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNEGATE_WORKERS", raising=False)
    assert workers_from_env() == 1
    monkeypatch.setenv("TUNEGATE_WORKERS", "3")
    assert workers_from_env() == 3
    monkeypatch.setenv("TUNEGATE_WORKERS", "auto")
    assert workers_from_env() >= 1
    for bad in ("0", "two"):
        monkeypatch.setenv("TUNEGATE_WORKERS", bad)
        with pytest.raises(UserError, match="TUNEGATE_WORKERS"):
            workers_from_env()


def test_workers_size_the_calls_and_apply_to_the_fast_engine_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNEGATE_WORKERS", raising=False)
    assert LocalBackend(batch_size=8, workers=2).max_batch == 16
    assert LocalBackend(batch_size=8).max_batch == 8
    with pytest.raises(UserError, match="fast engine"):
        LocalBackend(engine="transformers", workers=2)
    with pytest.raises(UserError, match="workers"):
        LocalBackend(workers=0)
    monkeypatch.setenv("TUNEGATE_WORKERS", "2")   # a machine setting: the fast engine uses it ...
    assert LocalBackend(batch_size=4).workers == 2
    assert LocalBackend(engine="transformers").workers == 1   # ... a transformers candidate runs in one lane


# -- the real model -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_lane() -> Any:
    b = LocalBackend(batch_size=4, threads=1, workers=1)
    b.load()
    yield b
    asyncio.run(b.aclose())


@pytest.mark.slow
def test_two_lanes_give_the_text_one_lane_gives(one_lane: LocalBackend) -> None:
    full = texts(asyncio.run(one_lane.generate([req(ESSAY, max_tokens=16)])))[0][0]
    stop = " " + full.split()[3]
    reqs = mixed_requests(stop)
    two = LocalBackend(batch_size=4, threads=1, workers=2)
    try:
        got = texts(asyncio.run(two.generate(reqs)))
        assert got == texts(asyncio.run(one_lane.generate(reqs)))
        assert got[-2][:2] == (full[:full.find(stop)], "stop")   # the stop string cut the row in whichever lane
        assert two.lane_chunks[1] > 0, two.lane_chunks          # the spawned lane did take batches
        assert sum(two.lane_chunks) == two.batches_run
        small = texts(asyncio.run(two.generate(reqs[:3])))     # a small call is split across the lanes too
        assert small == got[:3]
    finally:
        asyncio.run(two.aclose())


@pytest.mark.slow
def test_a_broken_lane_costs_speed_not_rows(one_lane: LocalBackend) -> None:
    reqs = [req(p) for p in PROMPTS]
    two = LocalBackend(batch_size=2, threads=1, workers=2)
    try:
        two.load()
        for ex in two._lanes:
            ex.shutdown(wait=True)
        broken = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=lane_init,
                                     initargs=("/nonexistent-model-folder", None, "k", "/nonexistent", 1))
        two._lanes = [broken]
        got = texts(asyncio.run(two.generate(reqs)))
        assert got == texts(asyncio.run(one_lane.generate(reqs)))
        assert two.lane_chunks[1] == 0 and two.lane_chunks[0] == 5
    finally:
        asyncio.run(two.aclose())


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")   # a zombie has ended
    except OSError:
        return True


@pytest.mark.slow
def test_lanes_end_when_the_backend_process_is_killed(tmp_path: Path) -> None:
    code = ("import multiprocessing, sys\nfrom tunegate.backends.local import LocalBackend\n"
            "b = LocalBackend(batch_size=2, threads=1, workers=2)\nb.load()\n"
            "b._lanes[0].submit(int).result()\n"   # the lane process is up
            "print(*[p.pid for p in multiprocessing.active_children()], flush=True)\nsys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lanes = [int(p) for p in proc.stdout.readline().split()]
        assert lanes and not any(_gone(p) for p in lanes)
    finally:
        proc.kill()   # no close(): the lanes must notice on their own
        proc.wait()
    assert poll(lambda: all(_gone(p) for p in lanes), tries=1200)
