"""Circular accuracy metrics for wheel / dial readings (values in [0, 10), labels in tenths)."""

from __future__ import annotations

import numpy as np

from meterbench.models._runtime import circular_distance

_EPS = 1e-6


def least_confident_share(is_miss: np.ndarray, confidence: np.ndarray, fraction: float) -> float:
    """Share of the misses that fall in the `fraction` least confident crops (nan if no miss)."""
    if not is_miss.any():
        return float("nan")
    n_low = max(1, int(round(fraction * len(confidence))))
    low = np.zeros(len(confidence), bool)
    low[np.argsort(confidence, kind="stable")[:n_low]] = True
    return float((is_miss & low).sum() / is_miss.sum())


def wheel_metrics(
    value: np.ndarray,
    confidence: np.ndarray,
    label_tenths: np.ndarray,
) -> dict[str, float]:
    """Accuracy figures of readings `value` (0..10) against labels in tenths (0..99).

    exact_tenths: the reading rounds to the labelled tenth (circularly);
    within_0_1 / within_0_2: circular distance ≤ 0.1 / 0.2;
    integer_acc: on labels that are a whole digit, the reading rounds to that digit;
    off_ge_0_5: share off by half a step or more (a wrong digit);
    miss01_in_low1/low5, wrong_in_low1/low5: share of the ±0.1 misses and of the
    wrong digits that are among the 1 % / 5 % least confident crops.
    """
    value = np.asarray(value, np.float64)
    truth = np.asarray(label_tenths, np.float64) / 10.0
    dist = circular_distance(value, truth)
    whole = np.asarray(label_tenths) % 10 == 0
    rounded_tenths = np.rint(value * 10).astype(int) % 100
    rounded_digit = np.rint(value).astype(int) % 10
    miss01 = dist > 0.1 + _EPS
    wrong = dist >= 0.5 - _EPS
    return {
        "n": int(len(value)),
        "exact_tenths": float(np.mean(rounded_tenths == np.asarray(label_tenths) % 100)),
        "within_0_1": float(np.mean(~miss01)),
        "within_0_2": float(np.mean(dist <= 0.2 + _EPS)),
        "n_whole": int(whole.sum()),
        "integer_acc": float(np.mean(rounded_digit[whole] == (np.asarray(label_tenths)[whole] // 10)))
        if whole.any()
        else float("nan"),
        "off_ge_0_5": float(np.mean(wrong)),
        "mean_abs_error": float(dist.mean()),
        "miss01_in_low1": least_confident_share(miss01, confidence, 0.01),
        "miss01_in_low5": least_confident_share(miss01, confidence, 0.05),
        "wrong_in_low1": least_confident_share(wrong, confidence, 0.01),
        "wrong_in_low5": least_confident_share(wrong, confidence, 0.05),
    }
