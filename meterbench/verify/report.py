"""Verification reports: report.json (the contract of DESIGN.md) and a human HTML report.

report.json is deterministic: the same session, models and configuration give
the same bytes (fixed key order, floats rounded, no wall-clock time in it).
The HTML report is for people: per instrument a table and a plot of the
errors with their uncertainty bars against the MPE envelope (inline SVG, so it
needs no plotting library and opens on any bench PC).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from meterbench.session.writer import write_text_atomic

__all__ = ["atomic_write_text", "write_report_json", "write_report_html", "clean_for_json", "overall_verdict"]

_FLOAT_DIGITS = 6


def clean_for_json(value: Any) -> Any:
    """Round floats, turn NaN/inf into null (JSON has no NaN), drop private keys ('_...')."""
    if isinstance(value, float):
        return round(value, _FLOAT_DIGITS) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean_for_json(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list | tuple):
        return [clean_for_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return clean_for_json(value.item())
    return value


def overall_verdict(verdicts: list[str]) -> str:
    """Any fail -> fail; else any inconclusive (or nothing verified) -> inconclusive; else pass."""
    if "fail" in verdicts:
        return "fail"
    if not verdicts or "inconclusive" in verdicts:
        return "inconclusive"
    return "pass"


def atomic_write_text(path: Path, text: str) -> None:
    """Write text so that a crash leaves either the old file or the new one, never half of it."""
    write_text_atomic(path, text)


def write_report_json(report: dict, out_dir: Path) -> Path:
    """Write DIR/report.json atomically; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.json"
    atomic_write_text(path, json.dumps(clean_for_json(report), indent=2, ensure_ascii=False) + "\n")
    return path


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:.{digits}f}" if math.isfinite(value) else "–"
    return "–" if value is None else html.escape(str(value))


def _error_plot_svg(points: list[dict], width: int = 560, height: int = 260) -> str:
    """Errors (%) with k=2 bars against the ±MPE envelope, flow on a log axis."""
    usable = [
        p
        for p in points
        if isinstance(p.get("flow_rate"), float | int)
        and p.get("flow_rate")
        and math.isfinite(p["flow_rate"])
        and p["flow_rate"] > 0
    ]
    if not usable:
        return "<p>No point with a flow rate to plot.</p>"
    margin = 48
    flows = [p["flow_rate"] for p in usable]
    lo, hi = math.log10(min(flows)) - 0.2, math.log10(max(flows)) + 0.2
    mpes = [p["mpe_pct"] for p in usable if isinstance(p.get("mpe_pct"), float | int) and math.isfinite(p["mpe_pct"])]
    errors = [
        abs(p["error_pct"]) + (p.get("uncertainty_pct") or 0)
        for p in usable
        if isinstance(p.get("error_pct"), float | int) and math.isfinite(p["error_pct"])
    ]
    span = max(mpes + errors + [1.0]) * 1.25

    def x_of(flow: float) -> float:
        return margin + (math.log10(flow) - lo) / (hi - lo) * (width - 2 * margin)

    def y_of(pct: float) -> float:
        return height / 2 - pct / span * (height / 2 - 20)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="white" stroke="#ccc"/>',
        f'<line x1="{margin}" y1="{y_of(0):.1f}" x2="{width - margin}" y2="{y_of(0):.1f}" stroke="#999"/>',
        f'<text x="4" y="{y_of(0) + 4:.1f}">0 %</text>',
    ]
    steps = [
        (p["flow_rate"], p["mpe_pct"])
        for p in sorted(usable, key=lambda p: p["flow_rate"])
        if isinstance(p.get("mpe_pct"), float | int) and math.isfinite(p["mpe_pct"])
    ]
    for sign in (1, -1):
        # the MPE is a step function of flow (zones): hold each point's MPE up to the next point
        corners = []
        for i, (flow, mpe) in enumerate(steps):
            corners.append((flow, mpe))
            following = steps[i + 1][0] if i + 1 < len(steps) else 10**hi
            corners.append((following, mpe))
        envelope = " ".join(f"{x_of(f):.1f},{y_of(sign * m):.1f}" for f, m in corners)
        parts.append(f'<polyline points="{envelope}" fill="none" stroke="#c00" stroke-dasharray="5,3"/>')
    for p in usable:
        x = x_of(p["flow_rate"])
        parts.append(f'<text x="{x - 8:.1f}" y="{height - 6}">{html.escape(p["name"])}</text>')
        error = p.get("error_pct")
        if not (isinstance(error, float | int) and math.isfinite(error)):
            parts.append(f'<text x="{x - 4:.1f}" y="{y_of(0) - 6:.1f}" fill="#a60">?</text>')
            continue
        u = p.get("uncertainty_pct") or 0.0
        colour = {"pass": "#070", "fail": "#c00"}.get(p.get("verdict"), "#a60")
        parts.append(
            f'<line x1="{x:.1f}" y1="{y_of(error - u):.1f}" x2="{x:.1f}" y2="{y_of(error + u):.1f}" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
        parts.append(f'<circle cx="{x:.1f}" cy="{y_of(error):.1f}" r="4" fill="{colour}"/>')
    parts.append(
        f'<text x="{margin}" y="14">error of indication (%) with U (k=2); dashed: ±MPE; flow on a log axis</text></svg>'
    )
    return "".join(parts)


def _budget_html(point: dict) -> str:
    """A point's uncertainty budget as a folded table (standard uncertainties in %)."""
    budget = (point.get("details") or {}).get("uncertainty_budget") or {}
    components = budget.get("components") or []
    if not components:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(str(c.get('name')))}</td><td>{_fmt(c.get('u_pct'), 4)}</td>"
        f"<td>{html.escape(str(c.get('source', '')))}</td></tr>"
        for c in components
    )
    return (
        f"<details><summary>uncertainty budget, point {html.escape(str(point['name']))}: "
        f"U = {_fmt(point.get('uncertainty_pct'), 4)} % (k = 2)</summary>"
        f"<table><tr><th>component</th><th>u (%)</th><th>source</th></tr>{rows}</table></details>"
    )


_POINT_COLUMNS = (
    ("name", "point", 0),
    ("flow_rate", "flow (m³/h)", 4),
    ("reference_volume", "V ref (L)", 4),
    ("indicated_volume", "V ind (L)", 4),
    ("error_pct", "error (%)", 3),
    ("mpe_pct", "MPE (±%)", 2),
    ("uncertainty_pct", "U k=2 (%)", 3),
    ("verdict", "verdict", 0),
    ("reason", "reason", 0),
)


def _instrument_html(instrument: dict, figures: dict[str, str]) -> str:
    rows = []
    for point in instrument.get("points", []):
        cells = "".join(f"<td>{_fmt(point.get(key), digits)}</td>" for key, _, digits in _POINT_COLUMNS)
        rows.append(f'<tr class="{html.escape(str(point.get("verdict")))}">{cells}</tr>')
    header = "".join(f"<th>{label}</th>" for _, label, _ in _POINT_COLUMNS)
    images = "".join(
        f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}"/>'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for caption, src in figures.items()
    )
    budgets = "".join(_budget_html(p) for p in instrument.get("points", []))
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in instrument.get("warnings", []))
    return (
        f"<section><h2>{html.escape(instrument['kind'])} {html.escape(instrument['id'])}: "
        f'<span class="{html.escape(instrument["verdict"])}">{html.escape(instrument["verdict"])}</span></h2>'
        f"<table><tr>{header}</tr>{''.join(rows)}</table>"
        f"{_error_plot_svg(instrument.get('points', []))}{images}{budgets}"
        f"{'<ul>' + warnings + '</ul>' if warnings else ''}</section>"
    )


_STYLE = """body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}
td,th{border:1px solid #bbb;padding:3px 6px;font-size:13px}.pass{color:#070}.fail{color:#c00}
.inconclusive{color:#a60}tr.fail td{background:#fee}tr.inconclusive td{background:#ffe}
figure{display:inline-block;margin:4px}code{font-size:11px}"""


def write_report_html(
    report: dict, out_dir: Path, figures: dict[str, dict[str, str]] | None = None, provenance: list[str] | None = None
) -> Path:
    """Write DIR/report.html: verdicts, tables, plots, input hashes and table provenance."""
    figures = figures or {}
    sections = "".join(_instrument_html(i, figures.get(i["id"], {})) for i in report["instruments"])
    inputs = "".join(
        f"<tr><td><code>{html.escape(path)}</code></td><td><code>{digest}</code></td></tr>"
        for path, digest in sorted(report.get("inputs", {}).items())
    )
    models = "".join(
        f"<li>{html.escape(k)}: <code>{html.escape(str(v))}</code></li>"
        for k, v in sorted(report.get("models", {}).items())
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in (provenance or []))
    text = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>meterbench report "
        f"{html.escape(report['session'])}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Verification report — session {html.escape(report['session'])}</h1>"
        f"<p>Overall verdict: <b class='{report['verdict']}'>{report['verdict']}</b>. "
        f"Decision rule: {html.escape(str(report.get('decision_rule', 'simple')))}. "
        f"Uncertainties are expanded (k = 2). {html.escape(str(report.get('software', '')))}.</p>"
        f"{sections}<h2>Models</h2><ul>{models}</ul>"
        f"<h2>Metrological tables and their provenance</h2><ul>{notes}</ul>"
        f"<h2>Input files (SHA-256)</h2><table>{inputs}</table></body></html>\n"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.html"
    atomic_write_text(path, text)
    return path
