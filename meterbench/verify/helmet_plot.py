"""Plots of a helmet-impact run for report.html: each impact's filtered resultant with the limit lines and the
HIC window, and the rig check's reference drops as a control chart.

Each plot is an SVG document (text), embedded in report.html as a ``data:image/svg+xml`` image, so the
report stays one self-contained file. Times in ms from the trace's first sample, accelerations in g.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping

import numpy as np

from meterbench.verify.report import _nice_step

__all__ = ["impact_svg", "rig_check_svg", "svg_data_uri"]

_W, _H = 560, 250
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 12, 22, 34
_BEFORE_MS, _AFTER_MS = 8.0, 14.0
"""The plotted stretch around the peak (ms): the pulse and its tail, not the rest before it."""


def impact_svg(
    filtered_g: np.ndarray,
    fs_hz: float,
    *,
    title: str,
    peak_limit_g: float,
    dwell_limits_ms: Mapping[str, float],
    hic_window_s: tuple[float, float] | None,
    hic_value: float | None,
) -> str:
    """An SVG plot of one impact: the filtered resultant (g) against time (ms), a dashed line at the peak
    limit, dotted lines at each dwell level (labelled with its time limit), the HIC window shaded."""
    a = np.asarray(filtered_g, dtype=float)
    t_ms = np.arange(a.size) * 1e3 / fs_hz
    i_peak = int(np.argmax(a))
    lo = max(0.0, t_ms[i_peak] - _BEFORE_MS)
    hi = min(float(t_ms[-1]), t_ms[i_peak] + _AFTER_MS)
    shown = (t_ms >= lo) & (t_ms <= hi)
    top = max(float(a.max()), peak_limit_g) * 1.12
    bottom = min(0.0, float(a[shown].min()))
    x0, x1, y0, y1 = _LEFT, _W - _RIGHT, _H - _BOTTOM, _TOP

    def x(t: float) -> float:
        return x0 + (t - lo) / (hi - lo) * (x1 - x0)

    def y(g: float) -> float:
        return y0 - (g - bottom) / (top - bottom) * (y0 - y1)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
        'font-family="sans-serif" font-size="10">',
        f'<text x="{x0}" y="13" font-size="11" font-weight="bold">{html.escape(title)}</text>',
    ]
    if hic_window_s is not None and all(math.isfinite(v) for v in hic_window_s):
        w0, w1 = (min(max(v * 1e3, lo), hi) for v in hic_window_s)
        parts.append(
            f'<rect x="{x(w0):.1f}" y="{y1}" width="{max(x(w1) - x(w0), 0.5):.1f}" height="{y0 - y1}" '
            'fill="#8ab4f8" fill-opacity="0.35"><title>HIC window</title></rect>'
        )
        label = f"HIC window {hic_window_s[0] * 1e3:.2f}-{hic_window_s[1] * 1e3:.2f} ms"
        if hic_value is not None and math.isfinite(hic_value):
            label += f", HIC {hic_value:.0f}"
        parts.append(f'<text x="{x(w1) + 3:.1f}" y="{y1 + 10}" fill="#2a5db0">{html.escape(label)}</text>')
    step = _nice_step((top - bottom) / 5)
    for k in range(math.ceil(bottom / step), math.floor(top / step) + 1):
        g = k * step
        parts.append(f'<line x1="{x0}" x2="{x1}" y1="{y(g):.1f}" y2="{y(g):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{x0 - 4}" y="{y(g) + 3:.1f}" text-anchor="end">{g:g}</text>')
    t_step = _nice_step((hi - lo) / 6)
    for k in range(math.ceil(lo / t_step), math.floor(hi / t_step) + 1):
        t = k * t_step
        parts.append(f'<text x="{x(t):.1f}" y="{y0 + 13}" text-anchor="middle">{t:g}</text>')
    parts.append(f'<text x="{(x0 + x1) / 2}" y="{_H - 4}" text-anchor="middle">time (ms)</text>')
    parts.append(f'<text x="10" y="{(y0 + y1) / 2}" transform="rotate(-90 10 {(y0 + y1) / 2})">a (g)</text>')
    parts.append(
        f'<line x1="{x0}" x2="{x1}" y1="{y(peak_limit_g):.1f}" y2="{y(peak_limit_g):.1f}" stroke="#c00" '
        f'stroke-dasharray="6 3"/><text x="{x1 - 2}" y="{y(peak_limit_g) - 3:.1f}" text-anchor="end" '
        f'fill="#c00">peak limit {peak_limit_g:g} g</text>'
    )
    for level, limit_ms in sorted(dwell_limits_ms.items(), key=lambda kv: float(kv[0])):
        yl = y(float(level))
        parts.append(
            f'<line x1="{x0}" x2="{x1}" y1="{yl:.1f}" y2="{yl:.1f}" stroke="#d80" stroke-dasharray="2 2"/>'
            f'<text x="{x1 - 2}" y="{yl - 3:.1f}" text-anchor="end" fill="#a60">'
            f"{float(level):g} g: at most {float(limit_ms):g} ms above</text>"
        )
    points = " ".join(f"{x(t):.1f},{y(g):.1f}" for t, g in zip(t_ms[shown], a[shown], strict=True))
    parts.append(f'<polyline points="{points}" fill="none" stroke="#000" stroke-width="1.2"/>')
    parts.append(
        f'<circle cx="{x(t_ms[i_peak]):.1f}" cy="{y(a[i_peak]):.1f}" r="3" fill="none" stroke="#000"/>'
        f'<text x="{x(t_ms[i_peak]) + 5:.1f}" y="{y(a[i_peak]) + 3:.1f}">{a[i_peak]:.1f} g</text>'
    )
    parts.append(f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" stroke="#888"/></svg>')
    return "".join(parts)


def svg_data_uri(svg: str) -> str:
    """``svg`` as an image source for report.html (base64 data URI)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def rig_check_svg(checks: list[dict], peak_window_g: tuple[float, float]) -> str:
    """A control chart of the reference drops (report.json ``rig_checks``): each drop's peak (g) in
    recorded order, day by day, before and after the impacts, over the accepted window shaded."""
    series = [(c["day"], when, c[when]) for c in checks for when in ("before", "after")]
    peaks = [d["peak_g"] for _, _, s in series for d in s["drops"] if d.get("peak_g") is not None]
    low, high = (float(v) for v in peak_window_g)
    bottom = min([low, *peaks]) - 15.0
    top = max([high, *peaks]) + 15.0
    slots = sum(max(len(s["drops"]), 1) for _, _, s in series) + len(series)  # a gap after each series
    x0, x1, y0, y1 = _LEFT, _W - _RIGHT, _H - _BOTTOM, _TOP

    def y(g: float) -> float:
        return y0 - (g - bottom) / (top - bottom) * (y0 - y1)

    def x(slot: float) -> float:
        return x0 + (slot + 0.5) / slots * (x1 - x0)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
        'font-family="sans-serif" font-size="10">',
        f'<text x="{x0}" y="13" font-size="11" font-weight="bold">Reference drops (rig check): peak g</text>',
        f'<rect x="{x0}" y="{y(high):.1f}" width="{x1 - x0}" height="{y(low) - y(high):.1f}" fill="#cfe8cf">'
        f"<title>accepted {low:g}-{high:g} g</title></rect>",
    ]
    step = _nice_step((top - bottom) / 5)
    for k in range(math.ceil(bottom / step), math.floor(top / step) + 1):
        parts.append(f'<text x="{x0 - 4}" y="{y(k * step) + 3:.1f}" text-anchor="end">{k * step:g}</text>')
    slot = 0
    for day, when, result in series:
        first = slot
        for drop in result["drops"]:
            if drop.get("peak_g") is not None:
                colour = "#070" if result["ok"] else "#c00"
                parts.append(
                    f'<circle cx="{x(slot):.1f}" cy="{y(drop["peak_g"]):.1f}" r="3" fill="{colour}">'
                    f"<title>{html.escape(str(drop['name']))}: {drop['peak_g']:.1f} g</title></circle>"
                )
            slot += 1
        slot = max(slot, first + 1)
        verdict = "ok" if result["ok"] else "FAILED" if result["drops"] else "MISSING"
        parts.append(
            f'<text x="{x((first + slot - 1) / 2):.1f}" y="{y0 + 13}" text-anchor="middle">'
            f"{html.escape(day)} {when}: {verdict}</text>"
        )
        slot += 1
    parts.append(f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" stroke="#888"/></svg>')
    return "".join(parts)
