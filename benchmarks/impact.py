"""Helmet impact signal processing benchmark (issue 15 targets): python benchmarks/impact.py

- HIC of a 250 g / 6 ms half-sine at 20 kHz vs the analytic value (target <= 0.1 %);
- dwell above 150 / 200 g vs T (1 - 2/pi asin(L/A)), in samples (target <= 1 sample), over pulse phases;
- CFC filter gain at the J211 corridor points of each class;
- one drop's analysis (3 axes, 20 kHz, 50 ms, CFC 1000, all features) on one core (target <= 50 ms),
  with the test-only brute-force reference (double loop HIC, loop filter) as baseline.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from scipy.integrate import quad  # noqa: E402
from scipy.optimize import minimize_scalar  # noqa: E402

from meterbench.calibration import analyse_impact, cfc_filter, dwell_time_s, hic  # noqa: E402
from tests.calibration import impact_reference as reference  # noqa: E402

FS = 20_000.0


def half_sine(peak: float, duration: float, start: float, total: float = 0.050) -> np.ndarray:
    t = np.arange(int(round(total * FS))) / FS
    inside = (t >= start) & (t <= start + duration)
    return np.where(inside, peak * np.sin(np.pi * (t - start) / duration), 0.0)


def analytic_half_sine_hic(peak: float, duration: float) -> float:
    """Centred window (symmetric pulse), width optimised, integral by quad."""

    def negative(width: float) -> float:
        t1 = (duration - width) / 2
        area = quad(lambda t: peak * math.sin(math.pi * t / duration), t1, t1 + width, epsabs=1e-14)[0]
        return -width * (area / width) ** 2.5

    found = minimize_scalar(negative, bounds=(1e-6, duration), method="bounded", options={"xatol": 1e-13})
    return -found.fun


def gain_db(cfc: int, fs: float, frequency: float) -> float:
    t = np.arange(int(0.4 * fs)) / fs
    frequency = round(frequency * 0.4) / 0.4
    y = cfc_filter(np.sin(2 * np.pi * frequency * t), fs, cfc)
    middle = slice(len(t) // 4, 3 * len(t) // 4)
    basis = np.column_stack([np.sin(2 * np.pi * frequency * t), np.cos(2 * np.pi * frequency * t)])[middle]
    return 20 * math.log10(float(np.hypot(*np.linalg.lstsq(basis, y[middle], rcond=None)[0])))


def hic_half_sine_error(peak: float = 250.0, duration: float = 0.006) -> tuple[float, float]:
    """(analytic HIC, worst relative error in % of `hic` over 10 sub-sample pulse phases) at 20 kHz."""
    exact = analytic_half_sine_hic(peak, duration)
    errors = [
        abs(hic(half_sine(peak, duration, 0.010 + phase / FS), FS, None).hic / exact - 1)
        for phase in np.linspace(0, 1, 11)[:-1]
    ]
    return exact, max(errors) * 100


def target_drop() -> np.ndarray:
    """One drop as the targets state it: 3 axes, 20 kHz, 50 ms (250 g / 6 ms half-sine, 0.5 g noise)."""
    rng = np.random.default_rng(0)
    base = half_sine(250.0, 0.006, 0.010)
    return np.column_stack([0.1 * base, 0.05 * base, base]) + rng.normal(0, 0.5, (base.size, 3))


def drop_analysis_s(drop: np.ndarray, repeats: int = 20) -> list[float]:
    """Wall times (s) of `analyse_impact` (CFC 1000, all features) on one drop, after a warm-up."""
    analyse_impact(drop, FS)
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        analyse_impact(drop, FS)
        runs.append(time.perf_counter() - started)
    return runs


def main() -> int:
    peak, duration = 250.0, 0.006
    exact, worst_pct = hic_half_sine_error(peak, duration)
    print(
        f"HIC 250 g / 6 ms half-sine @ 20 kHz: analytic {exact:.3f}; worst relative error over 10 phases "
        f"{worst_pct:.4f} % (target <= 0.1 %)"
    )

    for level in (150.0, 200.0):
        expected = duration * (1 - 2 / math.pi * math.asin(level / peak))
        worst = max(
            abs(dwell_time_s(half_sine(peak, duration, 0.010 + phase / FS), FS, level) - expected) * FS
            for phase in np.linspace(0, 1, 11)[:-1]
        )
        print(f"dwell > {level:g} g: exact {expected * 1e3:.4f} ms; worst error {worst:.4f} samples (target <= 1)")

    for cfc, fs in ((1000, 20_000.0), (1000, 10_000.0), (600, 20_000.0), (180, 20_000.0), (60, 20_000.0)):
        points = {"0.5 f_H": 0.5 * cfc, "f_H": cfc, "f_N": 1.65 * cfc, "2 f_N": 3.3 * cfc}
        shown = ", ".join(f"{name} {gain_db(cfc, fs, f):+.2f} dB" for name, f in points.items() if f < 0.45 * fs)
        print(f"CFC {cfc} @ {fs / 1e3:g} kHz: {shown}  (corridor: +-0.5 / +0.5,-1 / +0.5,-4 / <= -8.5 dB)")

    drop = target_drop()
    ours = float(np.median(drop_analysis_s(drop)))

    started = time.perf_counter()
    channels = [reference.j211_filter(list(drop[:, axis]), FS, 1000) for axis in range(3)]
    resultant = [math.sqrt(x * x + y * y + z * z) for x, y, z in zip(*channels, strict=True)]
    for window in (None, 0.036, 0.015):
        reference.hic_pairs(resultant, FS, window)
    for level in (150.0, 200.0):
        reference.dwell(resultant, FS, level)
    brute = time.perf_counter() - started
    print(
        f"one drop (3 axes, 20 kHz, 50 ms, CFC 1000, all features): {ours * 1e3:.1f} ms median of 20 "
        f"(target <= 50 ms); brute-force reference {brute * 1e3:.0f} ms (x{brute / ours:.0f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
