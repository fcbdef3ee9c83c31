"""The release story of ``tunegate demo`` on ``examples/release``, as five step functions.

1. :meth:`ReleaseDemo.tune` — a prompt optimizer tunes the incumbent on the train/dev rows;
2. :meth:`ReleaseDemo.gate` — the tuned candidate is gated against the incumbent on the test split,
   per cohort, and ``report.html`` / ``verdict.json`` are written;
3. :meth:`ReleaseDemo.rollout` — ``tunegate serve`` starts on loopback and the candidate is promoted,
   through the real ``promote`` check with the verdict file, for the cohorts the verdict allows;
   a refusal is printed as it is and the route only mirrors;
4. :meth:`ReleaseDemo.replay` — rows the gate never saw (dev, then train) go through the gateway with
   the ``openai`` SDK at a steady rate; the release controller scores mirrored pairs and ramps or
   rolls back; its audited history is printed;
5. :meth:`ReleaseDemo.report` — the dashboard the gateway serves at ``/dashboard`` is saved to a file.

Every step prints one or two lines, the paths it wrote and its wall time; ``demo.json`` keeps the
timings and outcomes (``bench/demo_time.py`` reads it). Nothing here steers the outcome: the
verdict, the promotion, the controller's decisions are whatever the real parts decide.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunegate.errors import UserError

if TYPE_CHECKING:
    from tunegate.cli.demo_serve import GatewayProcess
    from tunegate.cli.replay_cmd import ReplayRequest
    from tunegate.core.candidate import CandidateSpec
    from tunegate.engine.gate.runs import GateResult
    from tunegate.store.sqlite import Store
    from tunegate.tuning.workflow import PromptTunePlan

__all__ = ["DemoOptions", "ReleaseDemo", "interleave", "tree_cpu_s"]

ROUTE = "release"
ARM = "candidate"


@dataclass
class DemoOptions:
    """What the demo runs on and how big each step is (sized for 2 CPU cores)."""

    folder: Path
    out: Path
    db: str | None = None
    method: str = "promptwizard"
    budget: int = 80                 #: metric calls the optimizer may spend (train/dev rows)
    reflection_max_tokens: int = 160
    replay_rows: int = 40            #: requests replayed through the gateway
    rate: float = 1.0                #: requests per second (open loop)
    settle_s: float = 60.0           #: after the replay: at most this long for the last shadows and scores
    route: str = ROUTE
    arm: str = ARM
    candidate: Path | None = None    #: gate this candidate YAML instead of tuning one (step 1 skipped)


def tree_cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system) of a process and every descendant, live or already reaped.

    Why: the demo's work runs in child processes (the local backend's lanes, ``tunegate serve`` and
    its lanes and scorer), and wall time on a shared machine says little; the CPU a step cost does
    not depend on what else the machine runs. Linux ``/proc`` only; 0.0 where it is missing.
    """
    pid = os.getpid() if pid is None else pid
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    stats: dict[int, tuple[int, float]] = {}   # pid → (parent, own + reaped children's CPU)
    try:
        names = os.listdir("/proc")
    except OSError:
        return 0.0
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:   # the process ended while we looked
            continue
        # after the command name: state ppid ... utime(12) stime(13) cutime(14) cstime(15), 1-based from state=1
        stats[int(name)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / tick)
    children: dict[int, list[int]] = defaultdict(list)
    for p, (parent, _) in stats.items():
        children[parent].append(p)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, (0, 0.0))[1]
        todo += children.get(p, [])
    return total


@dataclass
class StepTimes:
    wall_s: dict[str, float] = field(default_factory=dict)
    #: CPU seconds of the demo's whole process tree per step (see :func:`tree_cpu_s`)
    cpu_s: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        t0, c0 = time.perf_counter(), tree_cpu_s()
        try:
            yield
        finally:
            self.wall_s[name] = round(time.perf_counter() - t0, 2)
            self.cpu_s[name] = round(tree_cpu_s() - c0, 2)


def interleave(requests: list[ReplayRequest]) -> list[ReplayRequest]:
    """Round-robin over cohorts (the dataset is ordered by source; a prefix would be one cohort)."""
    by: dict[str, list[ReplayRequest]] = defaultdict(list)
    for r in requests:
        by[r.cohort or "-"].append(r)
    queues = [by[k] for k in sorted(by)]
    out: list[ReplayRequest] = []
    i = 0
    while any(i < len(q) for q in queues):
        out.extend(q[i] for q in queues if i < len(q))
        i += 1
    return out


class ReleaseDemo:
    """Runs the steps in order on one store; ``emit`` prints a line."""

    def __init__(self, opts: DemoOptions, store: Store, emit: Callable[[str], None] = print) -> None:
        self.o, self.store, self.emit = opts, store, emit
        self.times = StepTimes()
        self.result: dict[str, Any] = {"folder": str(opts.folder), "out": str(opts.out)}
        self.plan: PromptTunePlan | None = None
        self.baseline: CandidateSpec | None = None
        self.candidate: CandidateSpec | None = None
        self.candidate_path: Path | None = None
        self.gate_result: GateResult | None = None
        self.verdict_path: Path | None = None
        self.allowed: list[str] = []
        self.gateway: GatewayProcess | None = None
        self._since: str | None = None

    # -- 0. the data ----------------------------------------------------------------------------
    def plan_tune(self) -> PromptTunePlan:
        from tunegate.tuning.workflow import plan_prompt_tune

        f = self.o.folder
        settings = f / f"{self.o.method}.yaml"
        self.plan = plan_prompt_tune(method=self.o.method, dataset=f / "dataset.jsonl", candidate=f / "incumbent.yaml",
                                     policy=f / "policy.yaml", budget=self.o.budget,
                                     reflection_max_tokens=self.o.reflection_max_tokens,
                                     settings=settings if settings.exists() else None, out=self.o.out / "tune",
                                     evaluators=str(f / "evaluators.yaml") if (f / "evaluators.yaml").exists() else None)
        ds = self.plan.dataset
        rows: dict[str, dict[str, int]] = defaultdict(lambda: {"train": 0, "dev": 0, "test": 0})
        for ex in ds:
            for c in ex.cohorts:
                rows[c][ds.split_of(ex)] += 1
        self.result["rows"] = {c: dict(v) for c, v in sorted(rows.items())}
        sc = ds.split_counts()
        self.emit(f"data: {len(ds)} rows of {f / 'dataset.jsonl'} (train {sc['train']}, dev {sc['dev']}, "
                  f"test {sc['test']}); test rows per cohort: "
                  + ", ".join(f"{c} {v['test']}" for c, v in sorted(rows.items())))
        return self.plan

    # -- 1. tune --------------------------------------------------------------------------------
    def tune(self) -> None:
        from tunegate.core.candidate import load_candidate
        from tunegate.tuning.workflow import run_prompt_tune

        plan = self.plan or self.plan_tune()
        if self.o.candidate is not None:
            from tunegate.prompts import PromptRegistry, resolve_candidate

            self.baseline = resolve_candidate(plan.seed, PromptRegistry(self.store))
            self.candidate_path = self.o.candidate
            self.candidate = load_candidate(self.o.candidate)
            self.result["tune"] = {"skipped": True, "candidate": str(self.o.candidate)}
            self.emit(f"1 tune    skipped: gating {self.o.candidate} as given (--candidate)")
            return
        with self.times.step("tune"):
            res = run_prompt_tune(plan, self.store, gate=False)
        o = res.outcome
        s = o.spent
        self.baseline = res.baseline
        tune = {"method": self.o.method, "budget": self.o.budget, "improved": o.improved,
                "seed_dev": o.seed.dev_mean, "best_dev": o.best.dev_mean, "metric_calls": s["metric_calls"],
                "reflection_calls": s["reflection_calls"], "cached_rows": s["cached_rows"],
                "history": str(res.history_path), "plot": str(res.plot_path)}
        self.emit(f"1 tune    {self.o.method}, {s['metric_calls']} metric calls on train/dev "
                  f"({s['reflection_calls']} reflections, {s['cached_rows']} cached): dev objective "
                  f"{o.seed.dev_mean or 0:.3f} → {o.best.dev_mean or 0:.3f} ({self.times.wall_s['tune']:.0f}s)")
        if o.improved:
            self.candidate, self.candidate_path = res.candidate, res.candidate_path
        else:   # nothing beat the seed on dev: the example's hand-written challenger is gated instead
            self.candidate_path = self.o.folder / "candidate.yaml"
            self.candidate = load_candidate(self.candidate_path)
            self.emit(f"          no proposal beat the incumbent on dev; gating the hand-written "
                      f"{self.candidate_path} instead")
        tune["candidate"] = str(self.candidate_path)
        self.result["tune"] = tune
        self.emit(f"          wrote {res.history_path}, {res.plot_path}, {res.candidate_path}")

    # -- 2. gate --------------------------------------------------------------------------------
    def gate(self) -> None:
        from tunegate.report.files import write_report
        from tunegate.tuning.workflow import gate_on_test

        assert self.plan is not None and self.baseline is not None and self.candidate is not None, "tune first"
        with self.times.step("gate"):
            g = gate_on_test(self.store, self.plan.dataset, self.baseline, self.candidate, self.plan.policy,
                             self.plan.gate_evaluators)
            paths = write_report(g, self.o.out / "gate")
        self.gate_result = g
        self.verdict_path = paths["verdict.json"]
        self.allowed = self._allowed_cohorts()
        v = g.verdict
        self.result["gate"] = {"decision": v.decision, "allowed_cohorts": self.allowed,
                               "rules": {s: len(v.by_status(s)) for s in ("pass", "fail", "undecided", "skipped")},
                               "report": str(paths["report.html"]), "verdict": str(self.verdict_path)}
        blocked = [r for r in v.rules if r.status in ("fail", "undecided") and r.cohort not in (None, "*")]
        per = "; ".join(f"{r.cohort}: {r.evaluator} {r.rule} {r.status}" for r in blocked[:6])
        self.emit(f"2 gate    {v.decision} on the test split ({self.times.wall_s['gate']:.0f}s); release allowed "
                  f"for cohorts: {', '.join(self.allowed) or 'none'}" + (f" (not: {per})" if per else ""))
        self.emit(f"          wrote {paths['report.html']}, {self.verdict_path}")

    def _route_cfg(self, config: Path) -> tuple[Any, dict[str, dict[str, str]]]:
        from tunegate.gateway.config import load_gateway_config
        from tunegate.gateway.service import resolve_specs

        cfg, specs = load_gateway_config(config)
        resolved = resolve_specs(self.store, specs)
        hashes = {r: {a: s.hash for a, s in arms.items()} for r, arms in resolved.items()}
        return cfg.model_copy(update={"candidate_hashes": hashes}), hashes

    def _allowed_cohorts(self) -> list[str]:
        """The route's cohorts for which the real promote check accepts this verdict, one at a time."""
        from tunegate.cli.demo_serve import write_configs
        from tunegate.gateway.release import check_verdict, read_verdict

        assert self.verdict_path is not None and self.candidate_path is not None
        probe = self.o.out / "serve" / "probe"
        cfg_path, _ = write_configs(self.o.folder, probe, route=self.o.route, arm=self.o.arm,
                                    candidate=self.candidate_path, cohorts=None)
        cfg, hashes = self._route_cfg(cfg_path)
        route = cfg.route(self.o.route)
        verdict, vh = read_verdict(self.verdict_path)
        out = []
        for c in route.cohorts or []:
            one = route.model_copy(update={"cohorts": [c]})
            if check_verdict(verdict, vh, one, self.o.arm, hashes[self.o.route], self.store).allowed:
                out.append(c)
        return out

    # -- 3. serve + promote ---------------------------------------------------------------------
    def rollout(self, stack: ExitStack) -> None:
        from tunegate.cli.demo_serve import GatewayProcess, write_configs
        from tunegate.core.release_policy import load_release_policy
        from tunegate.gateway.release import promote

        assert self.verdict_path is not None and self.candidate_path is not None, "gate first"
        serve = self.o.out / "serve"
        with self.times.step("serve"):
            cfg_path, rel_path = write_configs(self.o.folder, serve, route=self.o.route, arm=self.o.arm,
                                               candidate=self.candidate_path, cohorts=self.allowed or None)
            self.gateway = stack.enter_context(GatewayProcess(cfg_path, rel_path, db=self.o.db, log=serve / "serve.log"))
        first = 10.0
        pol_file = self.o.folder / "release-policy.yaml"
        if pol_file.exists():
            first = float(load_release_policy(pol_file).steps[0].percent)
        cfg, hashes = self._route_cfg(cfg_path)
        promoted: dict[str, Any] = {"percent": 0.0, "cohorts": self.allowed}
        try:
            check, event = promote(self.store, cfg, hashes, self.o.route, self.o.arm, self.verdict_path, first,
                                   "tunegate demo", "demo: canary on the gate's verdict")
            promoted |= {"percent": event["to_percent"], "message": check.message}
            msg = (f"promoted {self.o.route}/{self.o.arm} to {event['to_percent']:g}% of the users of "
                   f"{', '.join(self.allowed) if self.allowed else 'every cohort'} ({check.message}); "
                   "the other cohorts stay on the incumbent and are mirrored")
        except UserError as e:
            promoted["refused"] = str(e)
            msg = f"promotion refused ({e}); the candidate gets no traffic, every request is mirrored to it"
        self.result["rollout"] = promoted | {"gateway": self.gateway.url, "config": str(cfg_path),
                                             "release": str(rel_path) if rel_path else None}
        self.emit(f"3 serve   tunegate serve on {self.gateway.base_url} (up in {self.times.wall_s['serve']:.0f}s); {msg}")
        self.emit(f"          wrote {cfg_path}" + (f", {rel_path}" if rel_path else "") + f", log {serve / 'serve.log'}")

    # -- 4. replay + controller -----------------------------------------------------------------
    def replay_requests(self) -> list[ReplayRequest]:
        """Rows the gate never saw: dev, then train, interleaved by cohort, with their references."""
        from tunegate.cli.replay_cmd import build_requests

        path = str(self.o.folder / "dataset.jsonl")
        reqs: list[ReplayRequest] = []
        for split in ("dev", "train"):
            try:
                reqs += interleave(build_requests(path, split, None, 1000, with_reference=True))
            except UserError:   # a split without rows
                continue
        if not reqs:
            raise UserError("no train/dev rows to replay", file=path)
        return [reqs[i % len(reqs)] for i in range(self.o.replay_rows)]

    def replay(self) -> None:
        from tunegate.cli.replay_cmd import run_replay
        from tunegate.store.clock import now
        from tunegate.store.release import latest_seq, rollout_events

        assert self.gateway is not None, "serve first"
        reqs = self.replay_requests()
        lines: list[str] = []
        self._since, seq0 = now(), latest_seq(self.store)   # this run's pairs and events only (the store may hold older ones)
        with self.times.step("replay"):
            stats = asyncio.run(run_replay(self.gateway.base_url, reqs, self.o.rate, model=self.o.route,
                                           every_s=15.0, emit=lambda s: lines.append(s)))
            p50 = [v for v in (stats.to_dict()["arms"].values()) if v["p50_s"] is not None]
            settle = self._settle(max(3.0, 2.0 * max((v["p50_s"] for v in p50), default=0.0)))
        st = stats.to_dict()
        events = [e for e in reversed(rollout_events(self.store, self.o.route, limit=200)) if e["seq"] > seq0]
        ctl = [e for e in events if e["actor"] == "release-controller"]
        pairs = self._pairs()
        live = self._live_status()
        self.result["replay"] = st | {"settle": settle, "pairs": pairs, "progress": lines, "controller_status": live,
                                      "controller": [{"action": e["action"], "from": e["from_percent"],
                                                      "to": e["to_percent"], "reason": e["reason"]} for e in ctl]}
        arms = ", ".join(f"{a} {v['n']} (p50 {v['p50_s'] or 0:.1f}s)" for a, v in st["arms"].items())
        self.emit(f"4 replay  {st['sent']} train/dev requests at {self.o.rate:g}/s via the openai SDK: {st['ok']} ok, "
                  f"{st['errors']} errors; answered by {arms}; {pairs['scored']} mirrored pairs scored "
                  f"({self.times.wall_s['replay']:.0f}s)")
        if pairs["by_cohort"]:
            self.emit("          mirrored pairs failed (incumbent / candidate of n): " + ", ".join(
                f"{c} {v['base_failed']}/{v['candidate_failed']} of {v['n']}" for c, v in pairs["by_cohort"].items()))
        if ctl:
            for e in ctl:
                self.emit(f"          controller: {e['action']} {e['arm']} {e['from_percent']:g}% → "
                          f"{e['to_percent']:g}%: {e['reason']}")
        view = live or {}
        last = view.get("last_decision") or {}
        if last.get("action") == "hold":
            at = view.get("at_step") or {}
            self.emit(f"          controller: holds at {view.get('percent') or 0:g}% after {at.get('pairs', 0)} pairs and "
                      f"{at.get('requests', 0)} candidate requests at this step: {last.get('reason')}")
        elif not ctl:
            self.emit(f"          controller: no ramp or rollback yet ({self._holding()})")
        self.emit(f"          history: tunegate rollout history --route {self.o.route}"
                  + (f" --db {self.o.db}" if self.o.db else ""))

    def _live_status(self) -> dict[str, Any] | None:
        """The controller's own view of this route (``GET /v1/rollout``, field ``release``): the
        evidence at the current step and its latest decision with its reason, holds included."""
        assert self.gateway is not None
        try:
            resp = self.gateway.get("/v1/rollout")
            entries = (resp.json().get("release") or []) if resp.status_code == 200 else []
        except Exception:   # a status the gateway cannot give is left out of the printout, not fatal
            return None
        return next((e for e in entries if e.get("route") == self.o.route), None)

    def _pairs(self) -> dict[str, Any]:
        from tunegate.store.online import pair_rows

        rows = pair_rows(self.store, self.o.route, since=self._since)
        scored = [p for p in rows if p["base_failed"] is not None and p["candidate_failed"] is not None]
        by: dict[str, dict[str, int]] = defaultdict(lambda: {"n": 0, "base_failed": 0, "candidate_failed": 0})
        for p in scored:
            c = by[str(p["cohort"] or "-")]
            c["n"] += 1
            c["base_failed"] += int(bool(p["base_failed"]))
            c["candidate_failed"] += int(bool(p["candidate_failed"]))
        return {"stored": len(rows), "scored": len(scored),
                "base_failed": sum(c["base_failed"] for c in by.values()),
                "candidate_failed": sum(c["candidate_failed"] for c in by.values()),
                "by_cohort": {k: dict(v) for k, v in sorted(by.items())}}

    def _settle(self, quiet_s: float) -> dict[str, Any]:
        """Wait (bounded by ``settle_s``) until the shadows the replay caused are answered and scored.

        The controller says so itself (``GET /v1/rollout``: mirror queue and scoring backlog both
        empty, twice in a row 1 s apart, so a request hook still running is not missed). Where the
        gateway cannot say, fall back to no new stored pair for ``quiet_s``."""
        t0 = time.monotonic()
        last, since_new, idle = -1, time.monotonic(), 0
        how = "controller idle"
        while time.monotonic() - t0 < self.o.settle_s:
            live = self._live_status()
            if live is not None and live.get("mirror") is not None:
                busy = live["mirror"].get("queued", 1) + live["scoring"]["pending"]
                idle = idle + 1 if busy == 0 else 0
                if idle >= 2:
                    break
                time.sleep(1.0)
                continue
            how = "no new pair for quiet_s"
            n = self._pairs()["stored"]
            if n != last:
                last, since_new = n, time.monotonic()
            elif n > 0 and time.monotonic() - since_new >= quiet_s:
                break
            time.sleep(0.5)
        time.sleep(1.5)        # one more controller tick on the final evidence
        return {"waited_s": round(time.monotonic() - t0, 1), "how": how, "quiet_s": round(quiet_s, 1)}

    def _holding(self) -> str:
        if self.result.get("rollout", {}).get("percent", 0) <= 0:
            return "nothing was promoted, so there is nothing to ramp; mirrored pairs can still trigger a rollback"
        need = ""
        pol = self.o.folder / "release-policy.yaml"
        if pol.exists():
            from tunegate.core.release_policy import load_release_policy

            rp = load_release_policy(pol)
            step = rp.step_needs(0)
            need = (f"; a ramp from {rp.steps[0].percent:g}% needs {step.min_pairs} pairs, {step.min_requests} "
                    f"candidate requests, {step.min_duration_s:g}s and every ramp_when upper bound within its limit")
        return f"no rollback bound was crossed and the ramp evidence of release-policy.yaml was not complete{need}"

    # -- 5. report ------------------------------------------------------------------------------
    def report(self) -> None:
        assert self.gateway is not None and self.verdict_path is not None
        with self.times.step("report"):
            resp = self.gateway.get("/dashboard")
            dash = self.o.out / "dashboard.html"
            if resp.status_code != 200:
                raise UserError(f"GET /dashboard answered {resp.status_code}: {resp.text[:200]}", field="dashboard")
            dash.write_text(resp.text, encoding="utf-8")
        self.result["report"] = {"report_html": str(self.verdict_path.parent / "report.html"), "dashboard": str(dash)}
        self.emit(f"5 report  gate report {self.verdict_path.parent / 'report.html'}")
        self.emit(f"          rollout dashboard {dash} (live at {self.gateway.url}/dashboard while serving)")

    # -- all ------------------------------------------------------------------------------------
    def prepare_models(self) -> None:
        """Download/convert the embedded model once (first use only), before any step needs it."""
        from tunegate.backends.models import resolve_model
        from tunegate.core.candidate import load_candidate

        with self.times.step("model"):
            for name in ("incumbent.yaml", "candidate.yaml"):
                if (self.o.folder / name).exists():
                    spec = load_candidate(self.o.folder / name)
                    if spec.backend == "local":
                        resolve_model(spec.model)

    def run(self, prepare: Callable[[], None] | None = None) -> dict[str, Any]:
        """Every step in order; ``prepare`` wraps :meth:`prepare_models` (e.g. with a spinner)."""
        t0, cpu0 = time.perf_counter(), tree_cpu_s()
        load0 = os.getloadavg()
        (prepare or self.prepare_models)()
        self.plan_tune()
        self.tune()
        try:
            self.gate()
        except UserError as e:   # the gate refused to decide (e.g. every row of a scoped rule excluded)
            self.result["gate"] = {"decision": None, "error": str(e)}
            self.emit(f"2 gate    no verdict: {e}")
            self.emit("          without a verdict nothing can be promoted; the serve, replay and dashboard "
                      "steps are skipped")
        else:
            with ExitStack() as stack:
                self.rollout(stack)
                self.replay()
                self.report()
                with self.times.step("stop"):
                    assert self.gateway is not None
                    self.gateway.stop()
        self.result["wall_s"] = self.times.wall_s | {"total": round(time.perf_counter() - t0, 2)}
        self.result["cpu_s"] = self.times.cpu_s | {"total": round(tree_cpu_s() - cpu0, 2)}
        self.result["loadavg"] = {"start": [round(x, 2) for x in load0],
                                  "end": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}
        path = self.o.out / "demo.json"
        path.write_text(json.dumps(self.result, indent=2, default=str) + "\n", encoding="utf-8")
        self.result["path"] = str(path)
        return self.result
