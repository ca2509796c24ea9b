"""The SVG trace plot of one impact: the trace, the limit lines, the HIC window shaded where HIC found it."""

import re

import numpy as np
import pytest

from meterbench.calibration import analyse_impact
from meterbench.verify.helmet_plot import impact_svg, svg_data_uri

FS = 20_000.0


def test_plot_shades_the_hic_window_and_draws_each_limit():
    t = np.arange(1000) / FS
    pulse = np.where((t >= 0.015) & (t <= 0.021), 250.0 * np.sin(np.pi * (t - 0.015) / 0.006), 0.0)
    features = analyse_impact(pulse, FS, cfc=None)
    svg = impact_svg(
        features.filtered_g,
        FS,
        title="H1 d1: fail",
        peak_limit_g=400.0,
        dwell_limits_ms={"150": 4.0, "200": 2.0},
        hic_window_s=features.hic_window_s,
        hic_value=features.hic,
    )
    t1, t2 = features.hic_window_s
    assert t2 - t1 == pytest.approx(0.0040, abs=1e-4)  # a half-sine's HIC window is 2/3 of it
    assert f"HIC window {t1 * 1e3:.2f}-{t2 * 1e3:.2f} ms, HIC {features.hic:.0f}" in svg
    x0, x1, lo, hi = 48, 560 - 12, 18.0 - 8.0, 18.0 + 14.0  # the plot spans the peak -8/+14 ms
    rect = re.search(r'<rect x="([\d.]+)" y="22" width="([\d.]+)"', svg)
    assert float(rect.group(1)) == pytest.approx(x0 + (t1 * 1e3 - lo) / (hi - lo) * (x1 - x0), abs=0.06)
    assert float(rect.group(2)) == pytest.approx((t2 - t1) * 1e3 / (hi - lo) * (x1 - x0), abs=0.11)
    assert "peak limit 400 g" in svg and "150 g: at most 4 ms above" in svg and "200 g: at most 2 ms above" in svg
    assert ">250.0 g</text>" in svg and svg.count("<polyline") == 1
    assert svg_data_uri(svg).startswith("data:image/svg+xml;base64,PHN2Zy")
