"""``tunegate data contamination`` and ``tunegate data check``: data QA before tuning or gating.

Registered on the ``data`` group by :mod:`tunegate.cli.data_cmd`. Exit codes: 0 clean / all checks
pass, 1 overlap found / a check failed, 2 bad input (file:line:field).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from tunegate.cli import common
from tunegate.errors import UserError

if TYPE_CHECKING:
    from tunegate.checks.contamination import ContaminationReport
    from tunegate.checks.textrows import TextRows

__all__ = ["register"]

_SPLITS = ("train", "dev", "test")


def _csv(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise UserError(f"{what} must be a comma-separated list", field=f"--{what}")
    return items


@click.command("contamination")
@click.argument("train", type=click.Path(dir_okay=False))
@click.argument("evals", metavar="EVAL...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--ngram", type=click.IntRange(1, 64), default=13, show_default=True, help="Word n-gram length.")
@click.option("--min-ngram", type=click.IntRange(1, 64), default=8, show_default=True,
              help="A field of this many words (up to --ngram) counts when it appears whole in the other row.")
@click.option("--jaccard", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.8, show_default=True,
              help="MinHash threshold on the estimated Jaccard of character 5-shingles.")
@click.option("--fields", default="input,expected", show_default=True,
              help="Text of a row: input, expected, context (aliases in plain JSONL files) or literal keys.")
@click.option("--methods", default="exact,ngram,minhash", show_default=True, help="Detectors to run.")
@click.option("--split", type=click.Choice(_SPLITS), default=None,
              help="Use only this split of TRAIN (a golden dataset); an EVAL that is the same file is "
                   "checked on its other splits.")
@click.option("--any-field", is_flag=True,
              help="Count overlaps confined to answers/context too (default: an overlap must involve the input).")
@click.option("--template-share", type=click.FloatRange(0.0, 1.0), default=0.1, show_default=True,
              help="Text that this share of the eval rows (and at least 5) shares is the dataset's template "
                   "(a task instruction), not a leak; 0 turns this off.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write one JSON line per overlapping row.")
@click.option("--show", type=int, default=30, show_default=True, help="Rows listed in the table.")
def contamination_command(train: str, evals: tuple[str, ...], ngram: int, min_ngram: int, jaccard: float,
                          fields: str, methods: str, split: str | None, any_field: bool, template_share: float,
                          as_json: bool, out: str | None, show: int) -> int:
    """Eval rows that overlap TRAIN rows (exact / 13-gram / MinHash); exit 1 when any is found.

    \b
    tunegate data contamination tuning.jsonl golden.jsonl gsm8k_test.jsonl
    tunegate data contamination examples/support/dataset.jsonl examples/support/dataset.jsonl --split train
    """
    from tunegate.checks.contamination import check_contamination
    from tunegate.checks.textrows import load_text_rows

    field_list = _csv(fields, "fields") or []
    method_list = _csv(methods, "methods") or []
    if min_ngram > ngram:
        raise UserError(f"--min-ngram ({min_ngram}) must not exceed --ngram ({ngram})", field="--min-ngram")
    train_rows = load_text_rows(train, field_list, splits=[split] if split else None)
    eval_sets = []
    for path in evals:
        same = Path(path).resolve() == Path(train).resolve()
        if same and not split:
            raise UserError("TRAIN and EVAL are the same file: every row would match itself; give --split train "
                            "to check the train split against the dev/test rows", file=path, field="EVAL")
        others = [s for s in _SPLITS if s != split] if same else None
        eval_sets.append(load_text_rows(path, field_list, splits=others))
    stages = {"normalising": 0, "exact match": 1, "n-grams": 2, "minhash": 3}
    with common.progress_bar("contamination", 4) as bar:
        def hook(stage: str, done: int, total: int) -> None:
            bar(stages.get(stage, 0) + done / max(total, 1), 4)

        report = check_contamination(train_rows, eval_sets, ngram=ngram, min_ngram=min_ngram, jaccard=jaccard,
                                     fields=field_list, methods=method_list, anchor_input=not any_field,
                                     template_share=template_share or None, progress=hook)
        bar(4, 4)
    if out:
        stamp = {"tunegate_version": report.params["tunegate_version"], "train": train,
                 "train_hash": train_rows.hash, "ngram": ngram, "min_ngram": min_ngram, "jaccard": jaccard}
        with Path(out).open("w", encoding="utf-8") as fh:
            for r in report.rows:
                fh.write(json.dumps({**r.to_dict(), "check": stamp}, ensure_ascii=False) + "\n")
    if as_json:
        common.print_json(report.to_dict())
    else:
        _print_contamination(report, train_rows, show, out)
    return 0 if report.clean else 1


def _print_contamination(report: ContaminationReport, train_rows: TextRows, show: int, out: str | None) -> None:
    con = common.out_console()
    con.print(f"[bold]train[/] {common.escape(train_rows.source)}: {len(train_rows)} rows · "
              f"fields {', '.join(train_rows.fields)} · {train_rows.hash}")
    t = Table(title="overlap per eval file", header_style="bold", show_edge=False)
    for col in ("eval file", "split", "rows", "contaminated", "exact", "ngram", "minhash", "fields"):
        t.add_column(col, justify="right" if col in ("rows", "contaminated", "exact", "ngram", "minhash") else "left")
    for s in report.summary:
        style = "red" if s.contaminated else "green"
        t.add_row(common.escape(s.source), s.split or "—", str(s.rows), f"[{style}]{s.contaminated}[/]",
                  *(str(s.by_method.get(m, 0)) for m in ("exact", "ngram", "minhash")),
                  ", ".join(s.fields) + (f" ({s.empty} empty)" if s.empty else ""))
    con.print(t)
    if report.rows:
        t = Table(title=f"overlapping rows (first {min(show, len(report.rows))} of {len(report.rows)})",
                  header_style="bold", show_edge=False)
        for col in ("eval file", "eval id", "method", "score", "train id(s)", "first shared span"):
            t.add_column(col, overflow="fold")
        for r in report.rows[:show]:
            ids = ", ".join(r.train_ids[:3]) + (f" +{r.n_matches - 3}" if r.n_matches > 3 else "")
            t.add_row(common.escape(Path(r.eval_source).name), common.escape(r.eval_id), r.method,
                      f"{r.score:.2f}", common.escape(ids), common.escape(r.span[:90]))
        con.print(t)
    p = report.params
    con.print(f"[dim]exact + {p['ngram']}-gram (whole fields of ≥{p['min_ngram']} words) + MinHash "
              f"{p['num_perm']} perm, char {p['shingle_chars']}-shingles, J ≥ {p['jaccard']} "
              f"(LSH {p['lsh_bands_rows'] and '×'.join(map(str, p['lsh_bands_rows']))}) · "
              f"{report.elapsed_s:.1f}s[/]")
    verdict = "[green]clean[/]" if report.clean else f"[red]{len(report.rows)} eval row(s) overlap the train rows[/]"
    con.print(verdict + (f" · written to {common.escape(out)}" if out and report.rows else ""))


@click.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--min-kappa", type=click.FloatRange(-1, 1), default=0.85, show_default=True,
              help="Lowest Cohen's κ allowed for any reviewer pair.")
@click.option("--min-shared", type=click.IntRange(1), default=20, show_default=True,
              help="Items two reviewers must share for their κ to count.")
@click.option("--require-reviews/--no-require-reviews", default=True, show_default=True,
              help="Fail when no reviewer pair has enough shared items.")
@click.option("--min-sources", type=click.IntRange(1), default=5, show_default=True, help="Distinct sources required.")
@click.option("--max-source-share", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="Largest share of rows one source may have.")
@click.option("--min-margin-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of rows that must carry a margin.")
@click.option("--min-safety-share", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Share of safety pairs (safe chosen vs unsafe rejected) required.")
@click.option("--min-quality-share", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Share of quality pairs (good vs mediocre) required.")
@click.option("--max-dup-prompt-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of rows whose prompt repeats an earlier row.")
@click.option("--classify", is_flag=True,
              help="Label rows without pair_type by scoring chosen/rejected with the content_safety evaluator.")
@click.option("--quarantine", type=click.Path(dir_okay=False), default=None,
              help="Write disputed pairs (ties, disagreement, flipped labels) here as JSONL.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check_command(path: str, min_kappa: float, min_shared: int, require_reviews: bool, min_sources: int,
                  max_source_share: float, min_margin_share: float, min_safety_share: float,
                  min_quality_share: float, max_dup_prompt_share: float, classify: bool, quarantine: str | None,
                  as_json: bool) -> int:
    """Validate a DPO preference file (PATH, JSONL) before training: exit 0 all pass, 1 a check fails.

    Format and checks: docs/data-checks.md. Malformed rows exit 2 with file:line:field.
    """
    from tunegate.checks.preference_file import load_preferences
    from tunegate.checks.preference_qa import PrefThresholds, check_preferences, content_safety_classifier

    thresholds = PrefThresholds(min_kappa=min_kappa, min_shared=min_shared, require_reviews=require_reviews,
                                min_sources=min_sources, max_source_share=max_source_share,
                                min_margin_share=min_margin_share, min_safety_share=min_safety_share,
                                min_quality_share=min_quality_share, max_duplicate_prompt_share=max_dup_prompt_share)
    pf = load_preferences(path)
    report = check_preferences(pf, thresholds, classify=content_safety_classifier() if classify else None)
    if quarantine:
        stamp = {"file": pf.path, "sha256": pf.sha256, "tunegate_version": report.to_dict()["tunegate_version"]}
        with Path(quarantine).open("w", encoding="utf-8") as fh:
            for q in report.quarantine:
                fh.write(json.dumps({**q, "check": stamp}, ensure_ascii=False) + "\n")
    if as_json:
        common.print_json({**report.to_dict(), "quarantine_file": quarantine})
        return 0 if report.passed else 1
    con = common.out_console()
    con.print(f"[bold]{common.escape(pf.path)}[/]: {report.rows} pairs · sha256 {pf.sha256[:16]}")
    t = Table(header_style="bold", show_edge=False)
    for col in ("check", "value", "threshold", "status", "detail"):
        t.add_column(col, overflow="fold", justify="right" if col == "value" else "left")
    style = {"PASS": "[green]PASS[/]", "FAIL": "[red]FAIL[/]", "INFO": "[dim]INFO[/]"}
    for c in report.checks:
        t.add_row(c.name, str(c.value), c.threshold, style[c.status], common.escape(c.detail))
    con.print(t)
    for c in report.checks:
        if c.status == "FAIL" and c.where:
            con.print(f"[red]{c.name}[/]: " + common.escape("; ".join(c.where[:5])))
    if quarantine:
        con.print(f"quarantined {len(report.quarantine)} disputed pair(s) → {common.escape(quarantine)}")
    failed = [c.name for c in report.checks if c.status == "FAIL"]
    con.print("[green]all checks pass[/]" if not failed else f"[red]{len(failed)} check(s) failed:[/] "
              + ", ".join(failed))
    return 0 if report.passed else 1


def register(group: click.Group) -> None:
    group.add_command(contamination_command)
    group.add_command(check_command)
