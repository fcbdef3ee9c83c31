"""The forgetting probe in the reports: a ``### Forgetting probe`` section of summary.md and the
per-cohort deltas in junit.xml.

Rendered from ``verdict.json["forgetting"]`` (``ForgettingResult.to_dict()``), so a report can be
rebuilt from a stored verdict alone. Shown whenever the policy has a forgetting section — also
when the probe could not be evaluated, because a reader must see that the check did not run.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

__all__ = ["forgetting_junit", "forgetting_lines", "forgetting_section"]


def _pt(x: float | None, signed: bool = True) -> str:
    if x is None:
        return "—"
    return f"{x * 100:+.1f} pt" if signed else f"{x * 100:.1f}%"


def _ci(c: dict[str, Any]) -> str:
    lo, hi = c.get("ci_low"), c.get("ci_high")
    return "—" if lo is None or hi is None else f"[{lo * 100:+.1f}, {hi * 100:+.1f}]"


def _label(cohort: str) -> str:
    return "**all rows**" if cohort == "*" else cohort


def _settings(info: dict[str, Any]) -> str:
    s = info.get("settings") or {}
    rule = s.get("rule", "non_inferior")
    what = f"{rule} (margin {s.get('margin'):g})" if rule == "non_inferior" and s.get("margin") is not None else rule
    extra = f"; prompt {s.get('prompt', 'candidate')}"
    if s.get("max_tokens") is not None:
        extra += f"; max_tokens {s['max_tokens']}"
    return f"rule {what}{extra}"


def forgetting_section(info: dict[str, Any] | None) -> list[str]:
    """Markdown lines (empty when the policy has no forgetting section)."""
    if not info:
        return []
    lines = [f"### Forgetting probe `{info.get('probe')}`", ""]
    if not info.get("evaluable"):
        lines += [f"**Not evaluable**: {info.get('reason') or 'no probe comparison'}. The `forgetting` rule is "
                  "undecided, so the verdict cannot be PROMOTE.", ""]
        return lines
    reused = info.get("reused_runs") or {}

    def run(side: str) -> str:
        return f"`{info.get(f'{side}_run')}`" + (" (reused)" if reused.get(side) else "")

    lines += [f"Per-row probe score = mean of the evaluators that apply to the row; {_settings(info)}. "
              f"Runs: baseline {run('baseline')}, candidate {run('candidate')}; probe dataset "
              f"`{str(info.get('dataset_hash'))[:19]}`.", "",
              "| cohort | pairs | baseline | candidate | Δ | 95% CI of Δ (pt) |", "|---|---|---|---|---|---|"]
    for c in info.get("cohorts", []):
        mark = " ⬇" if c.get("ci_high") is not None and c["ci_high"] < 0 else ""
        lines.append(f"| {_label(c['cohort'])} | {c['n_pairs']} | {_pt(c.get('base_mean'), False)} | "
                     f"{_pt(c.get('cand_mean'), False)} | {_pt(c.get('delta'))}{mark} | {_ci(c)} |")
    evs = info.get("evaluators") or []
    if evs:
        lines += ["", "| probe evaluator | pairs | baseline | candidate | Δ |", "|---|---|---|---|---|"]
        lines += [f"| {c['evaluator']} | {c['n_pairs']} | {_pt(c.get('base_mean'), False)} | "
                  f"{_pt(c.get('cand_mean'), False)} | {_pt(c.get('delta'))} |" for c in evs]
    errored = info.get("errored") or {}
    if errored.get("baseline") or errored.get("candidate"):
        lines += ["", f"Probe rows errored: baseline {len(errored.get('baseline', []))}, candidate "
                      f"{len(errored.get('candidate', []))} (left out of the pairs)."]
    return [*lines, ""]


def forgetting_lines(info: dict[str, Any] | None) -> list[str]:
    """Plain-text per-cohort deltas (for junit.xml and terminals)."""
    if not info:
        return []
    if not info.get("evaluable"):
        return [f"probe {info.get('probe')} not evaluable: {info.get('reason')}"]
    out = [f"probe {info.get('probe')}: {_settings(info)}"]
    for c in info.get("cohorts", []):
        name = "all rows" if c["cohort"] == "*" else c["cohort"]
        out.append(f"{name}: baseline {_pt(c.get('base_mean'), False)}, candidate {_pt(c.get('cand_mean'), False)}, "
                   f"delta {_pt(c.get('delta'))} {_ci(c)} n={c['n_pairs']}")
    return out


def forgetting_junit(suite: ET.Element, info: dict[str, Any] | None, rule_name: str = "forgetting") -> None:
    """Add the probe's per-cohort deltas to the ``forgetting`` test case and the suite properties."""
    if not info:
        return
    props = suite.find("properties")
    if props is not None:
        ET.SubElement(props, "property", name="forgetting_probe", value=str(info.get("probe")))
        for c in info.get("cohorts", []):
            name = "all" if c["cohort"] == "*" else c["cohort"]
            ET.SubElement(props, "property", name=f"forgetting_delta.{name}",
                          value="" if c.get("delta") is None else f"{c['delta']:.6f}")
    case = next((t for t in suite.iter("testcase") if t.get("name") == rule_name), None)
    if case is not None:
        out = case.find("system-out")
        text = "\n".join(forgetting_lines(info))
        if out is None:
            ET.SubElement(case, "system-out").text = text
        else:
            out.text = f"{out.text or ''}\n{text}"
