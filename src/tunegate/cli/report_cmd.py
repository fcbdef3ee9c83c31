"""``tunegate report``: the self-contained HTML report of stored runs, or a static site of the store."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tunegate.cli import common
from tunegate.errors import UserError

__all__ = ["register"]


def _target(out: str, default_name: str) -> Path:
    p = Path(out)
    return p if p.suffix.lower() in (".html", ".htm") else p / default_name


def _from_folder(folder: Path, out: Path) -> Path:
    from tunegate.report.html import render_report_html
    from tunegate.report.html_tuning import find_artifacts

    vpath, rpath = folder / "verdict.json", folder / "rows.jsonl"
    if not vpath.is_file():
        raise UserError("no verdict.json in this folder (a gate --report-dir folder is expected)", file=str(folder),
                        field="--from-dir")
    try:
        verdict = json.loads(vpath.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"not JSON: {e}", file=str(vpath)) from e
    rows = []
    if rpath.is_file():
        for i, line in enumerate(rpath.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise UserError(f"not JSON: {e}", file=f"{rpath}:{i}") from e
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report_html(verdict, rows, artifacts=find_artifacts(folder)), encoding="utf-8")
    return out


@click.command("report")
@click.argument("baseline_run", required=False)
@click.argument("candidate_run", required=False)
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False), default=None,
              help="Gate policy YAML to decide with (stored runs; no model calls).")
@click.option("-o", "--out", "out", required=True, type=click.Path(),
              help="Output .html file (or a folder: report.html / index.html are written in it).")
@click.option("--index", "index", is_flag=True, help="Write a static site of every run and verdict in the store.")
@click.option("--from-dir", "from_dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Rebuild report.html from a report folder's verdict.json and rows.jsonl.")
@click.option("--limit", type=int, default=200, show_default=True, help="--index: newest verdicts and runs shown.")
@click.option("--allow-contaminated", is_flag=True, help="As for tunegate gate.")
@click.pass_obj
def report_command(obj: common.Context, baseline_run: str | None, candidate_run: str | None, policy_path: str | None,
                   out: str, index: bool, from_dir: str | None, limit: int, allow_contaminated: bool) -> int:
    """Write the HTML gate report (one self-contained file: opens from disk, no network).

    \b
    Stored runs:   tunegate report RUN_A RUN_B --policy P -o out.html   (re-gates; no model calls)
    Whole store:   tunegate report --index -o site/                    (index.html + one page per verdict)
    A folder:      tunegate report --from-dir out/ -o out/report.html  (from verdict.json + rows.jsonl)

    Every `tunegate gate --report-dir`, `tune prompt`, `loop` and `demo` already writes report.html.
    """
    con = common.out_console()
    modes = sum([index, from_dir is not None, baseline_run is not None])
    if modes != 1:
        raise UserError("give RUN_A RUN_B --policy P, or --index, or --from-dir DIR (exactly one)", field="report")
    if from_dir is not None:
        path = _from_folder(Path(from_dir), _target(out, "report.html"))
        con.print(f"report: {path}")
        return 0
    if index:
        from tunegate.report.html_index import write_index

        with obj.store() as store:
            path = write_index(store, Path(out).parent if Path(out).suffix == ".html" else Path(out), limit=limit)
        con.print(f"index: {path}")
        return 0
    if baseline_run is None or candidate_run is None:
        raise UserError("give both RUN_A (baseline) and RUN_B (candidate)", field="CANDIDATE_RUN")
    if policy_path is None:
        raise UserError("--policy P is needed to decide on stored runs", field="--policy")
    from tunegate.core.policy import load_policy
    from tunegate.engine.gate.runs import gate_runs, row_diffs
    from tunegate.report.html import render_report_html, report_context
    from tunegate.report.html_tuning import find_artifacts

    policy = load_policy(policy_path)
    target = _target(out, "report.html")
    with obj.store() as store:
        # record=False: rendering a report is a read; `tunegate gate` is what records verdicts
        res = gate_runs(store, baseline_run, candidate_run, policy, record=False,
                        allow_contaminated=allow_contaminated)
        lineage = (store.candidate(res.paired.candidate.candidate_hash) or {}).get("lineage") or {}
    verdict = json.loads(json.dumps(res.to_dict(), default=str))
    html = render_report_html(verdict, row_diffs(res.paired), context=report_context(res.paired),
                              artifacts=find_artifacts(None, lineage), dataset_rows=res.paired.rows_data)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(html, encoding="utf-8")
    con.print(f"{res.verdict.decision}: report {target}")
    return 0


def register(group: click.Group) -> None:
    group.add_command(report_command)
