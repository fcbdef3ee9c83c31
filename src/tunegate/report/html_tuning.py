"""Tuning panels of the HTML report, built from the artifacts the tuning commands already write.

Nothing here re-runs anything; a panel appears only when its artifact exists:

* ``history.json`` (``tune prompt``, ``loop`` rounds, ``demo``: beside the ``gate/`` folder) →
  optimizer score against metric calls, every proposal with its status and reason, every rejected
  reflection reply;
* ``tunegate-manifest.json`` (``tune lora|dpo|soft-prompt``; in ``lora/`` beside ``gate/`` for a loop
  round, or reached through the candidate's stored lineage) → LoRA loss curve from the newest
  ``checkpoints/checkpoint-N/trainer_state.json`` (the HF Trainer's ``log_history``), training
  figures, and for DPO the preference-data checks re-run on the recorded preference file;
* ``verdict["forgetting"]`` and ``verdict["contamination"]`` → forgetting probe per cohort and the
  contamination guard's findings (these come with every gate that ran them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from tunegate.report.html_svg import Series, forest_plot, line_chart

__all__ = ["find_artifacts", "tuning_panels"]

_MANIFEST = "tunegate-manifest.json"


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _same_data(meta: dict[str, Any], dataset_hash: str | None, dataset_source: str | None) -> bool:
    """Whether an artifact was made from the gated dataset (by content hash or by file): a
    history.json left in a parent folder by another job must not be shown as this gate's story.
    Unknown on either side counts as a match (older artifacts carry no hash)."""
    h, src = meta.get("dataset_hash") or meta.get("hash"), meta.get("dataset_source") or meta.get("path")
    if h and dataset_hash and h == dataset_hash:
        return True
    if src and dataset_source and Path(str(src)).resolve() == Path(str(dataset_source)).resolve():
        return True
    return not ((h and dataset_hash) or (src and dataset_source))


def find_artifacts(folder: str | Path | None, lineage: dict[str, Any] | None = None, *,
                   dataset_hash: str | None = None, dataset_source: str | None = None) -> dict[str, Any]:
    """Locate tuning artifacts for a report written into ``folder`` (its parent is where ``tune``
    and ``loop`` put them) and, for an adapter candidate, its manifest ``lineage``. With
    ``dataset_hash``/``dataset_source`` (the gated dataset), artifacts of another dataset are ignored."""
    found: dict[str, Any] = {}
    places = []
    if folder is not None:
        f = Path(folder).resolve()
        places = [f, f.parent]
    for p in places:
        if "history" not in found and (p / "history.json").is_file():
            h = _load(p / "history.json")
            if isinstance(h, dict) and "proposals" in h and \
                    _same_data(h.get("meta") or {}, dataset_hash, dataset_source):
                found["history"] = h
                found["history_path"] = str(p / "history.json")
        for m in (p / _MANIFEST, p / "lora" / _MANIFEST):
            if "manifest" not in found and m.is_file() and isinstance(man := _load(m), dict) and \
                    _same_data(man.get("tuning_data") or {}, dataset_hash, dataset_source):
                found["manifest"], found["manifest_dir"] = man, str(m.parent)
    if "manifest" not in found and lineage and lineage.get("method") and lineage.get("adapter_digest"):
        found["manifest"] = lineage
    if "manifest" in found:
        found["loss"] = _loss_curve(found.get("manifest_dir"))
        prefs = (found["manifest"].get("tuning_data") or {}).get("preferences")
        if isinstance(prefs, dict) and prefs.get("path"):
            found["preferences"] = _preference_checks(prefs)
    return found


def _loss_curve(out_dir: str | None) -> list[tuple[float, float]]:
    """(step, loss) from the newest HF checkpoint's ``trainer_state.json`` (empty when absent)."""
    if not out_dir:
        return []
    ck = Path(out_dir) / "checkpoints"
    states = sorted(ck.glob("checkpoint-*/trainer_state.json"),
                    key=lambda p: int(p.parent.name.rsplit("-", 1)[-1]) if p.parent.name.rsplit("-", 1)[-1].isdigit()
                    else -1)
    state = _load(states[-1]) if states else None
    if not isinstance(state, dict):
        return []
    return [(float(h["step"]), float(h["loss"])) for h in state.get("log_history", [])
            if isinstance(h, dict) and "loss" in h and "step" in h]


def _preference_checks(prefs: dict[str, Any]) -> dict[str, Any]:
    """Re-run ``tunegate data check``'s checks (default thresholds) on the recorded preference file."""
    path = Path(str(prefs["path"]))
    if not path.is_file():
        return {**prefs, "error": f"preference file {path} is not on this machine"}
    try:
        from tunegate.checks.preference_file import load_preferences
        from tunegate.checks.preference_qa import check_preferences

        pf = load_preferences(str(path))
        if prefs.get("digest") and str(prefs["digest"]).split(":")[-1] != pf.sha256.split(":")[-1]:
            return {**prefs, "error": "the preference file changed since training (digest differs)"}
        return {**prefs, "report": check_preferences(pf).to_dict()}
    except Exception as e:  # a report must still be written; the panel says why the checks are missing
        return {**prefs, "error": f"checks could not run: {e}"}


def _table(head: list[str], rows: list[list[Any]], cls: str = "") -> Markup:
    h = "".join(f"<th>{escape(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{escape('—' if c is None else c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return Markup(f'<table class="grid {escape(cls)}"><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>')


def _f(x: Any, nd: int = 3) -> str:
    return "—" if x is None else f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def _history_panel(h: dict[str, Any]) -> Markup:
    props = h.get("proposals") or []
    meta = h.get("meta") or {}
    curve = [(float(x), float(y)) for x, y in h.get("curve") or []]
    spent = (meta.get("spent") or {}).get("metric_calls")
    if curve and spent and spent > curve[-1][0]:
        curve.append((float(spent), curve[-1][1]))
    acc = [p for p in props if p.get("status") == "accepted" and p.get("dev_mean") is not None]
    rej = [p for p in props if p.get("status") == "rejected"]
    rej_pts = []
    for p in rej:
        y = p.get("dev_mean")
        if y is None:
            mb = p.get("minibatch") or {}
            y = mb.get("child_mean", mb.get("child"))
            y = y if isinstance(y, (int, float)) else None
        if y is not None:
            rej_pts.append((float(p.get("calls_at", 0)), float(y), p))
    series = [Series("best dev score so far", curve, "#0969da", "step")]
    if acc:
        series.append(Series("accepted", [(float(p["calls_at"]), float(p["dev_mean"])) for p in acc], "#1a7f37",
                             "points", tips=[f"{p['id']} ({p.get('operator')}): dev {p['dev_mean']:.3f}" for p in acc]))
    if rej_pts:
        series.append(Series("rejected", [(x, y) for x, y, _ in rej_pts], "#cf222e", "points", marker="cross",
                             tips=[f"{p['id']} ({p.get('operator')}) rejected: {p.get('reason', '')}"[:300]
                                   for _, _, p in rej_pts]))
    budget = ((meta.get("config") or {}).get("budget") or {}).get("metric_calls")
    seed = props[0].get("dev_mean") if props else None
    chart = line_chart(series, title=f"{(meta.get('config') or {}).get('method', 'optimizer')}: dev objective "
                       "against metric calls", x_label="metric calls spent", y_label="dev objective",
                       vlines=[(float(budget), f"budget {budget} calls")] if budget else [],
                       hlines=[(float(seed), f"seed {seed:.3f}")] if seed is not None else [])
    rows = [[p.get("id"), p.get("operator"), p.get("status"), p.get("calls_at"), _f(p.get("dev_mean")),
             ", ".join(p.get("parents") or []), (p.get("reason") or "")[:400]] for p in props]
    rejections = [[r.get("operator"), r.get("parent"), r.get("calls_at"), r.get("reason"),
                   (r.get("raw") or "")[:300]] for r in h.get("rejections") or []]
    parts = [chart, Markup(f"<h4>Proposals ({len(props)})</h4>"),
             _table(["id", "operator", "status", "calls", "dev", "parents", "reason"], rows, "proposals")]
    if rejections:
        parts += [Markup(f"<h4>Rejected reflection replies ({len(rejections)})</h4>"),
                  _table(["operator", "parent", "calls", "reason", "reply (start)"], rejections, "rejections")]
    return Markup("").join(parts)


def _manifest_panel(m: dict[str, Any], loss: list[tuple[float, float]]) -> Markup:
    met = m.get("metrics") or {}
    td = m.get("tuning_data") or {}
    parts = []
    if loss:
        parts.append(line_chart([Series("training loss", loss, "#8250df", "line")],
                                title=f"{m.get('method', 'adapter')} training loss", x_label="step",
                                y_label="loss"))
    else:
        parts.append(Markup('<p class="muted">No per-step loss log found (the checkpoints folder is gone); '
                            "first and final loss are below.</p>"))
    rows: list[list[Any]] = [["method", m.get("method")], ["base model", (m.get("base_model") or {}).get("ref")],
            ["train rows", td.get("rows")], ["steps", f"{met.get('steps')} of {met.get('planned_steps')}"],
            ["loss first → final", f"{_f(met.get('first_loss'))} → {_f(met.get('final_loss'))}"],
            ["tokens/s", met.get("tokens_per_s")], ["peak RSS MB", met.get("peak_rss_mb")],
            ["config hash", m.get("config_hash")], ["adapter digest", m.get("adapter_digest")]]
    parts.append(_table(["", ""], rows, "kv"))
    return Markup("").join(parts)


def _forgetting_panel(fg: dict[str, Any]) -> Markup:
    if not fg.get("evaluable"):
        return Markup(f'<p class="warn">Forgetting probe <code>{escape(fg.get("probe"))}</code> not evaluable: '
                      f'{escape(fg.get("reason") or "no comparison")} — its rule is undecided.</p>')
    rows = [{"evaluator": "all rows" if c.get("cohort") == "*" else c.get("cohort"), "delta": c.get("delta"),
             "ci_low": c.get("ci_low"), "ci_high": c.get("ci_high"), "n": c.get("n_pairs"), "status": None,
             "thresholds": []} for c in fg.get("cohorts") or []]
    s = fg.get("settings") or {}
    if s.get("margin") is not None:
        for r in rows:
            r["thresholds"] = [(-float(s["margin"]), f"non-inferiority margin −{s['margin']}", None)]
    return Markup(f"<p>Probe <code>{escape(fg.get('probe'))}</code>, rule {escape(s.get('rule'))}; runs "
                  f"{escape(fg.get('baseline_run'))} vs {escape(fg.get('candidate_run'))}.</p>") + forest_plot(rows)


def _contamination_panel(ct: dict[str, Any]) -> Markup:
    rows = ct.get("rows") or []
    head = (f"<p>Status <b>{escape(ct.get('status'))}</b>: {len(rows)} of {escape(ct.get('gated_rows'))} gated "
            f"rows overlap the candidate's tuning data; "
            f"{'excluded from the comparison' if ct.get('excluded') else 'kept (allow_contaminated)'}.</p>")
    warn = "".join(f'<p class="warn">{escape(w)}</p>' for w in ct.get("warnings") or [])
    table = _table(["row", "how", "detail"], [[r.get("id"), r.get("method") or r.get("kind"),
                                              json.dumps({k: v for k, v in r.items() if k != "id"})[:300]]
                                             for r in rows[:200]]) if rows else Markup("")
    return Markup(head + warn) + table


def _preferences_panel(p: dict[str, Any]) -> Markup:
    head = Markup(f"<p>Preference file <code>{escape(p.get('path'))}</code>, {escape(p.get('pairs'))} pairs.</p>")
    if p.get("error"):
        return head + Markup(f'<p class="warn">{escape(p["error"])}</p>')
    rep = p.get("report") or {}
    rows = [[c.get("name"), c.get("status"), c.get("value"), c.get("threshold"), c.get("detail")]
            for c in rep.get("checks") or []]
    return head + _table(["check", "status", "value", "threshold", "detail"], rows, "prefchecks")


def tuning_panels(verdict: dict[str, Any], artifacts: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{"id", "title", "html"}]`` for every panel whose artifact exists."""
    out = []
    if artifacts.get("history"):
        out.append({"id": "optimizer", "title": "Prompt optimizer: score against calls",
                    "html": _history_panel(artifacts["history"])})
    if artifacts.get("manifest"):
        out.append({"id": "training", "title": "Adapter training",
                    "html": _manifest_panel(artifacts["manifest"], artifacts.get("loss") or [])})
    if artifacts.get("preferences"):
        out.append({"id": "preferences", "title": "Preference-data checks",
                    "html": _preferences_panel(artifacts["preferences"])})
    if verdict.get("forgetting"):
        out.append({"id": "forgetting", "title": "Forgetting probe per cohort",
                    "html": _forgetting_panel(verdict["forgetting"])})
    ct = verdict.get("contamination")
    if ct and (ct.get("rows") or ct.get("warnings") or ct.get("sources")):
        out.append({"id": "contamination", "title": "Contamination guard", "html": _contamination_panel(ct)})
    return out
