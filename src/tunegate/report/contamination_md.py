"""The ``### Contamination`` section of summary.md: gated rows that overlap the tuning data.

Shown whenever the candidate's lineage names tuning data — also when nothing was found (a reader
must see that the check ran) and when it could not run (missing file, changed hash).
"""

from __future__ import annotations

from typing import Any

__all__ = ["contamination_section"]

_LIMIT = 20


def _cell(text: Any, limit: int = 80) -> str:
    s = " ".join(("" if text is None else str(text)).split())
    s = s if len(s) <= limit else s[: limit - 1] + "…"
    return s.replace("|", "\\|").replace("<", "&lt;")


def contamination_section(info: dict[str, Any] | None) -> list[str]:
    """Markdown lines (empty when the lineage names no tuning data)."""
    if not info or info.get("status") in (None, "not_applicable"):
        return []
    lines = ["### Contamination", ""]
    checked = [s for s in info.get("sources", []) if s.get("status") == "checked"]
    for s in info.get("sources", []):
        lines.append(f"- tuning data `{_cell(s.get('path') or s.get('entry'), 120)}` "
                     f"(split {s.get('split') or '—'}): **{s.get('status')}**"
                     + (f", {s.get('rows_checked')} rows compared on {', '.join(s.get('fields', []))}"
                        if s.get("status") == "checked" else ""))
    for w in info.get("warnings", []):
        lines.append(f"- ⚠️ contamination could not be checked: {_cell(w, 300)}")
    rows = info.get("rows", [])
    if checked and not rows:
        lines.append(f"- ✅ none of the {info.get('gated_rows')} gated rows overlaps the tuning data.")
    if rows:
        action = "**excluded** from the comparison" if info.get("excluded") else \
            "**kept** in the comparison (`--allow-contaminated`)"
        lines += [f"- ⛔ {len(rows)} of {info.get('gated_rows')} gated rows overlap the tuning data and were "
                  f"{action}.", "", "| gated row | method | score | tuning row(s) | first shared span |",
                  "|---|---|---|---|---|"]
        for r in rows[:_LIMIT]:
            ids = ", ".join(r["train_ids"][:3]) + (" …" if len(r["train_ids"]) > 3 else "")
            lines.append(f"| `{_cell(r['id'], 40)}` | {r['method']} | {r['score']:.2f} | {_cell(ids, 60)} | "
                         f"{_cell(r['span'])} |")
        if len(rows) > _LIMIT:
            lines.append(f"\n({len(rows) - _LIMIT} more in verdict.json → `contamination.rows`)")
    p = info.get("params") or {}
    if p:
        lines += ["", f"Method: normalised exact match, {p.get('ngram')}-word n-grams (whole fields of "
                      f"≥{p.get('min_ngram')} words), MinHash J ≥ {p.get('jaccard')}; overlaps anchored on the "
                      f"row's input: {p.get('anchor_input')}."]
    return [*lines, ""]
