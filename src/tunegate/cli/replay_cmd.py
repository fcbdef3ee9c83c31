"""``tunegate replay``: send golden-dataset rows through a running gateway as live traffic.

A rollout is judged on production traffic, but a demo or a staging check has none. ``replay``
turns dataset rows (by default a split the gate did not use) into chat requests and sends them with
the real ``openai`` SDK, so the gateway sees exactly what an OpenAI client sends, at a steady
**open-loop** rate: request *i* leaves at ``start + i / rate`` whether or not earlier ones have
answered, as real users do. (A closed loop -- wait for an answer, then send -- slows down exactly
when the gateway does and hides its latency.) When ``--max-in-flight`` requests are already waiting
the next one is *shed* and counted, never delayed.

Each request carries the row's cohort in ``x-tunegate-cohort`` (the gateway's cohort routing) and a
sticky user key in ``x-tunegate-user`` and ``user`` (the same row always maps to the same user, so
a rollout percentage sees stable users). The arm that answered is read from the gateway's
``x-tunegate-arm`` response header, so the summary gives latency per arm.

Exit codes: 0 every request answered; 1 some requests failed or were shed; 2 bad usage; 4 the gateway cannot be
reached (or no request reached it).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from tunegate.cli import common
from tunegate.errors import BackendError, UserError

__all__ = ["ReplayRequest", "ReplayStats", "build_requests", "register", "replay_cmd", "run_replay"]

COHORT_HEADER = "x-tunegate-cohort"
USER_HEADER = "x-tunegate-user"
ARM_HEADER = "x-tunegate-arm"


@dataclass(frozen=True)
class ReplayRequest:
    """One chat request made from a dataset row."""

    row_id: str
    cohort: str | None
    user: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    reference: dict[str, Any] | None = None


def _quantile(xs: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile (the value a user actually saw), None for no data."""
    if not xs:
        return None
    s = sorted(xs)
    return s[max(0, min(len(s) - 1, math.ceil(q * len(s)) - 1))]


@dataclass
class ReplayStats:
    """Counts and latencies, overall, per answering arm and per cohort."""

    planned: int = 0
    sent: int = 0
    ok: int = 0
    shed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latency_by_arm: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    arms_by_cohort: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    started: float = field(default_factory=time.monotonic)

    @property
    def n_errors(self) -> int:
        return sum(self.errors.values())

    def line(self) -> str:
        """One line: progress and latency per arm so far."""
        el = time.monotonic() - self.started
        parts = [f"{el:5.0f}s sent {self.sent}/{self.planned} ok {self.ok} errors {self.n_errors}"]
        if self.shed:
            parts[0] += f" shed {self.shed}"
        for arm, xs in sorted(self.latency_by_arm.items()):
            p50, p99 = _quantile(xs, 0.5), _quantile(xs, 0.99)
            parts.append(f"{arm} n={len(xs)} p50 {p50 or 0:.2f}s p99 {p99 or 0:.2f}s")
        return " | ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        el = time.monotonic() - self.started
        return {"planned": self.planned, "sent": self.sent, "ok": self.ok, "errors": self.n_errors, "shed": self.shed,
                "error_kinds": dict(self.errors), "elapsed_s": round(el, 3),
                "achieved_rate": round(self.sent / el, 3) if el > 0 else None,
                "arms": {arm: {"n": len(xs), "p50_s": _quantile(xs, 0.5), "p99_s": _quantile(xs, 0.99)}
                         for arm, xs in sorted(self.latency_by_arm.items())},
                "cohorts": {c: dict(n) for c, n in sorted(self.arms_by_cohort.items())}}


def _user_key(row_id: str, users: int) -> str:
    """A stable user for a row: replays of the same row are the same user (sticky rollout buckets)."""
    h = int.from_bytes(hashlib.sha256(row_id.encode()).digest()[:8], "big")
    return f"replay-user-{h % users}"


def _tool_spec(t: dict[str, Any]) -> dict[str, Any]:
    return t if t.get("type") == "function" and "function" in t else {"type": "function", "function": t}


def build_requests(dataset_path: str, split: str, rows: int | None, users: int,
                   with_reference: bool = False) -> list[ReplayRequest]:
    """Requests from the rows of ``split`` (``all`` for every row), in dataset order.

    The user turn is rendered exactly as an offline run renders it without a system prompt (context
    prepended, JSON Schema appended), so the gateway's arms see what the gate's runs saw; the arm's
    own system prompt is the gateway's to add. More ``rows`` than the split has cycle through it.
    The cohort sent is the row's last cohort tag (the most specific one, by the examples' convention).
    """
    from tunegate.core.loading import load_dataset
    from tunegate.core.prompt import PromptTemplate

    ds = load_dataset(dataset_path)
    part = ds if split == "all" else ds.split(split)  # type: ignore[arg-type]
    examples = list(part)
    if not examples:
        raise UserError(f"{dataset_path}: no rows in split {split!r}", field="--split")
    n = len(examples) if rows is None else rows
    template = PromptTemplate(user="{{input}}")
    out = []
    for i in range(n):
        ex = examples[i % len(examples)]
        msgs = [m.model_dump(mode="json", exclude_none=True) for m in template.render(ex)]
        ref: dict[str, Any] | None = None
        if with_reference:
            ref = {k: v for k, v in (("expected", ex.expected), ("schema", ex.json_schema),
                                     ("expected_tool_calls", None if ex.expected_tool_calls is None else
                                      [c.model_dump(mode="json") for c in ex.expected_tool_calls]))
                   if v is not None}
        out.append(ReplayRequest(ex.id, ex.cohorts[-1] if ex.cohorts else None, _user_key(ex.id, users), msgs,
                                 [_tool_spec(t) for t in ex.tools] if ex.tools else None, ref or None))
    return out


async def _check_reachable(client: Any, model: str | None) -> str:
    """The route to ask for: ``model`` if the gateway serves it, else its only route. Exit 4 when unreachable."""
    import openai

    try:
        listed = [m.id async for m in client.models.list()]
    except openai.APIConnectionError as e:
        raise BackendError(f"gateway unreachable at {client.base_url}: {e.__cause__ or e}", retryable=True) from None
    except openai.AuthenticationError as e:
        raise UserError(f"the gateway refused the API key ({e.status_code}); pass --api-key", field="--api-key") from None
    except openai.APIStatusError as e:
        raise BackendError(f"{client.base_url}models answered {e.status_code}: is this a tunegate gateway?",
                           status_code=e.status_code) from None
    if model is not None:
        if listed and model not in listed:
            raise UserError(f"the gateway serves no route {model!r}; routes: {', '.join(listed)}", field="--model")
        return model
    if len(listed) != 1:
        raise UserError(f"the gateway serves {len(listed)} routes ({', '.join(listed) or 'none'}); pick one with --model",
                        field="--model")
    return str(listed[0])


async def _one(client: Any, model: str, req: ReplayRequest, stats: ReplayStats, cohort_header: bool,
               max_tokens: int | None) -> None:
    import openai

    headers = {USER_HEADER: req.user}
    if cohort_header and req.cohort:
        headers[COHORT_HEADER] = req.cohort
    kw: dict[str, Any] = {"model": model, "messages": req.messages, "user": req.user, "extra_headers": headers}
    if req.tools:
        kw["tools"] = req.tools
    if max_tokens is not None:
        kw["max_tokens"] = max_tokens
    if req.reference is not None:  # gateway metadata is never forwarded upstream; values stay strings (OpenAI)
        kw["metadata"] = {"reference": json.dumps(req.reference, sort_keys=True)}
    t0 = time.monotonic()
    stats.sent += 1
    try:
        raw = await client.chat.completions.with_raw_response.create(**kw)
        raw.parse()
    except openai.APIConnectionError as e:
        stats.errors["timeout" if isinstance(e, openai.APITimeoutError) else "connection"] += 1
        return
    except openai.APIStatusError as e:
        stats.errors[f"http_{e.status_code}"] += 1
        return
    except openai.OpenAIError as e:
        stats.errors[type(e).__name__] += 1
        return
    arm = raw.headers.get(ARM_HEADER) or "unknown"
    stats.ok += 1
    stats.latency_by_arm[arm].append(time.monotonic() - t0)
    stats.arms_by_cohort[req.cohort or "-"][arm] += 1


async def run_replay(base_url: str, requests: Sequence[ReplayRequest], rate: float, *, model: str | None = None,
                     api_key: str = "unused", cohort_header: bool = True, every_s: float = 5.0,
                     timeout_s: float = 120.0, max_in_flight: int = 256, max_tokens: int | None = None,
                     emit: Callable[[str], None] = print) -> ReplayStats:
    """Send ``requests`` at ``rate`` per second (open loop), printing ``stats.line()`` every ``every_s``."""
    import openai

    async with openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout_s) as client:
        route = await _check_reachable(client, model)
        stats = ReplayStats(planned=len(requests))
        pending: set[asyncio.Task[None]] = set()

        async def report() -> None:
            while True:
                await asyncio.sleep(every_s)
                emit(stats.line())

        reporter = asyncio.create_task(report())
        start = time.monotonic()
        stats.started = start
        try:
            for i, req in enumerate(requests):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if len(pending) >= max_in_flight:
                    stats.shed += 1
                    continue
                task = asyncio.create_task(_one(client, route, req, stats, cohort_header, max_tokens))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:
                await asyncio.gather(*pending)
        finally:
            reporter.cancel()
            for t in pending:
                t.cancel()
        return stats


@click.command("replay")
@click.option("--base-url", required=True, help="The gateway's OpenAI base URL, e.g. http://127.0.0.1:8080/v1.")
@click.option("--dataset", "dataset_path", required=True, type=click.Path(dir_okay=False), help="Golden dataset.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "dev", "test", "all"]),
              help="Rows to replay (pick one the gate did not see for an honest canary).")
@click.option("--rows", type=click.IntRange(min=1), default=None, help="Requests to send (cycles the split); default: the split once.")
@click.option("--rate", required=True, type=click.FloatRange(min=0, min_open=True), help="Requests per second (open loop).")
@click.option("--model", default=None, help="Route to ask for (default: the gateway's only route).")
@click.option("--cohort-header/--no-cohort-header", default=True, show_default=True,
              help="Send each row's cohort in x-tunegate-cohort.")
@click.option("--users", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Distinct sticky users the rows are spread over.")
@click.option("--with-reference", is_flag=True,
              help="Also send the row's reference (expected answer, schema, expected calls) as request "
                   "metadata.reference (a JSON string), for an online scorer that reads it; the gateway never "
                   "forwards metadata upstream (its mirrored-pair scorer does not read it yet).")
@click.option("--every", "every_s", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds between progress lines.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=120.0, show_default=True,
              help="Per-request timeout in seconds.")
@click.option("--max-in-flight", type=click.IntRange(min=1), default=256, show_default=True,
              help="Requests waiting at once; beyond it a request is shed (counted, not delayed).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None, help="max_tokens sent (default: the arm's).")
@click.option("--api-key", envvar="TUNEGATE_API_KEY", default="unused", help="Gateway key (env TUNEGATE_API_KEY).")
@click.option("--json-out", type=click.Path(dir_okay=False), default=None, help="Also write the final summary as JSON.")
@click.pass_obj
def replay_cmd(obj: common.Context, base_url: str, dataset_path: str, split: str, rows: int | None, rate: float,
               model: str | None, cohort_header: bool, users: int, with_reference: bool, every_s: float,
               timeout_s: float, max_in_flight: int, max_tokens: int | None, api_key: str,
               json_out: str | None) -> int:
    """Replay dataset rows through a running gateway at a steady rate, with the openai SDK.

    \b
    Prints a progress line every --every seconds (sent, ok, errors, p50/p99 latency per answering
    arm from the gateway's x-tunegate-arm header) and a final summary with the arm mix per cohort.
    Exit code: 0 all answered, 1 some failed or shed, 4 gateway unreachable.
    """
    try:
        import openai  # noqa: F401
    except ImportError:
        raise UserError("tunegate replay needs the openai SDK: pip install 'tunegate[gateway]'") from None
    reqs = build_requests(dataset_path, split, rows, users, with_reference)
    con = common.out_console()
    con.print(f"replaying {len(reqs)} request(s) from {dataset_path} ({split}) to {base_url} at {rate:g}/s",
              highlight=False)
    stats = asyncio.run(run_replay(base_url, reqs, rate, model=model, api_key=api_key, cohort_header=cohort_header,
                                   every_s=every_s, timeout_s=timeout_s, max_in_flight=max_in_flight,
                                   max_tokens=max_tokens, emit=lambda s: con.print(s, highlight=False, soft_wrap=True)))
    summary = stats.to_dict()
    con.print("done: " + stats.line().strip(), highlight=False, soft_wrap=True)
    for cohort, arms in summary["cohorts"].items():
        con.print(f"  cohort {cohort}: " + ", ".join(f"{a} {n}" for a, n in sorted(arms.items())), highlight=False)
    if stats.errors:
        con.print("  errors: " + ", ".join(f"{k} {v}" for k, v in stats.errors.most_common()), highlight=False)
    if json_out:
        Path(json_out).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        con.print(f"  wrote {json_out}", highlight=False)
    if stats.sent and stats.ok == 0 and set(stats.errors) <= {"connection"}:
        con.print("no request reached the gateway", highlight=False)
        return 4
    return 1 if stats.n_errors or stats.shed else 0


def register(cli: click.Group) -> None:
    cli.add_command(replay_cmd)
