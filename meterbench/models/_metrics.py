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


def abstain_metrics(value: np.ndarray, readable: np.ndarray, label_tenths: np.ndarray) -> dict[str, float]:
    """Figures of readings that may abstain, as shares of ALL crops (labels in tenths).

    within_0_1 / within_0_2: circular distance (abstained crops count with their value);
    wrong: off by ≥ 0.5 (a wrong digit); wrong_readable: wrong and not abstained (a
    silent misread); abstained: readable false; wrong_caught: share of the wrong
    readings that abstained; good_abstained: share of the ±0.2 readings that abstained;
    integer_acc: on whole-digit labels.
    """
    value = np.asarray(value, np.float64)
    readable = np.asarray(readable, bool)
    tenths = np.asarray(label_tenths)
    dist = circular_distance(value, tenths / 10.0)
    wrong = dist >= 0.5 - _EPS
    good = dist <= 0.2 + _EPS
    whole = tenths % 10 == 0
    return {
        "n": int(len(value)),
        "within_0_1": float(np.mean(dist <= 0.1 + _EPS)) if len(value) else float("nan"),
        "within_0_2": float(np.mean(good)) if len(value) else float("nan"),
        "wrong": float(np.mean(wrong)) if len(value) else float("nan"),
        "wrong_readable": float(np.mean(wrong & readable)) if len(value) else float("nan"),
        "abstained": float(np.mean(~readable)) if len(value) else float("nan"),
        "wrong_caught": float(np.mean(~readable[wrong])) if wrong.any() else float("nan"),
        "good_abstained": float(np.mean(~readable[good])) if good.any() else float("nan"),
        "integer_acc": float(np.mean(np.rint(value[whole]).astype(int) % 10 == tenths[whole] // 10))
        if whole.any()
        else float("nan"),
    }


def expected_calibration_error(confidence: np.ndarray, hit: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error (ECE): bin-weighted |mean confidence − hit rate| over `bins` equal bins."""
    confidence = np.asarray(confidence, np.float64)
    hit = np.asarray(hit, np.float64)
    if len(confidence) == 0:
        return float("nan")
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = index == b
        if inside.any():
            total += inside.sum() * abs(confidence[inside].mean() - hit[inside].mean())
    return float(total / len(confidence))
