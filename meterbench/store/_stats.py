"""Pure statistics of the store's questions: Wilson score intervals, I-MR control limits, quantiles (no I/O)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z_95 = 1.959963984540054
"""Two-sided 95 % standard normal quantile."""
IMR_E2 = 2.66  # 3 / d2, d2 = 1.128 for moving ranges of 2: individuals limits = mean ± 2.66 MR-bar
IMR_D4 = 3.267  # moving-range upper limit = 3.267 MR-bar (lower limit 0)


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion successes / trials ((0, 1) when trials is 0).

    centre = (p + z²/2n) / (1 + z²/n), half-width = z √(p(1-p)/n + z²/4n²) / (1 + z²/n)."""
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError(f"successes: expected 0..{trials}, got {successes}")
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exactly 0 / 1 at the ends (not 5.6e-17 off)
    return low, 1.0 if successes == trials else min(1.0, centre + half)


@dataclass(frozen=True)
class IMRChart:
    """An individuals and moving-range chart of a series (values in %).

    Centre = mean of the values, MR-bar = mean of |x_i - x_(i-1)|; individuals limits
    centre ± 2.66 MR-bar, moving-range upper limit 3.267 MR-bar. ``out_of_control``: indices of
    values outside the individuals limits or whose moving range is above its limit."""

    values: tuple[float, ...]
    centre: float
    mr_bar: float
    ucl: float
    lcl: float
    mr_ucl: float
    out_of_control: tuple[int, ...]


def imr_chart(values: Sequence[float]) -> IMRChart:
    """The I-MR chart of at least two values (ValueError otherwise)."""
    xs = tuple(float(v) for v in values)
    if len(xs) < 2:
        raise ValueError(f"an I-MR chart needs at least 2 values, got {len(xs)}")
    centre = sum(xs) / len(xs)
    ranges = [abs(b - a) for a, b in zip(xs, xs[1:], strict=False)]
    mr_bar = sum(ranges) / len(ranges)
    ucl, lcl, mr_ucl = centre + IMR_E2 * mr_bar, centre - IMR_E2 * mr_bar, IMR_D4 * mr_bar
    out = [i for i, x in enumerate(xs) if x > ucl or x < lcl]
    out += [i + 1 for i, r in enumerate(ranges) if r > mr_ucl and i + 1 not in out]
    return IMRChart(xs, centre, mr_bar, ucl, lcl, mr_ucl, tuple(sorted(out)))


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of ascending values, linear interpolation (as PostgreSQL's percentile_cont)."""
    if not sorted_values:
        raise ValueError("quantile of no values")
    position = q * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)
