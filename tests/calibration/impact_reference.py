"""A second, deliberately plain implementation of the helmet impact signal processing, for tests only.

Written from the definitions, not from meterbench.calibration.impact: plain Python loops, no
shared helpers, no scipy.signal. Slow (double loop over sample pairs): use short traces.
"""

from __future__ import annotations

import math


def j211_filter(samples: list[float], fs_hz: float, cfc: int, pad_s: float = 0.010) -> list[float]:
    """SAE J211-1 Appendix C: the 2-pole difference equation (Eq. C1) forward, then backward.

    Each end is first extended by an inverted mirror (2 x[end] - x[end -/+ k], k = 1..pad);
    each pass starts by copying its first two inputs.
    """
    n = len(samples)
    pad = min(int(round(pad_s * fs_hz)), n - 1)
    head = [2 * samples[0] - samples[k] for k in range(pad, 0, -1)]
    tail = [2 * samples[-1] - samples[n - 1 - k] for k in range(1, pad + 1)]
    data = head + list(samples) + tail

    T = 1.0 / fs_hz
    wd = 2 * math.pi * cfc * 2.0775
    wa = math.sin(wd * T / 2) / math.cos(wd * T / 2)
    a0 = wa**2 / (1 + math.sqrt(2) * wa + wa**2)
    a1 = 2 * a0
    a2 = a0
    b1 = -2 * (wa**2 - 1) / (1 + math.sqrt(2) * wa + wa**2)
    b2 = (-1 + math.sqrt(2) * wa - wa**2) / (1 + math.sqrt(2) * wa + wa**2)

    def one_pass(x: list[float]) -> list[float]:
        y = [x[0], x[1]]
        for i in range(2, len(x)):
            y.append(a0 * x[i] + a1 * x[i - 1] + a2 * x[i - 2] + b1 * y[i - 1] + b2 * y[i - 2])
        return y

    forward = one_pass(data)
    backward = one_pass(forward[::-1])[::-1]
    return backward[pad : pad + n]


def hic_pairs(samples: list[float], fs_hz: float, max_window_s: float | None) -> tuple[float, int, int]:
    """HIC by a double loop over every sample pair (i < j), integral by the trapezoid rule.

    Returns (hic, i, j); windows with a negative mean count as 0.
    """
    dt = 1.0 / fs_hz
    n = len(samples)
    best, best_i, best_j = 0.0, 0, 0
    for i in range(n - 1):
        area = 0.0
        for j in range(i + 1, n):
            area += (samples[j - 1] + samples[j]) * dt / 2
            duration = (j - i) * dt
            if max_window_s is not None and duration > max_window_s * (1 + 1e-12):
                break
            if area <= 0:
                continue
            value = duration * (area / duration) ** 2.5
            if value > best:
                best, best_i, best_j = value, i, j
    return best, best_i, best_j


def dwell(samples: list[float], fs_hz: float, level: float) -> float:
    """Cumulative time above ``level`` (s), walking the segments and solving each crossing."""
    dt = 1.0 / fs_hz
    total = 0.0
    for left, right in zip(samples[:-1], samples[1:], strict=True):
        if left > level and right > level:
            total += dt
        elif left > level >= right or right > level >= left:
            crossing = (level - left) / (right - left) * dt  # time from the left sample to the crossing
            total += dt - crossing if right > level else crossing
    return total
