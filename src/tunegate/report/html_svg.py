"""Charts of the HTML report, drawn as inline SVG on the server (no charting library, no script).

Why server-side SVG (docs/decisions/0005-report-charts.md): the report must open from disk with no
network and stay fast at 10,000 rows. A forest plot, a heatmap and a few line charts are a few
kilobytes of SVG we control completely, render before any script runs, print, and scale; an
inlined Plotly bundle alone is ~3.5 MB and has to boot before a chart appears.

Every function returns :class:`markupsafe.Markup` built from escaped text: labels, titles and
tooltips come from evaluator, cohort and proposal names, which are user data.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from markupsafe import Markup

__all__ = ["Series", "forest_plot", "heatmap_table", "line_chart", "nice_ticks"]

_STATUS_COLOR = {"pass": "#1a7f37", "fail": "#cf222e", "undecided": "#bf8700", "skipped": "#8c959f",
                 None: "#57606a"}


def _e(x: Any) -> str:
    return escape(str(x), quote=True)


def _pt(x: float | None, signed: bool = True) -> str:
    if x is None:
        return "—"
    return f"{x * 100:+.1f}" if signed else f"{x * 100:.1f}"


def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """Round tick values covering [lo, hi] (about ``n`` of them)."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0]
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step + 1e-9) * step
    ticks = [round(start, 10)]
    while ticks[-1] < hi - step * 1e-9:  # the last tick is at or above hi: no point beyond the axis
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def forest_plot(rows: Sequence[dict[str, Any]], *, width: int = 760, level: bool = False) -> Markup:
    """One line per evaluator: paired delta (points) with its CI, and the rule threshold(s) on it.

    ``rows``: ``{"evaluator", "delta", "ci_low", "ci_high", "n", "status", "thresholds": [(value,
    label, status)]}`` with deltas as fractions; drawn in percentage points. ``level=True`` draws
    levels instead of deltas (a floor rule's candidate mean against its minimum): same geometry,
    unsigned values, no zero line, its own class (``svg.floors``) and titles.
    """
    if not rows:
        return Markup('<p class="muted">No evaluator has paired scores.</p>')
    signed = not level
    row_h, top, bottom, left, right = 34, 28, 34, 190, 200
    h = top + bottom + row_h * len(rows)
    vals: list[float] = [] if level else [0.0]
    for r in rows:
        vals += [v for v in (r.get("delta"), r.get("ci_low"), r.get("ci_high")) if v is not None]
        vals += [t[0] for t in r.get("thresholds", []) if t[0] is not None]
    lo, hi = min(vals) * 100, max(vals) * 100
    pad = max((hi - lo) * 0.08, 1.0)
    ticks = nice_ticks(lo - pad, hi + pad)
    x0, x1 = ticks[0], ticks[-1]
    plot_w = width - left - right

    def sx(v: float) -> float:
        return left + (v * 100 - x0) / (x1 - x0) * plot_w

    kind, what = ("floors", "Candidate mean by evaluator with 95% CI") if level else \
        ("forest", "Paired delta by evaluator with 95% CI")
    out = [f'<svg class="chart {kind}" role="img" viewBox="0 0 {width} {h}" width="{width}" height="{h}" '
           f'xmlns="http://www.w3.org/2000/svg"><title>{what}</title>']
    for t in ticks:
        x = left + (t - x0) / (x1 - x0) * plot_w
        label = f"{t:+g}" if signed else f"{t:g}"
        out.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{h - bottom}" class="grid"/>'
                   f'<text x="{x:.1f}" y="{h - bottom + 16}" class="tick" text-anchor="middle">{label}</text>')
    if signed:
        zx = sx(0.0)
        out.append(f'<line x1="{zx:.1f}" y1="{top - 6}" x2="{zx:.1f}" y2="{h - bottom}" class="zero"/>')
    axis = "candidate mean (%), 95% CI" if level else "Δ candidate − baseline (percentage points), 95% CI"
    out.append(f'<text x="{left + plot_w / 2:.0f}" y="{h - 4}" class="axis" text-anchor="middle">{axis}</text>')
    out.append(f'<text x="{left + plot_w + 10}" y="{top - 10}" class="axis">'
               f'{"mean" if level else "Δ"} [95% CI] · n</text>')
    for i, r in enumerate(rows):
        y = top + row_h * i + row_h / 2
        color = _STATUS_COLOR.get(r.get("status"), _STATUS_COLOR[None])
        out.append(f'<g class="forest-row" data-evaluator="{_e(r["evaluator"])}">')
        out.append(f'<text x="{left - 10}" y="{y + 4:.1f}" text-anchor="end" class="label">{_e(r["evaluator"])}</text>')
        for val, label, st in r.get("thresholds", []):
            if val is None:
                continue
            tx = sx(val)
            tc = _STATUS_COLOR.get(st, _STATUS_COLOR[None])
            out.append(f'<line x1="{tx:.1f}" y1="{y - 13:.1f}" x2="{tx:.1f}" y2="{y + 13:.1f}" class="threshold" '
                       f'stroke="{tc}"><title>{_e(label)}</title></line>')
        d, lo_, hi_ = r.get("delta"), r.get("ci_low"), r.get("ci_high")
        tip = (f"{r['evaluator']}: {'mean' if level else 'Δ'} {_pt(d, signed)}{'%' if level else ' pt'}, "
               f"95% CI [{_pt(lo_, signed)}, {_pt(hi_, signed)}], n={r.get('n')}")
        if lo_ is not None and hi_ is not None:
            out.append(f'<line x1="{sx(lo_):.1f}" y1="{y:.1f}" x2="{sx(hi_):.1f}" y2="{y:.1f}" class="ci" '
                       f'stroke="{color}"/>')
            for v in (lo_, hi_):
                out.append(f'<line x1="{sx(v):.1f}" y1="{y - 5:.1f}" x2="{sx(v):.1f}" y2="{y + 5:.1f}" '
                           f'class="ci" stroke="{color}"/>')
        if d is not None:
            out.append(f'<circle cx="{sx(d):.1f}" cy="{y:.1f}" r="5.5" fill="{color}"><title>{_e(tip)}</title>'
                       '</circle>')
        out.append(f'<text x="{left + plot_w + 10}" y="{y + 4:.1f}" class="value">{_pt(d, signed)} '
                   f'[{_pt(lo_, signed)}, {_pt(hi_, signed)}] · {_e(r.get("n", "—"))}</text></g>')
    out.append("</svg>")
    return Markup("".join(out))


def _cell_color(delta: float | None, scale: float, strong: bool) -> str:
    if delta is None:
        return "transparent"
    a = min(abs(delta) / scale, 1.0) if scale > 0 else 0.0
    a = 0.15 + 0.75 * a if strong else 0.06 + 0.3 * a
    rgb = "33,102,172" if delta > 0 else "178,24,43"
    return f"rgba({rgb},{a:.2f})"


def heatmap_table(cohorts: Sequence[str], sizes: dict[str, int], evaluators: Sequence[str],
                  cells: dict[tuple[str, str], dict[str, Any]], *, alpha: float, min_rows: int) -> Markup:
    """Cohort × evaluator table of deltas: exactly one ``td.hm-cell`` per pair.

    Significant after correction (``p_adjusted < alpha``): strong colour and ▲/▼. Cohorts with fewer
    than ``min_rows`` pairs: hatched, labelled ``n < min``, never coloured as a finding.
    """
    deltas = [abs(c["delta"]) for c in cells.values() if c.get("delta") is not None]
    scale = max(max(deltas, default=0.0), 0.05)
    out = ['<table class="heatmap"><thead><tr><th scope="col">cohort</th><th scope="col">rows</th>']
    out += [f'<th scope="col">{_e(e)}</th>' for e in evaluators]
    out.append("</tr></thead><tbody>")
    for co in cohorts:
        out.append(f'<tr><th scope="row">{_e(co)}</th><td class="num">{sizes.get(co, 0)}</td>')
        for ev in evaluators:
            c = cells.get((co, ev)) or {}
            d, n = c.get("delta"), c.get("n_pairs") or 0
            p = c.get("p_adjusted")
            attrs = f'data-cohort="{_e(co)}" data-evaluator="{_e(ev)}"'
            tip = (f"{co} × {ev}: Δ {_pt(d)} pt [{_pt(c.get('ci_low'))}, {_pt(c.get('ci_high'))}], n={n}, "
                   f"p adj {'—' if p is None else f'{p:.3g}'}")
            if d is None:
                out.append(f'<td class="hm-cell na" {attrs} title="{_e(tip)}">—</td>')
            elif n < min_rows:
                out.append(f'<td class="hm-cell small" {attrs} title="{_e(tip + f" (below min_rows {min_rows})")}">'
                           f'{_pt(d)}<small>n={n} &lt; {min_rows}</small></td>')
            else:
                sig = p is not None and p < alpha
                mark = ("▲" if d > 0 else "▼") if sig else ""
                cls = ("sig-up" if d > 0 else "sig-down") if sig else "ns"
                out.append(f'<td class="hm-cell {cls}" {attrs} title="{_e(tip)}" '
                           f'style="background:{_cell_color(d, scale, sig)}">{mark}{_pt(d)}<small>n={n}</small></td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    return Markup("".join(out))


@dataclass
class Series:
    """One line (or set of markers) of a :func:`line_chart`.

    ``kind``: ``line``, ``step`` (post) or ``points``; ``band``: optional (x, low, high) for a shaded
    interval; ``tips``: optional tooltip per point; ``marker``: ``circle`` or ``cross``.
    """

    name: str
    points: list[tuple[float, float]]
    color: str = "#0969da"
    kind: str = "line"
    band: list[tuple[float, float, float]] = field(default_factory=list)
    tips: list[str] = field(default_factory=list)
    marker: str = "circle"
    dashed: bool = False


def line_chart(series: Sequence[Series], *, title: str, x_label: str, y_label: str, width: int = 720,
               height: int = 300, vlines: Sequence[tuple[float, str]] = (),
               hlines: Sequence[tuple[float, str]] = (), y_range: tuple[float, float] | None = None) -> Markup:
    """A small x/y chart with a legend; every point carries a ``<title>`` tooltip."""
    xs = [x for s in series for x, _ in s.points] + [b[0] for s in series for b in s.band] + [v for v, _ in vlines]
    ys = [y for s in series for _, y in s.points] + [v for s in series for b in s.band for v in b[1:]]
    ys += [v for v, _ in hlines]
    if not xs or not ys:
        return Markup(f'<p class="muted">{_e(title)}: no data points.</p>')
    left, right, top, bottom = 56, 16, 30, 62
    xt = nice_ticks(min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1)
    yt = nice_ticks(*(y_range or (min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1)), n=5)
    pw, ph = width - left - right, height - top - bottom

    def sx(v: float) -> float:
        return left + (v - xt[0]) / ((xt[-1] - xt[0]) or 1) * pw

    def sy(v: float) -> float:
        return top + ph - (v - yt[0]) / ((yt[-1] - yt[0]) or 1) * ph

    o = [f'<svg class="chart line" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
         f'xmlns="http://www.w3.org/2000/svg"><title>{_e(title)}</title>'
         f'<text x="{left}" y="16" class="ctitle">{_e(title)}</text>']
    for t in xt:
        o.append(f'<line x1="{sx(t):.1f}" y1="{top}" x2="{sx(t):.1f}" y2="{top + ph}" class="grid"/>'
                 f'<text x="{sx(t):.1f}" y="{top + ph + 15}" class="tick" text-anchor="middle">{t:g}</text>')
    for t in yt:
        o.append(f'<line x1="{left}" y1="{sy(t):.1f}" x2="{left + pw}" y2="{sy(t):.1f}" class="grid"/>'
                 f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" class="tick" text-anchor="end">{t:g}</text>')
    o.append(f'<text x="{left + pw / 2:.0f}" y="{top + ph + 32}" class="axis" text-anchor="middle">{_e(x_label)}</text>'
             f'<text transform="translate(14,{top + ph / 2:.0f}) rotate(-90)" class="axis" text-anchor="middle">'
             f'{_e(y_label)}</text>')
    for v, label in vlines:
        o.append(f'<line x1="{sx(v):.1f}" y1="{top}" x2="{sx(v):.1f}" y2="{top + ph}" class="vline">'
                 f'<title>{_e(label)}</title></line>')
    for v, label in hlines:
        o.append(f'<line x1="{left}" y1="{sy(v):.1f}" x2="{left + pw}" y2="{sy(v):.1f}" class="hline">'
                 f'<title>{_e(label)}</title></line>')
    for s in series:
        if s.band:
            up = " ".join(f"{sx(x):.1f},{sy(hi):.1f}" for x, _, hi in s.band)
            dn = " ".join(f"{sx(x):.1f},{sy(lo):.1f}" for x, lo, _ in reversed(s.band))
            o.append(f'<polygon points="{up} {dn}" fill="{s.color}" opacity="0.15"/>')
        pts = s.points
        if s.kind in ("line", "step") and len(pts) > 1:
            path = [pts[0]]
            for a, b in itertools.pairwise(pts):
                if s.kind == "step":
                    path.append((b[0], a[1]))
                path.append(b)
            d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in path)
            dash = ' stroke-dasharray="5 4"' if s.dashed else ""
            o.append(f'<polyline points="{d}" fill="none" stroke="{s.color}" stroke-width="2"{dash}/>')
        if s.kind == "points" or len(pts) <= 60:
            for i, (x, y) in enumerate(pts):
                tip = s.tips[i] if i < len(s.tips) else f"{s.name}: ({x:g}, {y:.4g})"
                if s.marker == "cross":
                    o.append(f'<path d="M{sx(x) - 4:.1f},{sy(y) - 4:.1f}l8,8m0,-8l-8,8" stroke="{s.color}" '
                             f'stroke-width="2"><title>{_e(tip)}</title></path>')
                else:
                    o.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{s.color}">'
                             f'<title>{_e(tip)}</title></circle>')
    lx = left
    for s in series:
        o.append(f'<rect x="{lx}" y="{height - 14}" width="10" height="10" fill="{s.color}"/>'
                 f'<text x="{lx + 14}" y="{height - 5}" class="legend">{_e(s.name)}</text>')
        lx += 24 + 7 * len(s.name)
    o.append("</svg>")
    return Markup("".join(o))
