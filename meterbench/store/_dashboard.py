"""The store's HTML dashboard: one self-contained file (inline SVG drawn here, no scripts, no internet assets)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from meterbench.errors import OutputError

from . import _query

_W, _H, _PAD = 640, 240, 44


def _scale(lo: float, hi: float, a: float, b: float):
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def _svg(body: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img">'
        f"<title>{html.escape(title)}</title>"
        f'<rect x="{_PAD}" y="10" width="{_W - _PAD - 10}" height="{_H - _PAD - 10}" fill="none" stroke="#999"/>'
        + "".join(body)
        + "</svg>"
    )


def curve_svg(rows: list[dict[str, Any]]) -> str:
    """One meter type and lot: per point the median (dot), quartiles (thick bar), min-max (thin), ±MPE (red)."""
    limit = max(
        [abs(r["min_error_pct"]) for r in rows]
        + [abs(r["max_error_pct"]) for r in rows]
        + [r["mpe_pct"] or 0 for r in rows]
        + [0.5]
    )
    y = _scale(-limit * 1.1, limit * 1.1, _H - _PAD, 10)
    slot = (_W - _PAD - 10) / len(rows)
    body = [
        f'<line x1="{_PAD}" x2="{_W - 10}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#bbb"/>',
        f'<text x="4" y="{y(limit):.1f}" font-size="10">+{limit:.2g} %</text>',
        f'<text x="4" y="{y(-limit):.1f}" font-size="10">-{limit:.2g} %</text>',
    ]
    for i, r in enumerate(rows):
        x = _PAD + (i + 0.5) * slot
        if r["mpe_pct"] is not None:
            for sign in (1, -1):
                yy = y(sign * r["mpe_pct"])
                body.append(
                    f'<line x1="{x - slot / 2.5:.1f}" x2="{x + slot / 2.5:.1f}" y1="{yy:.1f}" y2="{yy:.1f}" '
                    'stroke="#c00" stroke-width="2"/>'
                )
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y(r["min_error_pct"]):.1f}" '
            f'y2="{y(r["max_error_pct"]):.1f}" stroke="#333"/>'
        )
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y(r["q1_error_pct"]):.1f}" '
            f'y2="{y(r["q3_error_pct"]):.1f}" stroke="#36c" stroke-width="8"/>'
        )
        body.append(f'<circle cx="{x:.1f}" cy="{y(r["median_error_pct"]):.1f}" r="4" fill="#000"/>')
        body.append(
            f'<text x="{x:.1f}" y="{_H - _PAD + 16}" font-size="11" text-anchor="middle">'
            f"{html.escape(str(r['point']))} (n={r['n']})</text>"
        )
    return _svg(body, "error curve")


def rates_svg(rows: list[dict[str, Any]], key: str) -> str:
    """Fail and inconclusive share per group with Wilson 95 % whiskers."""
    rows = rows[:24]
    if not rows:
        return "<p>no instruments</p>"
    y = _scale(0, 1, _H - _PAD, 10)
    slot = (_W - _PAD - 10) / len(rows)
    body = [
        f'<text x="4" y="{y(1):.1f}" font-size="10">100 %</text>',
        f'<text x="4" y="{y(0):.1f}" font-size="10">0</text>',
    ]
    for i, r in enumerate(rows):
        for j, (verdict, colour) in enumerate((("fail", "#c00"), ("inconclusive", "#e90"))):
            x = _PAD + (i + 0.3 + 0.4 * j) * slot
            share = r[verdict]["rate"] or 0.0
            low, high = r[verdict]["wilson95"]
            body.append(
                f'<rect x="{x - slot * 0.15:.1f}" y="{y(share):.1f}" width="{slot * 0.3:.1f}" '
                f'height="{y(0) - y(share):.1f}" fill="{colour}" opacity="0.7"/>'
            )
            body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y(low):.1f}" y2="{y(high):.1f}" stroke="#000"/>')
        body.append(
            f'<text x="{_PAD + (i + 0.5) * slot:.1f}" y="{_H - _PAD + 16}" font-size="10" '
            f'text-anchor="middle">{html.escape(str(r[key]))[:14]}</text>'
        )
    return _svg(body, f"rates by {key}")


def imr_svg(chart: dict[str, Any]) -> str:
    """Individuals chart: values, centre line, ±2.66 MR-bar limits; out-of-control values in red."""
    values = chart["values"]
    lo, hi = min(values + [chart["lcl"]]), max(values + [chart["ucl"]])
    y = _scale(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo), _H - _PAD, 10)
    x = _scale(0, max(len(values) - 1, 1), _PAD + 6, _W - 16)
    body = []
    for level, colour in ((chart["centre"], "#36c"), (chart["ucl"], "#c00"), (chart["lcl"], "#c00")):
        body.append(
            f'<line x1="{_PAD}" x2="{_W - 10}" y1="{y(level):.1f}" y2="{y(level):.1f}" stroke="{colour}" '
            'stroke-dasharray="4 3"/>'
        )
        body.append(f'<text x="2" y="{y(level):.1f}" font-size="10">{level:.3g}</text>')
    path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
    body.append(f'<polyline points="{path}" fill="none" stroke="#333"/>')
    bad = set(chart["out_of_control"])
    body += [
        f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{"#c00" if i in bad else "#333"}"/>'
        for i, v in enumerate(values)
    ]
    return _svg(body, "I-MR individuals chart")


def _table(rows: list[dict[str, Any]], key: str) -> str:
    head = f"<tr><th>{html.escape(key)}</th><th>n</th><th>pass</th><th>fail</th><th>inconclusive</th></tr>"
    cells = []
    for r in rows:
        parts = [f"<td>{html.escape(str(r[key]))}</td><td>{r['n']}</td>"]
        for verdict in _query.VERDICTS:
            v = r[verdict]
            low, high = v["wilson95"]
            parts.append(f"<td>{v['count']} ({100 * (v['rate'] or 0):.1f} %, {100 * low:.1f}–{100 * high:.1f})</td>")
        cells.append("<tr>" + "".join(parts) + "</tr>")
    return f"<table>{head}{''.join(cells)}</table>"


def render_dashboard(connection, min_runs: int = 5) -> str:
    """The dashboard HTML of the store behind ``connection``."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>meterbench store</title><style>"
        "body{font-family:sans-serif;margin:1em 2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}</style></head><body>",
        "<h1>meterbench store</h1>",
    ]
    curves = _query.error_curves(connection)
    parts.append(
        "<h2>Error curves per meter type and lot</h2><p>dot: median; thick bar: quartiles; "
        "thin: min–max; red: ±MPE.</p>"
    )
    grouped: dict[tuple, list[dict]] = {}
    for row in curves:
        grouped.setdefault((row["meter_type"], row["lot"]), []).append(row)
    for (mtype, lot), rows in list(grouped.items())[:40]:
        parts.append(f"<h3>{html.escape(str(mtype))} · lot {html.escape(str(lot))}</h3>{curve_svg(rows)}")
    parts.append("<h2>Verdict rates (Wilson 95 % intervals)</h2><p>bars: fail (red), inconclusive (orange).</p>")
    for key in _query.RATE_GROUPS:
        rows = _query.rates(connection, key)
        parts.append(f"<h3>by {key}</h3>{rates_svg(rows, key)}{_table(rows, key)}")
    parts.append(f"<h2>Drift (I-MR charts of check meters tested ≥ {min_runs} times)</h2>")
    charts = _query.drift(connection, min_runs)
    if not charts:
        parts.append("<p>no check meter with enough repeated tests</p>")
    for chart in charts[:60]:
        flag = f", {len(chart['out_of_control'])} out of control" if chart["out_of_control"] else ""
        parts.append(
            f"<h3>{chart['scope']} {html.escape(str(chart['id']))} · check meter "
            f"{html.escape(str(chart['serial']))} {html.escape(chart['point'])} (n={chart['n']}{flag})</h3>"
            f"{imr_svg(chart)}"
        )
    parts.append("<h2>Tanks by capacity class</h2>" + _table(_query.tanks(connection), "capacity_class"))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_dashboard(connection, out_dir: Path) -> Path:
    """Write ``index.html`` (and ``data.json``: the same answers) into ``out_dir``; the HTML's path."""
    from meterbench.session.writer import write_texts_atomic

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot create the dashboard folder: {exc.strerror}") from None
    data = {
        "error_curves": _query.error_curves(connection),
        "rates": {key: _query.rates(connection, key) for key in _query.RATE_GROUPS},
        "drift": _query.drift(connection),
        "tanks": _query.tanks(connection),
    }
    write_texts_atomic(
        {
            out_dir / "index.html": render_dashboard(connection),
            out_dir / "data.json": json.dumps(data, indent=1, default=str) + "\n",
        }
    )
    return out_dir / "index.html"
